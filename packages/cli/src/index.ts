export { buildProgram, runCli } from './program.js';
export { UsageError } from './errors.js';
export { encodePrompt, registerEncodePrompt } from './encode-prompt.js';
export * from './bench/index.js';
export * from './tune/index.js';
