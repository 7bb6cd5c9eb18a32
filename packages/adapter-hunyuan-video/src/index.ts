// HunyuanVideo text-to-video on the ditcache runtime: its transformer (token refiner, dual- and
// single-stream blocks), causal video VAE decoder, prompt encoder (Llama 3 and CLIP-L), pipeline
// (a prompt or prompt embeddings in) and cache adapter (importing the package registers it with
// @ditcache/core).
export {
  HUNYUAN_VIDEO_TRANSFORMER_DEFAULTS,
  loadHunyuanVideoTransformerConfig,
  readHunyuanVideoTransformerConfig,
  type HunyuanVideoTransformerConfig,
} from './config.js';
export { DualStreamAttention, RefinerAttention, SingleStreamAttention, type Projection } from './attention.js';
export { HunyuanVideoSingleTransformerBlock, HunyuanVideoTransformerBlock, type HunyuanVideoBlock } from './blocks.js';
export { TokenRefiner, TokenRefinerBlock, refinerAttentionMask } from './refiner.js';
export { hunyuanVideoRotaryEmbedding, type RotaryEmbedding } from './rotary.js';
export {
  HunyuanVideoTransformer,
  type HunyuanVideoCallShape,
  type HunyuanVideoFlops,
  type HunyuanVideoTransformerInputs,
} from './transformer.js';
export { AUTOENCODER_KL_HUNYUAN_VIDEO_DEFAULTS, readHunyuanVideoVaeConfig, type AutoencoderKLHunyuanVideoConfig } from './vae/config.js';
export { AutoencoderKLHunyuanVideoDecoder, type SpatialTiling } from './vae/decoder.js';
export { CausalConv3d, CausalFrameAttention, CausalUpsampler, ResnetBlock } from './vae/layers.js';
export {
  HunyuanVideoPipeline,
  type HunyuanVideoGenerateOptions,
  type HunyuanVideoGenerateResult,
  type HunyuanVideoLoadOptions,
  type HunyuanVideoPipelineComponents,
  type StepEnd,
  type TransformerCall,
} from './pipeline.js';
export {
  CLIP_MAX_LENGTH,
  DEFAULT_MAX_SEQUENCE_LENGTH,
  HunyuanVideoPromptEncoder,
  TEXT_COMPONENTS,
  missingTextComponents,
  type HunyuanVideoEncodePromptOptions,
  type HunyuanVideoPromptEmbeddings,
} from './prompt-encoder.js';
export { HunyuanVideoCacheAdapterFactory, hunyuanVideoBlockAdapter } from './cache.js';
