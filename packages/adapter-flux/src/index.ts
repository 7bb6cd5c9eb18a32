export { FLUX_TRANSFORMER_DEFAULTS, loadFluxTransformerConfig, type FluxTransformerConfig } from './config.js';
