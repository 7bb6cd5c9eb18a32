export { TokenizerError } from './errors.js';
export { loadTokenizer } from './tokenizer/load.js';
export { Tokenizer, type PaddedEncoding, type TokenizerJson, type TokenizerSettings } from './tokenizer/tokenizer.js';
export { PrecompiledCharsmap } from './tokenizer/precompiled-charsmap.js';
export { ClipTextModel, type ClipForwardOptions, type ClipTextConfig, type ClipTextOutput } from './clip-text-model.js';
export { DecoderLM, type DecoderLMConfig, type DecoderLMForwardOptions, type DecoderLMOutput } from './decoder-lm.js';
export { T5Encoder, type T5EncoderConfig, type T5ForwardOptions } from './t5-encoder.js';
export { positionBuckets, relativePositionBucket } from './t5-position-bias.js';
export { loadEncoderFolder } from './weights.js';
export { TransformersConfig } from './transformers-config.js';
export { fixText } from './fix-text.js';
export type { BatchEncoding, BatchOptions } from './tokenizer/tokenizer.js';
export {
  formatPrompt,
  HIDREAM_LLAMA_MAX_LENGTH,
  HUNYUAN_VIDEO_MAX_LENGTH,
  HUNYUAN_VIDEO_PROMPT_TEMPLATE,
  type PromptTemplate,
  QWEN_IMAGE_MAX_LENGTH,
  QWEN_IMAGE_PROMPT_TEMPLATE,
  templateCropStart,
} from './prompt-templates.js';
export { clipLengthWarning, maxSequenceLengthWarning, pythonRepr } from './truncation-warning.js';
export { T5_TEXT_COMPONENTS, T5TextComponents } from './t5-text-components.js';
