// LTX-Video on the ditcache runtime: its transformer, pipeline, VAE and cache adapter.
export { LTX_TRANSFORMER_DEFAULTS, loadLtxTransformerConfig, readLtxTransformerConfig, type LtxTransformerConfig } from './config.js';
export { LtxAttention } from './attention.js';
export { LtxTransformerBlock, rmsModulate, type LtxBlock } from './blocks.js';
export { ltxRotaryEmbedding, ltxRotaryFrequencies, torchLinspaceFloat32, type LtxRotaryOptions, type RotaryEmbedding } from './rotary.js';
export { LtxTimeEmbedder, LtxVideoTransformer, type LtxTimeEmbedding, type LtxTransformerInputs } from './transformer.js';
