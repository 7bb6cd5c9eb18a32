// tokenizer.json `decoder` section: tokens back to text, which diffusers needs to quote the part
// of a prompt that truncation dropped. Only byte-level BPE's decoder (GPT-2, Llama 3, Qwen2) is
// implemented; the others are refused when a decode is asked for, not when the tokenizer loads.
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

/** The decoder a tokenizer.json describes; throws a TokenizerError naming it when it is not supported. */
export function buildDecoder(spec: unknown, where: string): Decoder {
  const s = (spec ?? {}) as Json;
  if (s.type === 'ByteLevel') return (tokens) => lossyUtf8.decode(Uint8Array.from(tokens.flatMap(tokenBytes)));
  throw new TokenizerError(`${where}: decoder type ${JSON.stringify(s.type ?? null)} is not supported for decoding (supported: ByteLevel)`);
}
