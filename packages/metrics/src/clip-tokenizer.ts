import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MetricsError } from './errors.js';

/**
 * The CLIP text tokenizer: byte-level BPE with an end-of-word marker (`</w>`), as OpenAI's
 * `SimpleTokenizer`, open_clip and Hugging Face's CLIPTokenizer implement it, reading the
 * Hugging Face files `vocab.json` (token -> id) and `merges.txt` (one merge per line, by
 * rank) of the CLIP checkpoint.
 *
 * Text clean-up follows the Hugging Face fast tokenizer: NFC, runs of whitespace to one
 * space, trimmed, lower-cased. (The Python tokenizers also run ftfy's `fix_text`, which only
 * changes mojibake and similar broken text.)
 */

const START = '<|startoftext|>';
const END = '<|endoftext|>';

/** CLIP's pre-tokenisation: special tokens, contractions, letter runs, single digits, other runs. */
const WORD_PATTERN = /<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+/giu;

/** GPT-2's reversible byte -> printable character map used by byte-level BPE. */
function bytesToUnicode(): string[] {
  const bytes: number[] = [];
  for (let b = 33; b <= 126; b++) bytes.push(b);
  for (let b = 161; b <= 172; b++) bytes.push(b);
  for (let b = 174; b <= 255; b++) bytes.push(b);
  const chars = bytes.slice();
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    if (!bytes.includes(b)) {
      bytes.push(b);
      chars.push(256 + extra++);
    }
  }
  const map: string[] = new Array(256);
  bytes.forEach((b, i) => (map[b] = String.fromCodePoint(chars[i])));
  return map;
}

const BYTE_CHARS = bytesToUnicode();

export interface EncodedBatch {
  /** (texts, contextLength) token ids, padded. */
  inputIds: BigInt64Array;
  /** 1 for real tokens, 0 for padding. */
  attentionMask: BigInt64Array;
  contextLength: number;
}

export class ClipTokenizer {
  private readonly ranks = new Map<string, number>();
  private readonly cache = new Map<string, string[]>();
  readonly startId: number;
  readonly endId: number;
  readonly padId: number;

  /**
   * @param vocab token -> id (vocab.json)
   * @param merges merge rules "a b" in rank order (merges.txt without its "#version" line)
   * @param padToken the padding token; CLIP's text towers pool at the end-of-text token and
   *   attend causally, so padding never changes the embedding.
   */
  constructor(
    private readonly vocab: Readonly<Record<string, number>>,
    merges: readonly string[],
    padToken = END,
  ) {
    merges.forEach((merge, rank) => this.ranks.set(merge, rank));
    const id = (token: string): number => {
      const value = vocab[token];
      if (value === undefined) throw new MetricsError(`CLIP vocabulary lacks the special token ${token}`);
      return value;
    };
    this.startId = id(START);
    this.endId = id(END);
    this.padId = id(padToken);
  }

  /** Reads `vocab.json` and `merges.txt` from a Hugging Face CLIP tokenizer folder. */
  static async fromDirectory(dir: string): Promise<ClipTokenizer> {
    let vocabText: string;
    let mergesText: string;
    try {
      [vocabText, mergesText] = await Promise.all([readFile(join(dir, 'vocab.json'), 'utf8'), readFile(join(dir, 'merges.txt'), 'utf8')]);
    } catch (error) {
      throw new MetricsError(`cannot read the CLIP tokenizer (vocab.json, merges.txt) in ${dir}: ${(error as Error).message}`);
    }
    return new ClipTokenizer(JSON.parse(vocabText) as Record<string, number>, parseMerges(mergesText));
  }

  /** The BPE tokens of a text, without the start and end tokens. */
  tokenize(text: string): string[] {
    const cleaned = text.normalize('NFC').replace(/\s+/gu, ' ').trim().toLowerCase();
    const tokens: string[] = [];
    for (const match of cleaned.matchAll(WORD_PATTERN)) {
      const word = Array.from(new TextEncoder().encode(match[0]), (b) => BYTE_CHARS[b]).join('');
      tokens.push(...this.bpe(word));
    }
    return tokens;
  }

  /** Token ids with the start and end tokens, truncated to `contextLength` keeping the end token. */
  encode(text: string, contextLength = 77): number[] {
    const ids = this.tokenize(text).map((token) => {
      const id = this.vocab[token];
      if (id === undefined) throw new MetricsError(`CLIP vocabulary lacks the token ${JSON.stringify(token)}`);
      return id;
    });
    return [this.startId, ...ids.slice(0, contextLength - 2), this.endId];
  }

  encodeBatch(texts: readonly string[], contextLength = 77): EncodedBatch {
    const inputIds = new BigInt64Array(texts.length * contextLength).fill(BigInt(this.padId));
    const attentionMask = new BigInt64Array(texts.length * contextLength);
    texts.forEach((text, row) => {
      this.encode(text, contextLength).forEach((id, i) => {
        inputIds[row * contextLength + i] = BigInt(id);
        attentionMask[row * contextLength + i] = 1n;
      });
    });
    return { inputIds, attentionMask, contextLength };
  }

  /** Applies the merges to one pre-token, lowest rank first; the last symbol ends the word. */
  private bpe(word: string): string[] {
    const cached = this.cache.get(word);
    if (cached) return cached;
    const symbols = Array.from(word);
    symbols[symbols.length - 1] += '</w>';
    for (;;) {
      let best = -1;
      let bestRank = Infinity;
      for (let i = 0; i < symbols.length - 1; i++) {
        const rank = this.ranks.get(`${symbols[i]} ${symbols[i + 1]}`);
        if (rank !== undefined && rank < bestRank) {
          bestRank = rank;
          best = i;
        }
      }
      if (best < 0) break;
      // Merge every occurrence of the best pair, left to right, as the reference does.
      const first = symbols[best];
      const second = symbols[best + 1];
      const merged: string[] = [];
      for (let i = 0; i < symbols.length; ) {
        if (i < symbols.length - 1 && symbols[i] === first && symbols[i + 1] === second) {
          merged.push(first + second);
          i += 2;
        } else {
          merged.push(symbols[i]);
          i += 1;
        }
      }
      symbols.splice(0, symbols.length, ...merged);
    }
    this.cache.set(word, symbols);
    return symbols;
  }
}

/** merges.txt lines after the "#version" header, blank lines dropped. */
export function parseMerges(text: string): string[] {
  return text
    .split('\n')
    .map((line) => line.replace(/\r$/, ''))
    .filter((line, index) => line.length > 0 && !(index === 0 && line.startsWith('#version')));
}
