// What transformers 5 does around the tokenizers library's decode for the tokenizer classes the
// pipelines load: CLIPTokenizer and T5Tokenizer rebuild their decoder whatever tokenizer.json
// says (CLIP: ByteLevel, then "</w>" to spaces and Python's strip(); T5: Metaspace, prepend_scheme
// "always"), and clean_up_tokenization_spaces from tokenizer_config.json is applied to all models
// but BPE ones. diffusers quotes this text when a prompt is truncated.
type Json = Record<string, unknown>;

/** How transformers' decode differs from the bare tokenizer.json decoder. */
export interface TransformersDecoding {
  /** The decoder the tokenizer class builds, over tokenizer.json's. */
  decoder?: Json;
  /** CLIPTokenizer's end-of-word suffix: replaced by spaces, then the text stripped as Python's str.strip(). */
  endOfWordSuffix?: string;
  /** transformers' clean_up_tokenization (spaces before punctuation and contractions removed). */
  cleanUp?: boolean;
}

export const CLIP_CLASSES = ['CLIPTokenizer', 'CLIPTokenizerFast'];
export const T5_CLASSES = ['T5Tokenizer', 'T5TokenizerFast'];

/** The decoding of a tokenizer of class `cls` (from tokenizer_config.json, or the one the slow files imply) with a `modelType` model. */
export function transformersDecoding(cls: string | undefined, config: Json, modelType: unknown): TransformersDecoding {
  // transformers 5 skips the clean-up for BPE: it would strip real spaces before punctuation.
  const cleanUp =
    config.clean_up_tokenization_spaces === true &&
    (modelType !== 'BPE' || config.clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output === true);
  if (cls && CLIP_CLASSES.includes(cls)) return { decoder: { type: 'ByteLevel' }, endOfWordSuffix: '</w>', cleanUp };
  if (cls && T5_CLASSES.includes(cls)) return { decoder: { type: 'Metaspace', replacement: '\u2581', prepend_scheme: 'always' }, cleanUp };
  return { cleanUp };
}

// Python's str.isspace() characters, which str.strip() removes (JavaScript's trim() differs: U+FEFF, U+001C-U+001F, U+0085).
const PYTHON_SPACE = '\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const PYTHON_STRIP = new RegExp(`^[${PYTHON_SPACE}]+|[${PYTHON_SPACE}]+$`, 'g');

/** transformers' clean_up_tokenization, replacement by replacement in its order. */
function cleanUpTokenization(text: string): string {
  const pairs: [string, string][] = [
    [' .', '.'],
    [' ?', '?'],
    [' !', '!'],
    [' ,', ','],
    [" ' ", "'"],
    [" n't", "n't"],
    [" 'm", "'m"],
    [" 's", "'s"],
    [" 've", "'ve"],
    [" 're", "'re"],
  ];
  return pairs.reduce((t, [from, to]) => t.replaceAll(from, to), text);
}

/** The text transformers' decode returns for `decoded`, the decoder's output. */
export function finishDecoding(decoded: string, d: TransformersDecoding): string {
  let text = decoded;
  if (d.endOfWordSuffix) text = text.replaceAll(d.endOfWordSuffix, ' ').replace(PYTHON_STRIP, '');
  return d.cleanUp ? cleanUpTokenization(text) : text;
}
