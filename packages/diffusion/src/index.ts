export { AUTOENCODER_KL_DEFAULTS, AutoencoderKLDecoder, type AutoencoderKLConfig } from './nn/autoencoder-kl/decoder.js';
export {
  AUTOENCODER_KL_QWENIMAGE_DEFAULTS,
  AUTOENCODER_KL_WAN_DEFAULTS,
  WAN_LAYOUT_VAE_CLASSES,
  readWanLayoutVaeConfig,
  type AutoencoderKLWanConfig,
} from './nn/autoencoder-kl-wan/config.js';
export { AutoencoderKLWanDecoder } from './nn/autoencoder-kl-wan/decoder.js';
export { WanAttentionBlock, WanRMSNorm, WanResidualBlock, WanUpsampler } from './nn/autoencoder-kl-wan/blocks.js';
export { CausalConv3d, TemporalCache } from './nn/autoencoder-kl-wan/causal-conv.js';
export { ConfigError, checkPipelineFolder, missingFolders, readJsonObject, requireFolders, typedConfig } from './io/config-file.js';
export { PIPELINE_DEFAULTS_FILE, readPipelineDefaults, withPipelineDefaults, type DefaultableOptions, type PipelineDefaults } from './io/pipeline-defaults.js';
export { MlpEmbedding, sinusoidalTimestepEmbedding, timesThousandInDtype, type SinusoidalOptions } from './nn/embeddings.js';
export { FeedForward, type FeedForwardActivation } from './nn/feed-forward.js';
export { FLOAT16_MAX, Float16OverflowError, checkFloat16Range, clipToFloat16Range, inDenoisingStep } from './pipeline/float16.js';
export { NonFiniteError, checkFiniteInputs, checkFiniteLatents, isFiniteTensor } from './pipeline/non-finite.js';
export { encodePng, saveAnimation, savePng, savePngFrames, toImage8, toImageRange, toVideoRange, type Image8 } from './io/image.js';
export { Conv2d, Conv3d, GroupNorm, LayerNorm, Linear, RMSNorm, type Conv2dGeometry, type Conv3dGeometry, type Triple } from './nn/layers.js';
export {
  AdaLayerNormContinuous,
  AdaLayerNormZero,
  gatedResidual,
  modulate,
  modulationParameters,
  type AdaLayerNormZeroOutput,
  type ModulateOptions,
} from './nn/normalization.js';
export { PatchEmbed, type PatchEmbedOptions } from './nn/patch-embed.js';
export { Mt19937, randnTensor, torchGenerator, torchRandn, torchRandnFrom } from './pipeline/random.js';
export { multiAxisRotaryTables, type RotaryTables } from './nn/rotary.js';
export {
  FLOW_MATCH_EULER_DEFAULTS,
  FlowMatchEulerDiscreteScheduler,
  FlowMatchSchedule,
  calculateShift,
  linspace,
  type FlowMatchEulerConfig,
  type SamplingSchedule,
  type ScheduleOptions,
} from './schedulers/flow-match-euler.js';
export {
  UNIPC_MULTISTEP_DEFAULTS,
  UniPCMultistepScheduler,
  UniPCSchedule,
  type UniPCMultistepConfig,
  type UniPCScheduleOptions,
  type UniPCSolverSettings,
} from './schedulers/unipc.js';
export {
  COMPUTE_DTYPES,
  ParameterStore,
  WeightMismatchError,
  WeightReader,
  computeDtype,
  loadFromFolder,
  type ComputeDtype,
  type LoadOptions,
} from './io/weights.js';
export { runtimeTensorOps } from './pipeline/cache-ops.js';
export { batchedGuidance, classifierFreeGuidance } from './pipeline/guidance.js';
export { TransformerCallAnnouncer, type PipelineStepEnd, type PipelineTransformerCall } from './pipeline/transformer-calls.js';
export { denoise, type DenoiseOptions } from './pipeline/denoise.js';
export type { DiffusionPipeline, DiffusionPipelineClass, DiffusionRequest } from './pipeline/diffusion-pipeline.js';
export { RemotePipeline, type Progress, type RemoteGenerateOptions } from './pipeline/worker/remote-pipeline.js';
export type { StepCache } from './pipeline/worker/wire.js';
export type { HostSpec } from './pipeline/worker/host.js';
export { JointAttention, SelfAttention, type Projection } from './nn/flux-attention.js';
export {
  doubleStreamBlock,
  loadDoubleStreamLayers,
  loadSingleStreamLayers,
  moduleName,
  singleStreamBlock,
  type DoubleStreamLayers,
  type DoubleStreamModulation,
  type SingleStreamLayers,
  type SingleStreamModulation,
} from './nn/flux-blocks.js';
export { latentImageIds, packLatents, unpackLatents } from './pipeline/packed-latents.js';
