export { HIDREAM_TRANSFORMER_DEFAULTS, loadHiDreamTransformerConfig, type HiDreamTransformerConfig } from './config.js';
