// The PNG text chunks the CLI writes so that an image says how it was made: valid chunks, read back exactly, the picture untouched.
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';

import { addPngText, readPngText } from '../src/png-text.js';

const pixels = Buffer.from(Array.from({ length: 4 * 3 * 3 }, (_, i) => (i * 37) % 256));
const png = () =>
  sharp(pixels, { raw: { width: 4, height: 3, channels: 3 } })
    .png()
    .toBuffer();

describe('PNG text chunks', () => {
  it('round-trip ASCII (tEXt) and other text (iTXt), in order, before the image data', async () => {
    const entries = {
      Software: 'ditcache 0.1.0',
      seed: '42',
      prompt: 'un cœur rouge, 赤い丸 ✓',
      cache: 'cache_config:\n  Fn_compute_blocks: 1\n',
      'a key': 'é',
    };
    const out = addPngText(await png(), entries);
    expect(readPngText(out)).toEqual(entries);
    expect(Object.keys(readPngText(out))).toEqual(Object.keys(entries));
    const types: string[] = [];
    for (let at = 8; at < out.length; at += 12 + out.readUInt32BE(at)) types.push(out.toString('latin1', at + 4, at + 8));
    expect(types.filter((t) => t === 'tEXt')).toHaveLength(3);
    expect(types.filter((t) => t === 'iTXt')).toHaveLength(2);
    expect(types.indexOf('iTXt')).toBeLessThan(types.indexOf('IDAT'));
    // The picture is the same, and other decoders accept the file.
    const { data, info } = await sharp(out).raw().toBuffer({ resolveWithObject: true });
    expect([info.width, info.height, info.channels]).toEqual([4, 3, 3]);
    expect(data.equals(pixels)).toBe(true);
    // libvips reads the same text.
    const { comments } = await sharp(out).metadata();
    expect(Object.fromEntries((comments ?? []).map((c) => [c.keyword, c.text]))).toEqual(entries);
  });

  it('writes standard CRCs: the file ends in IEND with its well-known CRC, and a flipped byte is caught', async () => {
    const out = addPngText(await png(), { seed: '1' });
    expect(out.subarray(-8).toString('hex')).toBe('49454e44ae426082');
    const textAt = out.indexOf('tEXtseed', 0, 'latin1');
    const broken = Buffer.from(out);
    broken[textAt + 8] ^= 1;
    expect(() => readPngText(broken)).toThrow(/bad CRC in a tEXt chunk/);
  });

  it('refuses invalid keywords and files that are not PNG', async () => {
    const base = await png();
    for (const keyword of ['', ' seed', 'seed ', 'two  spaces', 'x'.repeat(80), 'new\nline']) {
      expect(() => addPngText(base, { [keyword]: 'v' }), JSON.stringify(keyword)).toThrow(/invalid keyword/);
    }
    expect(() => addPngText(Buffer.from('GIF89a'), { a: 'b' })).toThrow(/not a PNG file/);
  });
});
