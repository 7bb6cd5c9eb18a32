export { WAN_TRANSFORMER_DEFAULTS, loadWanTransformerConfig, readWanTransformerConfig, type WanTransformerConfig } from './config.js';
export { WanAttention } from './attention.js';
export { WanTransformerBlock, type WanBlock } from './blocks.js';
export { wanRotaryAxes, wanRotaryEmbedding, type RotaryEmbedding, type WanRotaryOptions } from './rotary.js';
export {
  WanConditionEmbedder,
  WanImageEmbedding,
  WanTransformer,
  type WanCallShape,
  type WanConditions,
  type WanFlops,
  type WanTransformerInputs,
} from './transformer.js';
export { AUTOENCODER_KL_WAN_DEFAULTS, AutoencoderKLWanDecoder, type AutoencoderKLWanConfig } from './vae/decoder.js';
export { WanAttentionBlock, WanRMSNorm, WanResidualBlock, WanUpsampler } from './vae/blocks.js';
export { CausalConv3d, TemporalCache } from './vae/causal-conv.js';
export {
  WanPipeline,
  type StepEnd,
  type TransformerCall,
  type WanExpert,
  type WanGenerateOptions,
  type WanGenerateResult,
  type WanLoadOptions,
  type WanPipelineComponents,
  type WanScheduler,
} from './pipeline.js';
export {
  MAX_SEQUENCE_LENGTH,
  TEXT_COMPONENTS,
  WanPromptEncoder,
  cleanPrompt,
  missingTextComponents,
  type WanEncodePromptOptions,
  type WanPromptEmbeddings,
} from './prompt-encoder.js';
export { WanCacheAdapterFactory, wanBlockAdapter } from './cache.js';
