// tokenizer.json `decoder` section: tokens back to text, which diffusers needs to quote the part
// of a prompt that truncation dropped. ByteLevel (GPT-2, Llama 3, Qwen2, CLIP), Metaspace (T5's
// SentencePiece pieces) and BPEDecoder (an end-of-word suffix, CLIP's tokenizer.json) decode as
// the tokenizers library decodes; the others are refused when a decode is asked for, not when the
// tokenizer loads.
import { TokenizerError } from '../errors.js';
import { BYTE_TO_CHAR } from './byte-level.js';

export type Decoder = (tokens: readonly string[]) => string;

type Json = Record<string, unknown>;

const CHAR_TO_BYTE = new Map(BYTE_TO_CHAR.map((c, b) => [c, b]));
const encoder = new TextEncoder();
// Invalid UTF-8 becomes U+FFFD per maximal subpart, as Rust's String::from_utf8_lossy does.
const lossyUtf8 = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });

/** The bytes a token stands for: its byte-level characters mapped back, or, as tokenizers does, its own UTF-8 when a character is outside the byte alphabet (an added token such as "<|图|>"). */
function tokenBytes(token: string): number[] {
  const bytes: number[] = [];
  for (const c of token) {
    const b = CHAR_TO_BYTE.get(c);
    if (b === undefined) return Array.from(encoder.encode(token));
    bytes.push(b);
  }
  return bytes;
}

/**
 * Metaspace: the replacement character becomes a space, except in the first token, where
 * tokenizers drops every replacement character (not only the leading one) unless prepend_scheme
 * is "never". Older files give add_prefix_space: true alone ("always"); tokenizers refuses false
 * with any prepend_scheme but "never", and so does this.
 */
function metaspace(s: Json, where: string): Decoder {
  const { replacement } = s;
  if (typeof replacement !== 'string' || [...replacement].length !== 1) {
    throw new TokenizerError(`${where}: Metaspace replacement ${JSON.stringify(replacement ?? null)} is not one character`);
  }
  const scheme = s.prepend_scheme ?? 'always';
  if (scheme !== 'always' && scheme !== 'first' && scheme !== 'never') {
    throw new TokenizerError(`${where}: Metaspace prepend_scheme ${JSON.stringify(scheme)} is not one of "always", "first", "never"`);
  }
  if (s.add_prefix_space === false && scheme !== 'never') {
    throw new TokenizerError(`${where}: Metaspace add_prefix_space false contradicts prepend_scheme "${scheme}" (false needs "never")`);
  }
  return (tokens) => tokens.map((token, i) => token.replaceAll(replacement, i === 0 && scheme !== 'never' ? '' : ' ')).join('');
}

/** BPEDecoder: the end-of-word suffix becomes a space, in the last token nothing. */
function bpeDecoder(s: Json, where: string): Decoder {
  const suffix = s.suffix ?? '</w>';
  if (typeof suffix !== 'string') throw new TokenizerError(`${where}: BPEDecoder suffix ${JSON.stringify(suffix)} is not a string`);
  return (tokens) => tokens.map((token, i) => token.replaceAll(suffix, i === tokens.length - 1 ? '' : ' ')).join('');
}

/** The decoder a tokenizer.json describes; throws a TokenizerError naming it when it is not supported. */
export function buildDecoder(spec: unknown, where: string): Decoder {
  const s = (spec ?? {}) as Json;
  if (s.type === 'ByteLevel') return (tokens) => lossyUtf8.decode(Uint8Array.from(tokens.flatMap(tokenBytes)));
  if (s.type === 'Metaspace') return metaspace(s, where);
  if (s.type === 'BPEDecoder') return bpeDecoder(s, where);
  throw new TokenizerError(
    `${where}: decoder type ${JSON.stringify(s.type ?? null)} is not supported for decoding (supported: ByteLevel, Metaspace, BPEDecoder)`,
  );
}
