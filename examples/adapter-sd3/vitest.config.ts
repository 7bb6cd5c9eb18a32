import swc from 'unplugin-swc';
import { defineConfig } from 'vitest/config';

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
  },
});
