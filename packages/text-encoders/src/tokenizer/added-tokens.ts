// Added tokens (special tokens such as <|endoftext|>, </s>, <extra_id_0>) are found in the text
// before anything else runs and keep their ids; only the text between them is tokenised.
import { isWhitespace } from './unicode.js';

export interface AddedToken {
  id: number;
  content: string;
  /** Matched in the normalised text (true) or in the raw text (false). */
  normalized: boolean;
  /** Takes the whitespace on its left / right with it. */
  lstrip: boolean;
  rstrip: boolean;
  /** Matches only as a whole word. */
  singleWord: boolean;
}

/** A run of text, or an added token found in it. */
export type Segment = { text: string } | { id: number };

// What tokenizers' single_word check takes for a word character: the Unicode \w of Rust's regex
// crate (letters, marks, decimal digits, connector punctuation, ZWJ / ZWNJ), not \p{N} at large.
const WORD_CHAR = /[\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control}]/u;

/** The character of `text` that ends at `at` ('' at the start). */
function charBefore(text: string, at: number): string {
  if (at <= 0) return '';
  const low = text.charCodeAt(at - 1);
  const pair = at >= 2 && low >= 0xdc00 && low <= 0xdfff;
  return text.slice(pair ? at - 2 : at - 1, at);
}

/** The character of `text` that starts at `at` ('' at the end). */
const charAt = (text: string, at: number): string => (at < text.length ? String.fromCodePoint(text.codePointAt(at) as number) : '');

/**
 * Finds added tokens in text as tokenizers' AddedVocabulary does: the leftmost, then longest,
 * token contents (Aho-Corasick, leftmost-longest); a single_word token found next to a word
 * character is passed over; then lstrip / rstrip widen a match over the whitespace beside it,
 * never back into the previous match.
 */
export class AddedTokenMatcher {
  private readonly pattern: RegExp | null;
  private readonly byContent = new Map<string, AddedToken>();

  /** `contents` maps a token to the text it is found as (normalized tokens: their normalised content). */
  constructor(tokens: readonly AddedToken[], contentOf: (t: AddedToken) => string = (t) => t.content) {
    for (const t of tokens) {
      const content = contentOf(t);
      if (content && !this.byContent.has(content)) this.byContent.set(content, t);
    }
    // Longest first, so that the leftmost match is also the longest there.
    const sorted = [...this.byContent.keys()].sort((a, b) => b.length - a.length);
    const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    this.pattern = sorted.length ? new RegExp(sorted.map(escapeRegExp).join('|'), 'gu') : null;
  }

  /** Cuts `text` into runs and added tokens. */
  split(text: string): Segment[] {
    if (!this.pattern || !text) return text ? [{ text }] : [];
    const out: Segment[] = [];
    let last = 0;
    for (const m of text.matchAll(this.pattern)) {
      const token = this.byContent.get(m[0]) as AddedToken;
      let start = m.index ?? 0;
      let end = start + m[0].length;
      if (token.singleWord && (WORD_CHAR.test(charBefore(text, start)) || WORD_CHAR.test(charAt(text, end)))) continue;
      if (token.lstrip) for (let c = charBefore(text, start); start > last && isWhitespace(c); c = charBefore(text, start)) start -= c.length;
      if (token.rstrip) for (let c = charAt(text, end); isWhitespace(c); c = charAt(text, end)) end += c.length;
      if (start > last) out.push({ text: text.slice(last, start) });
      out.push({ id: token.id });
      last = end;
    }
    if (last < text.length) out.push({ text: text.slice(last) });
    return out;
  }
}
