// LTX-Video on the ditcache runtime: its transformer, pipeline, VAE and cache adapter.
export { LTX_TRANSFORMER_DEFAULTS, loadLtxTransformerConfig, readLtxTransformerConfig, type LtxTransformerConfig } from './config.js';
export { LtxAttention } from './attention.js';
export { LtxTransformerBlock, rmsModulate, type LtxBlock } from './blocks.js';
export { ltxRotaryEmbedding, ltxRotaryFrequencies, torchLinspaceFloat32, type LtxRotaryOptions, type RotaryEmbedding } from './rotary.js';
export { LtxTimeEmbedder, LtxVideoTransformer, type LtxCallShape, type LtxFlops, type LtxTimeEmbedding, type LtxTransformerInputs } from './transformer.js';
export {
  AUTOENCODER_KL_LTX_VIDEO_DEFAULTS,
  readLtxVaeConfig,
  spatialCompressionRatio,
  temporalCompressionRatio,
  type AutoencoderKLLtxVideoConfig,
} from './vae/config.js';
export { LtxCausalConv3d, LtxResnetBlock3d, LtxTimestepEmbedder, LtxUpsampler3d, channelRmsNorm, depthToSpace } from './vae/blocks.js';
export { AutoencoderKLLtxVideoDecoder, LtxDecoderBlock, blendDecodeNoise } from './vae/decoder.js';
export {
  LtxPipeline,
  type LtxGenerateOptions,
  type LtxGenerateResult,
  type LtxLoadOptions,
  type LtxPipelineComponents,
  type StepEnd,
  type TransformerCall,
} from './pipeline.js';
export { LtxCacheAdapterFactory, ltxBlockAdapter } from './cache.js';
export {
  DEFAULT_MAX_SEQUENCE_LENGTH,
  LtxPromptEncoder,
  TEXT_COMPONENTS,
  missingTextComponents,
  type EncodePromptOptions,
  type LtxPromptEmbeddings,
} from './prompt-encoder.js';
export { checkPromptInputs, resolveEmbeddings, type LtxPromptInputs, type ResolvedEmbeddings } from './prompt-inputs.js';
