// The warning diffusers logs when a prompt is longer than max_sequence_length (HiDream's Llama 3
// and T5, SD3's T5): the text of the dropped tokens, decoded and quoted as a Python list, word
// for word, so that logs read the same as diffusers'.
import type { Tokenizer } from './tokenizer/tokenizer.js';

// What Python's str.isprintable() rejects (besides the ASCII controls): other, separators but the space.
const NOT_PRINTABLE = /[\p{Cc}\p{Cf}\p{Cs}\p{Co}\p{Cn}\p{Zl}\p{Zp}\p{Zs}]/u;
const SHORT_ESCAPES: Record<string, string> = { '\\': '\\\\', '\n': '\\n', '\r': '\\r', '\t': '\\t' };

/** Python's repr() of a str. */
export function pythonRepr(text: string): string {
  const quote = text.includes("'") && !text.includes('"') ? '"' : "'";
  let out = quote;
  for (const c of text) {
    const cp = c.codePointAt(0) as number;
    if (c === quote) out += `\\${c}`;
    else if (SHORT_ESCAPES[c]) out += SHORT_ESCAPES[c];
    else if (c !== ' ' && (cp < 0x20 || cp === 0x7f || NOT_PRINTABLE.test(c))) {
      const hex = cp.toString(16);
      out += cp <= 0xff ? `\\x${hex.padStart(2, '0')}` : cp <= 0xffff ? `\\u${hex.padStart(4, '0')}` : `\\U${hex.padStart(8, '0')}`;
    } else out += c;
  }
  return out + quote;
}

/**
 * diffusers' warning for `prompts` tokenized with `maxLength` (`min(max_sequence_length,
 * model_max_length)`), or null when nothing was cut. As diffusers, it quotes the tokens from
 * index maxLength - 1 up to the last one exclusive of the prompts padded to the longest.
 */
export function maxSequenceLengthWarning(tokenizer: Tokenizer, prompts: readonly string[], maxLength: number): string | null {
  const untruncated = tokenizer.encodeBatch(prompts, { padding: 'longest' }).ids;
  if ((untruncated[0]?.length ?? 0) <= maxLength) return null;
  const removed = untruncated.map((ids) => tokenizer.decode(ids.slice(maxLength - 1, -1)));
  // diffusers writes "set to " + " {n}": two spaces.
  return `The following part of your input was truncated because \`max_sequence_length\` is set to  ${maxLength} tokens: [${removed.map(pythonRepr).join(', ')}]`;
}
