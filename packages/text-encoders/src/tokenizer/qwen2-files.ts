// A Qwen2 tokenizer folder without tokenizer.json (vocab.json + merges.txt + tokenizer_config.json,
// as a slow Qwen2Tokenizer saves it; Qwen-Image's tokenizer/ may be one), rebuilt as transformers'
// Qwen2Tokenizer builds it: byte-level BPE after NFC and Qwen2's Split pattern, no special tokens
// around a sequence, and the added tokens of tokenizer_config.json's added_tokens_decoder.
import { existsSync } from 'node:fs';
import { join } from 'node:path';

import { TokenizerError } from '../errors.js';
import { type Json, readJson, readMerges, tokenText } from './json-files.js';
import type { TokenizerJson } from './tokenizer.js';

export const QWEN2_CLASSES = ['Qwen2Tokenizer', 'Qwen2TokenizerFast'];

// transformers' PRETOKENIZE_REGEX of Qwen2Tokenizer.
const QWEN2_PATTERN = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/** The tokenizer.json that Qwen2Tokenizer builds from the files in `dir`; `config` is its tokenizer_config.json. */
export function qwen2Spec(dir: string, config: Json): TokenizerJson {
  const vocab = readJson(join(dir, 'vocab.json')) as Record<string, number>;
  const merges = readMerges(join(dir, 'merges.txt'));
  const where = join(dir, 'tokenizer_config.json');
  const decoder = (config.added_tokens_decoder ?? {}) as Record<string, Json>;
  const added: Json[] = Object.entries(decoder).map(([id, t]) => ({ ...t, id: Number(id) }));
  const known = new Set(added.map((t) => t.content as string));
  // Qwen2Tokenizer adds its special tokens (eos, pad, ...) as special added tokens if they are not yet.
  for (const key of ['bos_token', 'eos_token', 'unk_token', 'pad_token']) {
    const content = tokenText(config[key]);
    if (content === undefined || known.has(content)) continue;
    const id = vocab[content];
    if (id === undefined) throw new TokenizerError(`${where}: ${key} ${JSON.stringify(content)} is neither in added_tokens_decoder nor in vocab.json`);
    added.push({ id, content, normalized: false, special: true });
    known.add(content);
  }
  const addedJson = join(dir, 'added_tokens.json');
  if (existsSync(addedJson)) {
    const missing = Object.keys(readJson(addedJson)).filter((content) => !known.has(content));
    if (missing.length) {
      throw new TokenizerError(
        `${addedJson}: names ${missing.map((m) => JSON.stringify(m)).join(', ')}, which added_tokens_decoder of ${where} lacks (their flags are unknown)`,
      );
    }
  }
  const byteLevel = { type: 'ByteLevel', add_prefix_space: config.add_prefix_space === true, use_regex: false };
  return {
    added_tokens: added,
    normalizer: { type: 'NFC' },
    pre_tokenizer: { type: 'Sequence', pretokenizers: [{ type: 'Split', pattern: { Regex: QWEN2_PATTERN }, behavior: 'Isolated', invert: false }, byteLevel] },
    model: { type: 'BPE', vocab, merges, unk_token: null, continuing_subword_prefix: '', end_of_word_suffix: '', fuse_unk: false, byte_fallback: false },
    post_processor: null,
    decoder: { type: 'ByteLevel' },
  };
}
