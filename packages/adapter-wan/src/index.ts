export { WAN_TRANSFORMER_DEFAULTS, loadWanTransformerConfig, type WanTransformerConfig } from './config.js';
