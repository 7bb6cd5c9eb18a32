// Byte-pair encoding as the Rust tokenizers library runs it: a piece starts as its characters
// (the last one carrying end_of_word_suffix, later ones continuing_subword_prefix), then the
// pair of lowest merge rank is merged, leftmost first, until no pair has a rank.
import { TokenizerError } from '../errors.js';

export interface BpeOptions {
  vocab: ReadonlyMap<string, number>;
  /** Merge rules in rank order. */
  merges: readonly (readonly [string, string])[];
  unkToken?: string | null;
  endOfWordSuffix?: string;
  continuingSubwordPrefix?: string;
  fuseUnk?: boolean;
  byteFallback?: boolean;
  ignoreMerges?: boolean;
}

export class BpeModel {
  private readonly vocab: ReadonlyMap<string, number>;
  private readonly ranks = new Map<string, number>();
  private readonly unkId: number | null;
  private readonly suffix: string;
  private readonly prefix: string;
  private readonly fuseUnk: boolean;
  private readonly byteFallback: boolean;
  private readonly ignoreMerges: boolean;
  private readonly cache = new Map<string, number[]>();

  constructor(opts: BpeOptions) {
    this.vocab = opts.vocab;
    opts.merges.forEach(([a, b], rank) => {
      const key = `${a} ${b}`;
      if (!this.ranks.has(key)) this.ranks.set(key, rank);
    });
    this.suffix = opts.endOfWordSuffix ?? '';
    this.prefix = opts.continuingSubwordPrefix ?? '';
    this.fuseUnk = opts.fuseUnk ?? false;
    this.byteFallback = opts.byteFallback ?? false;
    this.ignoreMerges = opts.ignoreMerges ?? false;
    this.unkId = null;
    if (opts.unkToken) {
      const id = this.vocab.get(opts.unkToken);
      if (id === undefined) throw new TokenizerError(`BPE: the unknown token ${JSON.stringify(opts.unkToken)} is not in the vocabulary`);
      this.unkId = id;
    }
  }

  /** Token ids of one pre-tokenised piece. */
  tokenize(piece: string): number[] {
    const cached = this.cache.get(piece);
    if (cached) return cached;
    const ids = this.merge(piece);
    this.cache.set(piece, ids);
    return ids;
  }

  private merge(piece: string): number[] {
    if (this.ignoreMerges) {
      const whole = this.vocab.get(piece);
      if (whole !== undefined) return [whole];
    }
    const chars = Array.from(piece);
    const symbols: string[] = chars.map((c, i) => (i > 0 ? this.prefix : '') + c + (i === chars.length - 1 ? this.suffix : ''));
    for (;;) {
      let best = -1;
      let bestRank = Infinity;
      for (let i = 0; i + 1 < symbols.length; i++) {
        const rank = this.ranks.get(`${symbols[i]} ${symbols[i + 1]}`);
        if (rank !== undefined && rank < bestRank) {
          bestRank = rank;
          best = i;
        }
      }
      if (best < 0) break;
      const right = symbols[best + 1];
      symbols.splice(best, 2, symbols[best] + (this.prefix && right.startsWith(this.prefix) ? right.slice(this.prefix.length) : right));
    }
    const ids: number[] = [];
    let previousUnknown = false;
    for (const symbol of symbols) {
      const id = this.vocab.get(symbol);
      if (id !== undefined) {
        ids.push(id);
        previousUnknown = false;
        continue;
      }
      if (this.byteFallback) {
        const bytes = Array.from(new TextEncoder().encode(symbol), (b) => this.vocab.get(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`));
        if (bytes.every((b): b is number => b !== undefined)) {
          ids.push(...bytes);
          previousUnknown = false;
          continue;
        }
      }
      if (this.unkId === null) throw new TokenizerError(`BPE: ${JSON.stringify(symbol)} is not in the vocabulary and there is no unknown token`);
      if (!(this.fuseUnk && previousUnknown)) ids.push(this.unkId);
      previousUnknown = true;
    }
    return ids;
  }
}
