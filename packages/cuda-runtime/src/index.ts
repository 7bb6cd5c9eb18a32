export { Tensor, type Device, type DType } from './tensor.js';
export { TensorScope, keep, tidy } from './scope.js';
export * from './ops.js';
export * from './runtime.js';
export {
  SafetensorsError,
  SafetensorsFile,
  WeightFolder,
  loadSafetensors,
  openSafetensors,
  parseHeader,
  saveSafetensors,
  type LoadOptions,
  type SafetensorsHeader,
  type TensorEntry,
} from './safetensors.js';
export { ConfigError, typedConfig } from './config.js';
