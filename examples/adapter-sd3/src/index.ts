// Importing this package registers its BlockAdapter factory with @ditcache/core (cache.ts).
export { SD3_TRANSFORMER_DEFAULTS, loadSD3TransformerConfig, readSD3TransformerConfig, type SD3TransformerConfig } from './config.js';
export { JointAttention, SelfAttention, type AttentionShape, type Projection } from './attention.js';
export { JointTransformerBlock, SD35AdaLayerNormZeroX, type JointBlockOptions, type SD3Block } from './blocks.js';
export { SD3Transformer, type SD3TransformerInputs } from './transformer.js';
export {
  StableDiffusion3Pipeline,
  type SD3GenerateOptions,
  type SD3GenerateResult,
  type SD3LoadOptions,
  type SD3PipelineComponents,
  type StepEnd,
  type TransformerCall,
} from './pipeline.js';
export { CLIP_COMPONENTS, MAX_SEQUENCE_LENGTH, SD3PromptEncoder, T5_COMPONENTS, type SD3PromptEmbeddings } from './prompt-encoder.js';
export { SD3CacheAdapterFactory, sd3BlockAdapter } from './cache.js';
