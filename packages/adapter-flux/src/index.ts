export { FLUX_TRANSFORMER_DEFAULTS, loadFluxTransformerConfig, readFluxTransformerConfig, type FluxTransformerConfig } from './config.js';
export { FluxSingleTransformerBlock, FluxTransformerBlock, type FluxBlock } from './blocks.js';
// The attention and the packed latent layout are shared with Chroma through @ditcache/diffusion.
export { JointAttention, SelfAttention, latentImageIds, packLatents, unpackLatents, type Projection } from '@ditcache/diffusion';
export { fluxRotaryEmbedding, type RotaryEmbedding } from './rotary.js';
export { FluxTransformer, type FluxCallShape, type FluxFlops, type FluxTextConditioning, type FluxTransformerInputs } from './transformer.js';
export {
  FluxPipeline,
  type FluxGenerateOptions,
  type FluxGenerateResult,
  type FluxLoadOptions,
  type StepEnd,
  type TransformerCall,
} from './pipeline.js';
export { FluxCacheAdapterFactory, fluxBlockAdapter, type FluxCacheLayout } from './cache.js';
export {
  FluxPromptEncoder,
  MAX_SEQUENCE_LENGTH,
  TEXT_COMPONENTS,
  missingTextComponents,
  type EncodePromptOptions,
  type FluxPromptEmbeddings,
} from './prompt-encoder.js';
