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
// The Wan VAE decoder lives in @ditcache/diffusion (Qwen-Image shares it); re-exported so this package's API is unchanged.
export {
  AUTOENCODER_KL_WAN_DEFAULTS,
  AutoencoderKLWanDecoder,
  CausalConv3d,
  TemporalCache,
  WanAttentionBlock,
  WanRMSNorm,
  WanResidualBlock,
  WanUpsampler,
  type AutoencoderKLWanConfig,
} from '@ditcache/diffusion';
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
