// SentencePiece's precompiled normalisation map (the `precompiled_charsmap` of an spiece.model
// or of a tokenizer.json `Precompiled` normalizer): a Darts double-array trie over UTF-8 bytes
// whose leaves index NUL-terminated replacement strings. Applied per grapheme cluster, as the
// Rust tokenizers library applies it (which is what T5TokenizerFast runs).
import { TokenizerError } from '../errors.js';

const graphemes = new Intl.Segmenter(undefined, { granularity: 'grapheme' });
const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

export class PrecompiledCharsmap {
  private readonly units: Uint32Array;
  private readonly replacements: Uint8Array;
  private readonly cache = new Map<string, string | null>();

  constructor(bytes: Uint8Array) {
    if (bytes.length < 4) throw new TokenizerError(`precompiled_charsmap: ${bytes.length} bytes, too short for its header`);
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const trieBytes = view.getUint32(0, true);
    if (trieBytes % 4 !== 0 || 4 + trieBytes > bytes.length || trieBytes === 0) {
      throw new TokenizerError(`precompiled_charsmap: its trie of ${trieBytes} bytes does not fit the ${bytes.length}-byte map`);
    }
    this.units = new Uint32Array(trieBytes / 4);
    for (let i = 0; i < this.units.length; i++) this.units[i] = view.getUint32(4 + 4 * i, true);
    this.replacements = bytes.subarray(4 + trieBytes);
  }

  static fromBase64(text: string): PrecompiledCharsmap {
    return new PrecompiledCharsmap(Buffer.from(text, 'base64'));
  }

  /** The normalised text. */
  normalize(text: string): string {
    let out = '';
    for (const { segment } of graphemes.segment(text)) {
      // Short clusters are looked up whole first (the map has entries for some sequences).
      if (encoder.encode(segment).length < 6) {
        const whole = this.lookup(segment);
        if (whole !== null) {
          out += whole;
          continue;
        }
      }
      for (const char of segment) out += this.lookup(char) ?? char;
    }
    return out;
  }

  /**
   * The replacement of the shortest prefix of `chunk` that has one (the first result of the
   * trie's common-prefix search, as the reference takes it), or null.
   */
  private lookup(chunk: string): string | null {
    const cached = this.cache.get(chunk);
    if (cached !== undefined) return cached;
    const offset = this.firstPrefixValue(encoder.encode(chunk));
    let result: string | null = null;
    if (offset !== null) {
      let end = offset;
      while (end < this.replacements.length && this.replacements[end] !== 0) end++;
      result = decoder.decode(this.replacements.subarray(offset, end));
    }
    this.cache.set(chunk, result);
    return result;
  }

  // Darts-clone unit layout: bit 8 says a leaf hangs below, the low byte (with bit 31) is the
  // label, bits 10.. the offset (shifted by 8 when bit 9 is set); a leaf's low 31 bits are its value.
  private firstPrefixValue(key: Uint8Array): number | null {
    const u = this.units;
    const offset = (unit: number): number => (unit >>> 10) << ((unit & (1 << 9)) >>> 6);
    let node = offset(u[0]);
    for (const byte of key) {
      if (byte === 0) break;
      node ^= byte;
      const unit = u[node];
      if (unit === undefined || (unit & ((1 << 31) | 0xff)) >>> 0 !== byte) return null;
      node ^= offset(unit);
      if ((unit >>> 8) & 1) return u[node] & 0x7fffffff;
    }
    return null;
  }
}
