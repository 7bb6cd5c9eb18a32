export { AUTOENCODER_KL_DEFAULTS, AutoencoderKLDecoder, type AutoencoderKLConfig } from './autoencoder-kl/decoder.js';
export { ConfigError, checkPipelineFolder, missingFolders, readJsonObject, typedConfig } from './config-file.js';
export { PIPELINE_DEFAULTS_FILE, readPipelineDefaults, withPipelineDefaults, type DefaultableOptions, type PipelineDefaults } from './pipeline-defaults.js';
export { MlpEmbedding, sinusoidalTimestepEmbedding, type SinusoidalOptions } from './embeddings.js';
export { FeedForward, type FeedForwardActivation } from './feed-forward.js';
export { FLOAT16_MAX, Float16OverflowError, checkFloat16Range, clipToFloat16Range, inDenoisingStep } from './float16.js';
export { NonFiniteError, checkFiniteInputs, checkFiniteLatents, isFiniteTensor } from './non-finite.js';
export { encodePng, saveAnimation, savePng, savePngFrames, toImage8, toImageRange, toVideoRange, type Image8 } from './image.js';
export { Conv2d, Conv3d, GroupNorm, LayerNorm, Linear, RMSNorm, type Conv2dGeometry, type Conv3dGeometry, type Triple } from './layers.js';
export {
  AdaLayerNormContinuous,
  AdaLayerNormZero,
  gatedResidual,
  modulate,
  modulationParameters,
  type AdaLayerNormZeroOutput,
  type ModulateOptions,
} from './normalization.js';
export { PatchEmbed, type PatchEmbedOptions } from './patch-embed.js';
export { Mt19937, randnTensor, torchRandn } from './random.js';
export { multiAxisRotaryTables, type RotaryTables } from './rotary.js';
export {
  FLOW_MATCH_EULER_DEFAULTS,
  FlowMatchEulerDiscreteScheduler,
  FlowMatchSchedule,
  calculateShift,
  linspace,
  type FlowMatchEulerConfig,
  type SamplingSchedule,
  type ScheduleOptions,
} from './scheduler.js';
export {
  UNIPC_MULTISTEP_DEFAULTS,
  UniPCMultistepScheduler,
  UniPCSchedule,
  type UniPCMultistepConfig,
  type UniPCScheduleOptions,
  type UniPCSolverSettings,
} from './unipc.js';
export {
  COMPUTE_DTYPES,
  ParameterStore,
  WeightMismatchError,
  WeightReader,
  computeDtype,
  loadFromFolder,
  type ComputeDtype,
  type LoadOptions,
} from './weights.js';
export { runtimeTensorOps } from './cache-ops.js';
export { batchedGuidance, classifierFreeGuidance } from './guidance.js';
export { TransformerCallAnnouncer, type PipelineStepEnd, type PipelineTransformerCall } from './transformer-calls.js';
export { RemotePipeline, type Progress, type RemoteGenerateOptions } from './worker/remote-pipeline.js';
export type { HostSpec } from './worker/host.js';
