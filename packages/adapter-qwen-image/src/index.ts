// Qwen-Image (and Qwen-Image-Lightning) on the ditcache runtime: its transformer, prompt encoder
// (Qwen2.5-VL), pipeline (a prompt or prompt embeddings in) and cache adapter. Importing it
// registers the adapter with the cache engine.
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
  type QwenImageLoadOptions,
  type StepEnd,
  type TransformerCall,
} from './pipeline.js';
export {
  DEFAULT_MAX_SEQUENCE_LENGTH,
  MAX_SEQUENCE_LENGTH_LIMIT,
  QwenImagePromptEncoder,
  TEXT_COMPONENTS,
  missingTextComponents,
  type QwenImageEncodePromptOptions,
  type QwenImagePromptEmbeddings,
} from './prompt-encoder.js';
export { QwenImageCacheAdapterFactory, qwenImageBlockAdapter } from './cache.js';
