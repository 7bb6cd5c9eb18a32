export { TokenizerError } from './errors.js';
export { loadTokenizer } from './tokenizer/load.js';
export { Tokenizer, type PaddedEncoding, type TokenizerJson, type TokenizerSettings } from './tokenizer/tokenizer.js';
export { PrecompiledCharsmap } from './tokenizer/precompiled-charsmap.js';
export { ClipTextModel, type ClipTextConfig, type ClipTextOutput } from './clip-text-model.js';
export { T5Encoder, type T5EncoderConfig, type T5ForwardOptions } from './t5-encoder.js';
export { positionBuckets, relativePositionBucket } from './t5-position-bias.js';
export { StoredDtypeWeightReader, loadEncoderFolder } from './weights.js';
export { TransformersConfig } from './transformers-config.js';
