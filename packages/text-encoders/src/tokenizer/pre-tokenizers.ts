// tokenizer.json `pre_tokenizer` section: how normalised text is cut into the pieces that the
// model (BPE, Unigram) tokenises one at a time.
import { TokenizerError } from '../errors.js';
import { BYTE_TO_CHAR } from './byte-level.js';
import { patternOf } from './normalizers.js';
import { isWhitespace, oniguruma } from './unicode.js';

/** Pieces in, pieces out. */
export type PreTokenizer = (pieces: string[]) => string[];

type Json = Record<string, unknown>;

const SPLIT_BEHAVIORS = ['Removed', 'Isolated', 'MergedWithPrevious', 'MergedWithNext', 'Contiguous'] as const;
type SplitBehavior = (typeof SPLIT_BEHAVIORS)[number];

// GPT-2's pre-tokenisation, which the ByteLevel pre-tokenizer applies when use_regex is set.
const GPT2_PATTERN = oniguruma(`'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+`);

const encoder = new TextEncoder();

/** Splits `text` around the matches of `pattern`; `invert` makes the matches the content and the rest the delimiters. */
export function splitText(text: string, pattern: RegExp, behavior: SplitBehavior, invert = false): string[] {
  const segments: { text: string; delimiter: boolean }[] = [];
  let last = 0;
  for (const m of text.matchAll(pattern)) {
    if (m[0].length === 0) continue;
    const at = m.index ?? 0;
    if (at > last) segments.push({ text: text.slice(last, at), delimiter: invert });
    segments.push({ text: m[0], delimiter: !invert });
    last = at + m[0].length;
  }
  if (last < text.length) segments.push({ text: text.slice(last), delimiter: invert });

  const out: string[] = [];
  switch (behavior) {
    case 'Removed':
      for (const s of segments) if (!s.delimiter) out.push(s.text);
      break;
    case 'Isolated':
      for (const s of segments) out.push(s.text);
      break;
    case 'MergedWithPrevious': {
      let previousWasContent = false;
      for (const s of segments) {
        if (s.delimiter && previousWasContent) out[out.length - 1] += s.text;
        else out.push(s.text);
        previousWasContent = !s.delimiter;
      }
      break;
    }
    case 'MergedWithNext': {
      let pending = '';
      for (const s of segments) {
        if (s.delimiter) {
          if (pending) out.push(pending);
          pending = s.text;
        } else {
          out.push(pending + s.text);
          pending = '';
        }
      }
      if (pending) out.push(pending);
      break;
    }
    case 'Contiguous': {
      let previousDelimiter: boolean | null = null;
      for (const s of segments) {
        if (s.delimiter && previousDelimiter === true) out[out.length - 1] += s.text;
        else out.push(s.text);
        previousDelimiter = s.delimiter;
      }
      break;
    }
    default:
      throw new TokenizerError(`split behavior ${JSON.stringify(behavior)} is not supported`);
  }
  return out;
}

/** Maps each UTF-8 byte of a piece to its printable stand-in (GPT-2's byte-level alphabet). */
export function byteLevelChars(piece: string): string {
  let out = '';
  for (const b of encoder.encode(piece)) out += BYTE_TO_CHAR[b];
  return out;
}

/** The pre-tokenizer a tokenizer.json describes (null: the whole text is one piece). */
export function buildPreTokenizer(spec: unknown, where: string): PreTokenizer | null {
  if (spec === null || spec === undefined) return null;
  const s = spec as Json;
  switch (s.type) {
    case 'Sequence': {
      const parts = (s.pretokenizers as unknown[])
        .map((p, i) => buildPreTokenizer(p, `${where}.pretokenizers[${i}]`))
        .filter((p): p is PreTokenizer => p !== null);
      return (pieces) => parts.reduce((ps, p) => p(ps), pieces);
    }
    case 'Split': {
      const pattern = patternOf(s.pattern, `${where} (Split)`);
      const behavior = s.behavior as SplitBehavior;
      if (!SPLIT_BEHAVIORS.includes(behavior)) {
        throw new TokenizerError(`${where}: Split behavior ${JSON.stringify(s.behavior)} is not supported (supported: ${SPLIT_BEHAVIORS.join(', ')})`);
      }
      const invert = s.invert === true;
      return (pieces) => pieces.flatMap((p) => splitText(p, pattern, behavior, invert));
    }
    case 'WhitespaceSplit':
      return (pieces) => pieces.flatMap((p) => splitOnWhitespace(p));
    case 'Whitespace': {
      const words = oniguruma('\\w+|[^\\w\\s]+');
      return (pieces) => pieces.flatMap((p) => [...p.matchAll(words)].map((m) => m[0]));
    }
    case 'ByteLevel': {
      const addPrefixSpace = s.add_prefix_space === true;
      const useRegex = s.use_regex !== false;
      return (pieces) =>
        pieces
          .map((p) => (addPrefixSpace && !p.startsWith(' ') ? ` ${p}` : p))
          .flatMap((p) => (useRegex ? splitText(p, GPT2_PATTERN, 'Isolated') : [p]))
          .map(byteLevelChars);
    }
    case 'Metaspace': {
      const replacement = typeof s.replacement === 'string' ? s.replacement : '\u2581';
      // Older files say add_prefix_space (true = always) instead of prepend_scheme.
      const scheme = typeof s.prepend_scheme === 'string' ? s.prepend_scheme : s.add_prefix_space === false ? 'never' : 'always';
      if (scheme !== 'always' && scheme !== 'first' && scheme !== 'never') {
        throw new TokenizerError(`${where}: Metaspace prepend_scheme ${JSON.stringify(scheme)} is not supported`);
      }
      const split = s.split !== false;
      const escaped = new RegExp(replacement.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'), 'gu');
      return (pieces) =>
        pieces.flatMap((p, index) => {
          let t = p.replaceAll(' ', replacement);
          const prepend = scheme === 'always' || (scheme === 'first' && index === 0);
          if (prepend && !t.startsWith(replacement)) t = replacement + t;
          return split ? splitText(t, escaped, 'MergedWithNext') : [t];
        });
    }
    default:
      throw new TokenizerError(
        `${where}: pre-tokenizer type ${JSON.stringify(s.type)} is not supported (supported: Sequence, Split, WhitespaceSplit, Whitespace, ByteLevel, Metaspace)`,
      );
  }
}

function splitOnWhitespace(text: string): string[] {
  const out: string[] = [];
  let current = '';
  for (const c of text) {
    if (isWhitespace(c)) {
      if (current) out.push(current);
      current = '';
    } else current += c;
  }
  if (current) out.push(current);
  return out;
}
