import { defineConfig, mergeConfig } from 'vitest/config';

import shared from '../../vitest.shared.js';

// One file at a time: packing the platform package copies the runtime's binary into its folder
// and removes it afterwards, so two packs at once would race.
export default mergeConfig(shared, defineConfig({ test: { fileParallelism: false, testTimeout: 300_000, hookTimeout: 300_000 } }));
