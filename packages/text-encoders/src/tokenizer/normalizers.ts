// tokenizer.json `normalizer` section: the text clean-up that runs before pre-tokenisation.
import { TokenizerError } from '../errors.js';
import { PrecompiledCharsmap } from './precompiled-charsmap.js';
import { oniguruma, WHITESPACE_CLASS } from './unicode.js';

export type Normalizer = (text: string) => string;

type Json = Record<string, unknown>;

const LEADING_WHITESPACE = new RegExp(`^[${WHITESPACE_CLASS}]+`, 'u');
const TRAILING_WHITESPACE = new RegExp(`[${WHITESPACE_CLASS}]+$`, 'u');

/** A `{ String: "..." }` or `{ Regex: "..." }` pattern of a Replace normalizer or Split pre-tokenizer. */
export function patternOf(pattern: unknown, where: string): RegExp {
  const p = pattern as { String?: unknown; Regex?: unknown } | null;
  if (p && typeof p.String === 'string') return new RegExp(p.String.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'), 'gu');
  if (p && typeof p.Regex === 'string') {
    try {
      return oniguruma(p.Regex);
    } catch (e) {
      throw new TokenizerError(`${where}: ${(e as Error).message}`);
    }
  }
  throw new TokenizerError(`${where}: pattern ${JSON.stringify(pattern)} is neither {String} nor {Regex}`);
}

/** The normalizer a tokenizer.json describes (null: the text is used as it is). */
export function buildNormalizer(spec: unknown, where: string): Normalizer | null {
  if (spec === null || spec === undefined) return null;
  const s = spec as Json;
  switch (s.type) {
    case 'Sequence': {
      const parts = (s.normalizers as unknown[]).map((n, i) => buildNormalizer(n, `${where}.normalizers[${i}]`)).filter((n): n is Normalizer => n !== null);
      return (text) => parts.reduce((t, n) => n(t), text);
    }
    case 'NFC':
    case 'NFD':
    case 'NFKC':
    case 'NFKD': {
      const form = s.type;
      return (text) => text.normalize(form);
    }
    // Per code point, as the Rust library maps chars (so no final-sigma rule).
    case 'Lowercase':
      return (text) => Array.from(text, (c) => c.toLowerCase()).join('');
    case 'Replace': {
      const pattern = patternOf(s.pattern, `${where} (Replace)`);
      const content = String(s.content);
      return (text) => text.replace(pattern, () => content);
    }
    case 'Strip': {
      const left = s.strip_left !== false;
      const right = s.strip_right !== false;
      return (text) => {
        let t = text;
        if (left) t = t.replace(LEADING_WHITESPACE, '');
        if (right) t = t.replace(TRAILING_WHITESPACE, '');
        return t;
      };
    }
    case 'Prepend': {
      const prefix = String(s.prepend);
      return (text) => (text.length ? prefix + text : text);
    }
    case 'Precompiled': {
      if (typeof s.precompiled_charsmap !== 'string' || s.precompiled_charsmap === '') return null;
      const charsmap = PrecompiledCharsmap.fromBase64(s.precompiled_charsmap);
      return (text) => charsmap.normalize(text);
    }
    default:
      throw new TokenizerError(
        `${where}: normalizer type ${JSON.stringify(s.type)} is not supported (supported: Sequence, NFC, NFD, NFKC, NFKD, Lowercase, Replace, Strip, Prepend, Precompiled)`,
      );
  }
}
