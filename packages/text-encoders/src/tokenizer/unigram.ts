// The unigram language model of SentencePiece (T5, UMT5): the segmentation of a piece with the
// highest total log-probability (Viterbi), as the Rust tokenizers library computes it. A
// character no vocabulary entry starts with becomes the unknown token, scored 10 below the
// lowest score; consecutive unknown tokens fuse into one.
import { TokenizerError } from '../errors.js';

/** Scores below the vocabulary's lowest for the unknown token (tokenizers' K_UNK_PENALTY). */
const UNKNOWN_PENALTY = 10;

interface TrieNode {
  children: Map<string, TrieNode>;
  id: number;
}

export interface UnigramOptions {
  /** [piece, log-probability] in id order. */
  vocab: readonly (readonly [string, number])[];
  unkId: number;
  byteFallback?: boolean;
  fuseUnk?: boolean;
}

export class UnigramModel {
  private readonly root: TrieNode = { children: new Map(), id: -1 };
  private readonly scores: Float64Array;
  private readonly unkId: number;
  private readonly unkScore: number;
  private readonly byteFallback: boolean;
  private readonly fuseUnk: boolean;
  private readonly byteIds = new Map<number, number>();
  private readonly cache = new Map<string, number[]>();

  constructor(opts: UnigramOptions) {
    if (!Number.isInteger(opts.unkId) || opts.unkId < 0 || opts.unkId >= opts.vocab.length) {
      throw new TokenizerError(`Unigram: unk_id ${opts.unkId} is outside the ${opts.vocab.length}-entry vocabulary`);
    }
    this.scores = Float64Array.from(opts.vocab, ([, score]) => score);
    this.unkId = opts.unkId;
    this.unkScore = this.scores.reduce((a, b) => Math.min(a, b), Infinity) - UNKNOWN_PENALTY;
    this.byteFallback = opts.byteFallback ?? false;
    this.fuseUnk = opts.fuseUnk ?? true;
    opts.vocab.forEach(([piece], id) => {
      const byte = /^<0x([0-9A-F]{2})>$/.exec(piece);
      if (byte) this.byteIds.set(parseInt(byte[1], 16), id);
      let node = this.root;
      for (const c of piece) {
        let next = node.children.get(c);
        if (!next) {
          next = { children: new Map(), id: -1 };
          node.children.set(c, next);
        }
        node = next;
      }
      // The first entry of a duplicated piece keeps it, as the reference's token-to-id map does.
      if (node.id < 0) node.id = id;
    });
  }

  tokenize(piece: string): number[] {
    const cached = this.cache.get(piece);
    if (cached) return cached;
    const ids = this.viterbi(Array.from(piece));
    this.cache.set(piece, ids);
    return ids;
  }

  private viterbi(chars: string[]): number[] {
    const n = chars.length;
    if (n === 0) return [];
    const bestScore = new Float64Array(n + 1);
    const startsAt = new Int32Array(n + 1).fill(-1);
    const idAt = new Int32Array(n + 1).fill(-1);
    for (let start = 0; start < n; start++) {
      if (start > 0 && startsAt[start] < 0) continue;
      const base = bestScore[start];
      let coversOneChar = false;
      let node: TrieNode | undefined = this.root;
      for (let end = start; end < n; end++) {
        node = node.children.get(chars[end]);
        if (!node) break;
        if (node.id < 0) continue;
        const score = base + this.scores[node.id];
        if (startsAt[end + 1] < 0 || score > bestScore[end + 1]) {
          bestScore[end + 1] = score;
          startsAt[end + 1] = start;
          idAt[end + 1] = node.id;
        }
        if (end === start) coversOneChar = true;
      }
      if (!coversOneChar) {
        const score = base + this.unkScore;
        if (startsAt[start + 1] < 0 || score > bestScore[start + 1]) {
          bestScore[start + 1] = score;
          startsAt[start + 1] = start;
          idAt[start + 1] = this.unkId;
        }
      }
    }
    const path: { id: number; start: number; end: number }[] = [];
    for (let end = n; end > 0; end = startsAt[end]) path.push({ id: idAt[end], start: startsAt[end], end });
    path.reverse();

    const ids: number[] = [];
    let previousUnknown = false;
    for (const { id, start, end } of path) {
      if (id === this.unkId && this.byteFallback) {
        for (const b of new TextEncoder().encode(chars.slice(start, end).join(''))) {
          const byteId = this.byteIds.get(b);
          if (byteId === undefined)
            throw new TokenizerError(`Unigram: byte_fallback is set but the vocabulary lacks <0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
          ids.push(byteId);
        }
        previousUnknown = false;
        continue;
      }
      if (id === this.unkId && this.fuseUnk && previousUnknown) continue;
      ids.push(id);
      previousUnknown = id === this.unkId;
    }
    return ids;
  }
}
