// The warnings diffusers logs when a prompt is longer than a text encoder takes (HiDream's Llama 3,
// T5 and CLIPs; FLUX's T5 and CLIP; HunyuanVideo's CLIP; SD3's): the text of the dropped tokens,
// decoded and quoted as a Python list, word for word, so that logs read the same as diffusers'.
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
 * The texts diffusers quotes, `batch_decode(untruncated_ids[:, quoteFrom : -1])` of the prompts
 * padded to the longest, when truncation to `maxLength` cut some prompt; else null (diffusers
 * warns when untruncated_ids is at least as wide as the truncated ids and differs from them).
 */
function removedTexts(tokenizer: Tokenizer, prompts: readonly string[], maxLength: number, quoteFrom: number): string[] | null {
  const untruncated = tokenizer.encodeBatch(prompts, { padding: 'longest' }).ids;
  if ((untruncated[0]?.length ?? 0) <= maxLength) return null;
  return untruncated.map((ids) => tokenizer.decode(ids.slice(quoteFrom, -1)));
}

const pythonList = (texts: readonly string[]) => `[${texts.map(pythonRepr).join(', ')}]`;

/**
 * diffusers' warning for `prompts` tokenized with `maxLength` (HiDream, SD3:
 * `min(max_sequence_length, model_max_length)`; FLUX: max_sequence_length), or null when nothing
 * was cut. It quotes the tokens from `quoteFrom` (maxLength - 1 but in FLUX, whose T5 warning
 * quotes from its CLIP's tokenizer_max_length - 1) up to the last one exclusive.
 */
export function maxSequenceLengthWarning(
  tokenizer: Tokenizer,
  prompts: readonly string[],
  maxLength: number,
  quoteFrom: number = maxLength - 1,
): string | null {
  const removed = removedTexts(tokenizer, prompts, maxLength, quoteFrom);
  // diffusers writes "set to " + " {n}": two spaces.
  return removed && `The following part of your input was truncated because \`max_sequence_length\` is set to  ${maxLength} tokens: ${pythonList(removed)}`;
}

/**
 * diffusers' warning for a CLIP tokenizer's `prompts` truncated to `maxLength`, or null when
 * nothing was cut. It names `limit` and quotes the tokens from limit - 1 up to the last one
 * exclusive: FLUX and HunyuanVideo truncate at their limit (77), HiDream at
 * min(max_sequence_length, 218) while naming and quoting from 218 (nothing quoted when the
 * prompt is shorter than that).
 */
export function clipLengthWarning(tokenizer: Tokenizer, prompts: readonly string[], maxLength: number, limit: number = maxLength): string | null {
  const removed = removedTexts(tokenizer, prompts, maxLength, limit - 1);
  return removed && `The following part of your input was truncated because CLIP can only handle sequences up to ${limit} tokens: ${pythonList(removed)}`;
}
