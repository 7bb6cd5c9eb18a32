// Added tokens (special tokens such as <|endoftext|>, </s>, <extra_id_0>) are found in the text
// before anything else runs and keep their ids; only the text between them is tokenised.
import { WHITESPACE_CLASS } from './unicode.js';

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

const WORD_CHAR = /^[\p{L}\p{N}_]$/u;

export class AddedTokenMatcher {
  private readonly pattern: RegExp | null;
  private readonly byContent = new Map<string, AddedToken>();

  constructor(tokens: readonly AddedToken[]) {
    for (const t of tokens) if (!this.byContent.has(t.content)) this.byContent.set(t.content, t);
    // Longest first, so that the leftmost match is also the longest there.
    const sorted = [...this.byContent.values()].sort((a, b) => b.content.length - a.content.length);
    const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    const ws = `[${WHITESPACE_CLASS}]*`;
    this.pattern = sorted.length
      ? new RegExp(sorted.map((t) => `${t.lstrip ? ws : ''}(${escapeRegExp(t.content)})${t.rstrip ? ws : ''}`).join('|'), 'gu')
      : null;
  }

  /** Cuts `text` into runs and added tokens. */
  split(text: string): Segment[] {
    if (!this.pattern || !text) return text ? [{ text }] : [];
    const out: Segment[] = [];
    let last = 0;
    for (const m of text.matchAll(this.pattern)) {
      const content = m.slice(1).find((g) => g !== undefined) as string;
      const token = this.byContent.get(content) as AddedToken;
      const at = m.index ?? 0;
      const end = at + m[0].length;
      if (token.singleWord && (WORD_CHAR.test(text[at - 1] ?? '') || WORD_CHAR.test(text[end] ?? ''))) continue;
      if (at > last) out.push({ text: text.slice(last, at) });
      out.push({ id: token.id });
      last = end;
    }
    if (last < text.length) out.push({ text: text.slice(last) });
    return out;
  }
}
