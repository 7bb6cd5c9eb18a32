// Qwen-Image (and Qwen-Image-Lightning) on the ditcache runtime: its transformer, pipeline (prompt
// embeddings in) and cache adapter. Importing it registers the adapter with the cache engine.
export {
  QWEN_IMAGE_TRANSFORMER_DEFAULTS,
  loadQwenImageTransformerConfig,
  readQwenImageTransformerConfig,
  type QwenImageTransformerConfig,
} from './config.js';
export { QwenImageTransformerBlock, type QwenImageBlock } from './block.js';
export { qwenImagePositions, qwenImageRotaryEmbedding, type ImageShape, type RotaryEmbedding } from './rotary.js';
export { QwenImageTransformer, type QwenImageCallShape, type QwenImageFlops, type QwenImageTransformerInputs } from './transformer.js';
export { normRescaledGuidance } from './guidance.js';
export {
  QwenImagePipeline,
  type QwenImageGenerateOptions,
  type QwenImageGenerateResult,
  type StepEnd,
  type TransformerCall,
} from './pipeline.js';
export { QwenImageCacheAdapterFactory, qwenImageBlockAdapter } from './cache.js';
