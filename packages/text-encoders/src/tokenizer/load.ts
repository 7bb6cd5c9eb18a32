// Loads a transformers tokenizer folder: tokenizer.json when there is one, else the older files
// (CLIP's and Qwen2's vocab.json + merges.txt, T5's spiece.model), rebuilt as transformers'
// CLIPTokenizer, Qwen2Tokenizer and T5Tokenizer build them; tokenizer_config.json and special_tokens_map.json add the pad and eos
// tokens, model_max_length, padding_side and how the class decodes.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

import { TokenizerError } from '../errors.js';
import { type Json, readJson, readMerges, tokenText } from './json-files.js';
import { QWEN2_CLASSES, qwen2Spec } from './qwen2-files.js';
import { PIECE_UNKNOWN, parseSentencePieceModel } from './sentencepiece-model.js';
import { Tokenizer, type TokenizerJson, type TokenizerSettings } from './tokenizer.js';
import { CLIP_CLASSES, T5_CLASSES, transformersDecoding } from './transformers-decode.js';

/** tokenizer_config.json over special_tokens_map.json, both optional. */
function readConfig(dir: string): Json {
  const map = existsSync(join(dir, 'special_tokens_map.json')) ? readJson(join(dir, 'special_tokens_map.json')) : {};
  const config = existsSync(join(dir, 'tokenizer_config.json')) ? readJson(join(dir, 'tokenizer_config.json')) : {};
  return { ...map, ...config };
}

// transformers writes a huge sentinel (1e30) when a tokenizer has no length limit.
function settingsOf(config: Json, dir: string): TokenizerSettings {
  const side = config.padding_side ?? 'right';
  if (side !== 'left' && side !== 'right') throw new TokenizerError(`${dir}: padding_side ${JSON.stringify(side)} is not one of "left", "right"`);
  // Truncation keeps the start of a prompt, as every pipeline here expects.
  if ((config.truncation_side ?? 'right') !== 'right') {
    throw new TokenizerError(`${dir}: truncation_side ${JSON.stringify(config.truncation_side)} is not supported (supported: "right")`);
  }
  return {
    padToken: tokenText(config.pad_token) ?? null,
    modelMaxLength: typeof config.model_max_length === 'number' && config.model_max_length < 1e9 ? config.model_max_length : null,
    eosToken: tokenText(config.eos_token) ?? null,
    paddingSide: side,
  };
}

/**
 * Loads the tokenizer in `dir` (a pipeline's `tokenizer/` or `tokenizer_2/`). Throws a
 * TokenizerError naming the folder when it holds no tokenizer files, or ones this package
 * cannot run.
 */
export function loadTokenizer(dir: string): Tokenizer {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new TokenizerError(`${dir}: no such tokenizer folder`);
  const config = readConfig(dir);
  const settings = settingsOf(config, dir);
  const cls = typeof config.tokenizer_class === 'string' ? config.tokenizer_class : undefined;
  const json = join(dir, 'tokenizer.json');
  if (existsSync(json)) {
    const spec = readJson(json);
    return new Tokenizer(spec, { ...settings, decoding: transformersDecoding(cls, config, (spec.model as Json | undefined)?.type) }, json);
  }

  if (existsSync(join(dir, 'vocab.json')) && existsSync(join(dir, 'merges.txt'))) {
    if (cls && QWEN2_CLASSES.includes(cls)) {
      return new Tokenizer(qwen2Spec(dir, config), { ...settings, decoding: transformersDecoding(cls, config, 'BPE') }, join(dir, 'vocab.json'));
    }
    if (cls && !CLIP_CLASSES.includes(cls)) {
      throw new TokenizerError(
        `${dir}: vocab.json + merges.txt of a ${cls} are not supported without a tokenizer.json (supported: ${[...CLIP_CLASSES, ...QWEN2_CLASSES].join(', ')})`,
      );
    }
    const decoding = transformersDecoding('CLIPTokenizer', config, 'BPE');
    return new Tokenizer(clipSpec(dir, config), { ...settings, padToken: settings.padToken ?? '<|endoftext|>', decoding }, join(dir, 'vocab.json'));
  }
  if (existsSync(join(dir, 'spiece.model'))) {
    if (cls && !T5_CLASSES.includes(cls)) {
      throw new TokenizerError(`${dir}: spiece.model of a ${cls} is not supported without a tokenizer.json (only T5's is)`);
    }
    const decoding = transformersDecoding('T5Tokenizer', config, 'Unigram');
    return new Tokenizer(t5Spec(dir, config), { ...settings, padToken: settings.padToken ?? '<pad>', decoding }, join(dir, 'spiece.model'));
  }
  // Llama 3's original/tokenizer.model is tiktoken's rank list, Llama 2's a SentencePiece model: neither is read here.
  if (existsSync(join(dir, 'tokenizer.model'))) {
    throw new TokenizerError(
      `${dir}: tokenizer.model${cls ? ` of a ${cls}` : ''} is not supported: tokenizer.json is missing (save the tokenizer with transformers to write one)`,
    );
  }
  throw new TokenizerError(`${dir}: no tokenizer files (tokenizer.json, vocab.json + merges.txt, or spiece.model)`);
}

/** The pipeline transformers' CLIPTokenizer builds around vocab.json and merges.txt. */
function clipSpec(dir: string, config: Json): TokenizerJson {
  const vocab = readJson(join(dir, 'vocab.json')) as Record<string, number>;
  const merges = readMerges(join(dir, 'merges.txt'));
  const bos = tokenText(config.bos_token) ?? '<|startoftext|>';
  const eos = tokenText(config.eos_token) ?? '<|endoftext|>';
  const unk = tokenText(config.unk_token) ?? '<|endoftext|>';
  const pad = tokenText(config.pad_token) ?? '<|endoftext|>';
  const idOf = (token: string): number => {
    const id = vocab[token];
    if (id === undefined) throw new TokenizerError(`${join(dir, 'vocab.json')}: lacks the special token ${JSON.stringify(token)}`);
    return id;
  };
  const specials = [...new Set([bos, eos, unk, pad])].map((content) => ({ id: idOf(content), content, normalized: false }));
  return {
    added_tokens: specials,
    normalizer: { type: 'Sequence', normalizers: [{ type: 'NFC' }, { type: 'Replace', pattern: { Regex: '\\s+' }, content: ' ' }, { type: 'Lowercase' }] },
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [
        {
          type: 'Split',
          pattern: { Regex: "<\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+" },
          behavior: 'Removed',
          invert: true,
        },
        { type: 'ByteLevel', add_prefix_space: false, use_regex: true },
      ],
    },
    model: { type: 'BPE', vocab, merges, unk_token: unk, continuing_subword_prefix: '', end_of_word_suffix: '</w>', fuse_unk: false },
    post_processor: { type: 'RobertaProcessing', cls: [bos, idOf(bos)], sep: [eos, idOf(eos)] },
  };
}

/**
 * The pipeline transformers' T5Tokenizer builds around spiece.model: the pieces and scores,
 * `extra_ids` sentinels appended (<extra_id_99> first), SentencePiece's precompiled
 * normaliser, whitespace splitting with a "▁" before every word, and </s> at the end.
 */
function t5Spec(dir: string, config: Json): TokenizerJson {
  const path = join(dir, 'spiece.model');
  const model = parseSentencePieceModel(readFileSync(path), path);
  const vocab: [string, number][] = model.pieces.map((p) => [p.piece, p.score]);
  const known = new Set(vocab.map(([piece]) => piece));
  const extraIds = typeof config.extra_ids === 'number' ? config.extra_ids : 100;
  for (let i = extraIds - 1; i >= 0; i--) if (!known.has(`<extra_id_${i}>`)) vocab.push([`<extra_id_${i}>`, 0]);
  const unkId = model.pieces.findIndex((p) => p.type === PIECE_UNKNOWN);
  if (unkId < 0) throw new TokenizerError(`${path}: has no unknown piece`);
  const idOf = (token: string): number => {
    const id = vocab.findIndex(([piece]) => piece === token);
    if (id < 0) throw new TokenizerError(`${path}: lacks the special token ${JSON.stringify(token)}`);
    return id;
  };
  const eos = tokenText(config.eos_token) ?? '</s>';
  const specials = [tokenText(config.pad_token) ?? '<pad>', eos, tokenText(config.unk_token) ?? '<unk>'];
  for (let i = 0; i < extraIds; i++) specials.push(`<extra_id_${i}>`);
  const charsmap = Buffer.from(model.precompiledCharsmap).toString('base64');
  return {
    added_tokens: specials.map((content) => ({ id: idOf(content), content, normalized: false })),
    normalizer: charsmap ? { type: 'Precompiled', precompiled_charsmap: charsmap } : null,
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [{ type: 'WhitespaceSplit' }, { type: 'Metaspace', replacement: '\u2581', prepend_scheme: 'always', split: true }],
    },
    model: { type: 'Unigram', vocab, unk_id: unkId, byte_fallback: false },
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ Sequence: { id: 'A' } }, { SpecialToken: { id: eos } }],
      special_tokens: { [eos]: { ids: [idOf(eos)] } },
    },
  };
}
