import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import swc from 'unplugin-swc';
import { defineConfig } from 'vitest/config';

// Inside the ditcache repository, its guard that fails the run when a test leaves files in the
// temp directory (every package of the repository uses it); elsewhere there is none.
const tempGuard = fileURLToPath(new URL('../../scripts/vitest-temp-guard.ts', import.meta.url));

// vitest's own transform (esbuild) emits no decorator metadata, which the registry's decorators
// rely on; SWC does, with the decorator settings of tsconfig.build.json.
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
    globalSetup: existsSync(tempGuard) ? [tempGuard] : [],
  },
});
