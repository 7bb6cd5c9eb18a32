export { buildProgram, runCli } from './program.js';
export { UsageError } from './errors.js';
