// Why: an image should say how it was made (seed, steps, size, cache config) so that it can be reproduced; sharp writes no
// PNG text chunks, so they are inserted into the encoded file here: tEXt for ASCII text, iTXt (UTF-8) otherwise.
import { crc32 } from 'node:zlib';

const SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/** One chunk: length, type, data, and the CRC-32 of type and data. */
function chunk(type: string, data: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, 'latin1');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(data, crc32(head.subarray(4, 8))), 0);
  return Buffer.concat([head, data, crc]);
}

/** PNG's rule for keywords: 1-79 printable Latin-1 characters, no leading, trailing or repeated spaces. */
function checkKeyword(keyword: string): void {
  const printable = [...keyword].every((c) => (c >= ' ' && c <= '~') || (c >= '\u00a1' && c <= '\u00ff'));
  if (keyword.length < 1 || keyword.length > 79 || !printable || /^ | $| {2}/.test(keyword))
    throw new TypeError(`PNG text: invalid keyword ${JSON.stringify(keyword)}`);
}

/**
 * tEXt when the text is ASCII (without NUL), else uncompressed iTXt with UTF-8 text: tEXt is
 * Latin-1 by the standard, but readers such as libvips take its bytes for UTF-8.
 */
function textChunk(keyword: string, text: string): Buffer {
  checkKeyword(keyword);
  const key = Buffer.from(keyword, 'latin1');
  if (/^[\u0001-\u007f]*$/.test(text)) return chunk('tEXt', Buffer.concat([key, Buffer.from([0]), Buffer.from(text, 'latin1')]));
  // keyword NUL, compression flag 0, method 0, empty language tag NUL, empty translated keyword NUL, text.
  return chunk('iTXt', Buffer.concat([key, Buffer.from([0, 0, 0, 0, 0]), Buffer.from(text, 'utf-8')]));
}

interface RawChunk {
  type: string;
  start: number;
  data: Buffer;
}

function chunks(png: Buffer): RawChunk[] {
  if (png.length < 8 || !png.subarray(0, 8).equals(SIGNATURE)) throw new TypeError('PNG text: not a PNG file');
  const out: RawChunk[] = [];
  for (let at = 8; at < png.length; ) {
    if (at + 12 > png.length) throw new TypeError('PNG text: truncated chunk');
    const length = png.readUInt32BE(at);
    const type = png.toString('latin1', at + 4, at + 8);
    if (at + 12 + length > png.length) throw new TypeError(`PNG text: truncated ${type} chunk`);
    const data = png.subarray(at + 8, at + 8 + length);
    if (png.readUInt32BE(at + 8 + length) !== crc32(data, crc32(png.subarray(at + 4, at + 8)))) throw new TypeError(`PNG text: bad CRC in a ${type} chunk`);
    out.push({ type, start: at, data });
    at += 12 + length;
    if (type === 'IEND') break;
  }
  return out;
}

/** `png` with a text chunk per entry of `entries`, in order, before its image data. */
export function addPngText(png: Buffer, entries: Readonly<Record<string, string>>): Buffer {
  const all = chunks(png);
  const idat = all.find((c) => c.type === 'IDAT');
  if (!idat) throw new TypeError('PNG text: no IDAT chunk');
  const text = Object.entries(entries).map(([k, v]) => textChunk(k, v));
  return Buffer.concat([png.subarray(0, idat.start), ...text, png.subarray(idat.start)]);
}

/** The tEXt and (uncompressed) iTXt entries of a PNG, by keyword. */
export function readPngText(png: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  for (const { type, data } of chunks(png)) {
    const nul = data.indexOf(0);
    if (nul < 0) continue;
    const keyword = data.toString('latin1', 0, nul);
    if (type === 'tEXt') out[keyword] = data.toString('latin1', nul + 1);
    if (type === 'iTXt' && data[nul + 1] === 0) {
      const language = data.indexOf(0, nul + 3);
      const translated = data.indexOf(0, language + 1);
      out[keyword] = data.toString('utf-8', translated + 1);
    }
  }
  return out;
}
