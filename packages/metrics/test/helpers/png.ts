import { deflateSync } from 'node:zlib';

/**
 * A minimal PNG writer for tests: 8-bit RGB, no filtering, optional extra chunks. It lets a
 * test know the exact stored samples of a file without trusting the decoder under test.
 */
const CRC_TABLE = Int32Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c;
});

function crc32(bytes: Uint8Array): number {
  let c = -1;
  for (const byte of bytes) c = CRC_TABLE[(c ^ byte) & 0xff] ^ (c >>> 8);
  return (c ^ -1) >>> 0;
}

export interface PngChunk {
  type: string;
  data: Uint8Array;
}

function encodeChunk({ type, data }: PngChunk): Buffer {
  const typeAndData = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  typeAndData.copy(out, 4);
  out.writeUInt32BE(crc32(typeAndData), 8 + data.length);
  return out;
}

/** Splits a PNG into its chunks (to lift e.g. the iCCP chunk sharp wrote). */
export function readChunks(png: Uint8Array): PngChunk[] {
  const buffer = Buffer.from(png);
  const chunks: PngChunk[] = [];
  for (let offset = 8; offset < buffer.length; ) {
    const length = buffer.readUInt32BE(offset);
    const type = buffer.toString('latin1', offset + 4, offset + 8);
    chunks.push({ type, data: buffer.subarray(offset + 8, offset + 8 + length) });
    offset += 12 + length;
  }
  return chunks;
}

export function writeRgbPng(pixels: Uint8Array, width: number, height: number, extra: PngChunk[] = []): Buffer {
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header[8] = 8; // bit depth
  header[9] = 2; // colour type RGB
  const raw = Buffer.alloc(height * (1 + width * 3));
  for (let y = 0; y < height; y++) {
    raw[y * (1 + width * 3)] = 0; // filter: none
    Buffer.from(pixels.buffer, pixels.byteOffset + y * width * 3, width * 3).copy(raw, y * (1 + width * 3) + 1);
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    encodeChunk({ type: 'IHDR', data: header }),
    ...extra.map(encodeChunk),
    encodeChunk({ type: 'IDAT', data: deflateSync(raw) }),
    encodeChunk({ type: 'IEND', data: new Uint8Array(0) }),
  ]);
}
