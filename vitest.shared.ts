import { fileURLToPath } from 'node:url';

import swc from 'unplugin-swc';
import { defineConfig } from 'vitest/config';

// vitest's default transform (esbuild) emits no decorator metadata, which tsyringe's
// constructor injection relies on; SWC does, with the same settings as tsconfig.base.json.
export default defineConfig({
  plugins: [
    swc.vite({
      jsc: {
        target: 'es2022',
        parser: { syntax: 'typescript', decorators: true },
        transform: { legacyDecorator: true, decoratorMetadata: true },
      },
    }),
  ],
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    pool: 'forks',
    // A fresh TMPDIR per run, which must be empty again at the end: no test leaves files behind.
    globalSetup: [fileURLToPath(new URL('./scripts/vitest-temp-guard.ts', import.meta.url))],
    // Memory tests call gc() to tell native leaks from garbage the JS heap has not collected yet.
    execArgv: ['--expose-gc'],
  },
});
