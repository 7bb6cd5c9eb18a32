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

  /** The key of a pair in `ranks`. */
  private rankOf(left: string, right: string): number | undefined {
    return this.ranks.get(`${left} ${right}`);
  }

  /**
   * The piece's symbols after merging: the pair of lowest rank, leftmost among equals, merges
   * first. A heap of (rank, position) with a linked list of symbols, as tokenizers' Word::merge_all
   * keeps it, makes a long run (thousands of characters without a space) take n log n, not n².
   */
  private mergedSymbols(chars: string[]): string[] {
    const n = chars.length;
    const symbols = chars.map((c, i) => (i > 0 ? this.prefix : '') + c + (i === n - 1 ? this.suffix : ''));
    const next = Int32Array.from({ length: n }, (_, i) => (i + 1 < n ? i + 1 : -1));
    const prev = Int32Array.from({ length: n }, (_, i) => i - 1);
    const heap = new PairHeap();
    for (let i = 0; i + 1 < n; i++) {
      const rank = this.rankOf(symbols[i], symbols[i + 1]);
      if (rank !== undefined) heap.push(rank, i, symbols[i + 1]);
    }
    for (let top = heap.pop(); top; top = heap.pop()) {
      const right = next[top.pos];
      // A stale entry: the pair at pos is no longer the one it was pushed for.
      if (right < 0 || symbols[top.pos] === '' || symbols[right] !== top.right || this.rankOf(symbols[top.pos], top.right) !== top.rank) continue;
      symbols[top.pos] += this.prefix && top.right.startsWith(this.prefix) ? top.right.slice(this.prefix.length) : top.right;
      symbols[right] = '';
      next[top.pos] = next[right];
      if (next[right] >= 0) prev[next[right]] = top.pos;
      const before = prev[top.pos];
      if (before >= 0) {
        const rank = this.rankOf(symbols[before], symbols[top.pos]);
        if (rank !== undefined) heap.push(rank, before, symbols[top.pos]);
      }
      const after = next[top.pos];
      if (after >= 0) {
        const rank = this.rankOf(symbols[top.pos], symbols[after]);
        if (rank !== undefined) heap.push(rank, top.pos, symbols[after]);
      }
    }
    return symbols.filter((sym) => sym !== '');
  }

  private merge(piece: string): number[] {
    if (this.ignoreMerges) {
      const whole = this.vocab.get(piece);
      if (whole !== undefined) return [whole];
    }
    const symbols = this.mergedSymbols(Array.from(piece));
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

/** A min-heap of merge candidates ordered by rank, then position. */
class PairHeap {
  private readonly items: { rank: number; pos: number; right: string }[] = [];

  push(rank: number, pos: number, right: string): void {
    const items = this.items;
    items.push({ rank, pos, right });
    for (let i = items.length - 1; i > 0; ) {
      const parent = (i - 1) >> 1;
      if (!this.less(i, parent)) break;
      [items[i], items[parent]] = [items[parent], items[i]];
      i = parent;
    }
  }

  pop(): { rank: number; pos: number; right: string } | undefined {
    const items = this.items;
    const top = items[0];
    const last = items.pop();
    if (items.length > 0 && last) {
      items[0] = last;
      for (let i = 0; ; ) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < items.length && this.less(l, m)) m = l;
        if (r < items.length && this.less(r, m)) m = r;
        if (m === i) break;
        [items[i], items[m]] = [items[m], items[i]];
        i = m;
      }
    }
    return top;
  }

  private less(a: number, b: number): boolean {
    const x = this.items[a];
    const y = this.items[b];
    return x.rank < y.rank || (x.rank === y.rank && x.pos < y.pos);
  }
}
