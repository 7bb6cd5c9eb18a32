// Reads what a tokenizer needs from a SentencePiece model file (spiece.model, a protobuf
// ModelProto): the pieces with their scores and types, and the normaliser's precompiled map.
import { TokenizerError } from '../errors.js';

/** SentencePiece.Type values of the proto that a tokenizer tells apart. */
export const PIECE_NORMAL = 1;
export const PIECE_UNKNOWN = 2;

export interface SentencePiece {
  piece: string;
  score: number;
  /** SentencePiece.Type: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte. */
  type: number;
}

export interface SentencePieceModel {
  pieces: SentencePiece[];
  /** NormalizerSpec.precompiled_charsmap; empty when the model normalises nothing. */
  precompiledCharsmap: Uint8Array;
}

// ModelProto field numbers: pieces = 1, normalizer_spec = 3; SentencePiece: piece = 1,
// score = 2, type = 3; NormalizerSpec: precompiled_charsmap = 2.
const MODEL_PIECES = 1;
const MODEL_NORMALIZER_SPEC = 3;
const PIECE_TEXT = 1;
const PIECE_SCORE = 2;
const PIECE_TYPE = 3;
const NORMALIZER_CHARSMAP = 2;

const WIRE_VARINT = 0;
const WIRE_FIXED64 = 1;
const WIRE_BYTES = 2;
const WIRE_FIXED32 = 5;

interface Field {
  number: number;
  wire: number;
  /** Varint value, or the byte range of a length-delimited / fixed field. */
  value: number;
  bytes: Uint8Array;
}

function* fields(buf: Uint8Array, where: string): Generator<Field> {
  let pos = 0;
  const varint = (): number => {
    let result = 0;
    let shift = 0;
    for (;;) {
      if (pos >= buf.length) throw new TokenizerError(`${where}: truncated protobuf varint`);
      const b = buf[pos++];
      result += (b & 0x7f) * 2 ** shift;
      if (!(b & 0x80)) return result;
      shift += 7;
      if (shift > 63) throw new TokenizerError(`${where}: malformed protobuf varint`);
    }
  };
  while (pos < buf.length) {
    const key = varint();
    const number = Math.floor(key / 8);
    const wire = key % 8;
    const take = (n: number): Uint8Array => {
      if (pos + n > buf.length) throw new TokenizerError(`${where}: protobuf field ${number} runs past the end (truncated file?)`);
      const out = buf.subarray(pos, pos + n);
      pos += n;
      return out;
    };
    switch (wire) {
      case WIRE_VARINT:
        yield { number, wire, value: varint(), bytes: new Uint8Array() };
        break;
      case WIRE_FIXED64:
        yield { number, wire, value: 0, bytes: take(8) };
        break;
      case WIRE_BYTES:
        yield { number, wire, value: 0, bytes: take(varint()) };
        break;
      case WIRE_FIXED32:
        yield { number, wire, value: 0, bytes: take(4) };
        break;
      default:
        throw new TokenizerError(`${where}: not a SentencePiece model (protobuf wire type ${wire} in field ${number})`);
    }
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Parses the bytes of an spiece.model; `where` names the file in errors. */
export function parseSentencePieceModel(buf: Uint8Array, where: string): SentencePieceModel {
  const pieces: SentencePiece[] = [];
  let precompiledCharsmap: Uint8Array = new Uint8Array();
  for (const f of fields(buf, where)) {
    if (f.number === MODEL_PIECES && f.wire === WIRE_BYTES) {
      const piece: SentencePiece = { piece: '', score: 0, type: PIECE_NORMAL };
      for (const g of fields(f.bytes, where)) {
        if (g.number === PIECE_TEXT && g.wire === WIRE_BYTES) piece.piece = utf8.decode(g.bytes);
        else if (g.number === PIECE_SCORE && g.wire === WIRE_FIXED32) piece.score = new DataView(g.bytes.buffer, g.bytes.byteOffset, 4).getFloat32(0, true);
        else if (g.number === PIECE_TYPE && g.wire === WIRE_VARINT) piece.type = g.value;
      }
      pieces.push(piece);
    } else if (f.number === MODEL_NORMALIZER_SPEC && f.wire === WIRE_BYTES) {
      for (const g of fields(f.bytes, where)) {
        if (g.number === NORMALIZER_CHARSMAP && g.wire === WIRE_BYTES) precompiledCharsmap = g.bytes;
      }
    }
  }
  if (pieces.length === 0) throw new TokenizerError(`${where}: not a SentencePiece model (no pieces)`);
  return { pieces, precompiledCharsmap };
}
