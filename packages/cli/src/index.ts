export { buildProgram, runCli } from './program.js';
export { UsageError } from './errors.js';
export { encodePrompt, registerEncodePrompt } from './encode-prompt.js';
export * from './bench/index.js';
export * from './tune/index.js';
// What @ditcache/server reuses to run a model as `generate` does.
export { familyForPipeline, loadFamilies, type Families } from './plugins.js';
export { checkCacheFitsModel, resolveCacheSpec } from './cache-spec.js';
export { loadOptions } from './load-options.js';
export { familyOptions } from './family-options.js';
