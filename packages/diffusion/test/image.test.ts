import { describe, expect, it } from 'vitest';

import { loadSafetensors, memoryStats, tensor } from '@ditcache/cuda-runtime';
import sharp from 'sharp';

import { encodePng, toImage8, toImageRange } from '../src/index.js';
import { goldens } from './helpers.js';

describe('image output', () => {
  it('maps decoder output [-1, 1] to [0, 1], clamped, channels last', () => {
    using decoded = tensor([-2, -1, 0, 0.5, 1, 3], [1, 3, 1, 2]);
    const before = memoryStats();
    using image = toImageRange(decoded);
    expect([...image.shape]).toEqual([1, 1, 2, 3]);
    expect([...image.toFloat32Array()]).toEqual([0, 0.5, 1, 0, 0.75, 1]);
    expect(memoryStats().liveTensors).toBe(before.liveTensors + 1);
  });

  it('rounds to 8 bits as numpy_to_pil does, ties to even', () => {
    using image = tensor([0, 0.5 / 255, 1.5 / 255, 2.5 / 255, 0.4, 1], [1, 1, 2, 3]);
    const picture = toImage8(image);
    expect(picture).toMatchObject({ width: 2, height: 1, channels: 3 });
    expect([...picture.data]).toEqual([0, 0, 2, 2, 102, 255]);
    expect(() => toImage8(image, 1)).toThrow(/image 1 of a batch of 1/);
  });

  it('writes PNGs that decode to the same 8-bit pixels', async () => {
    const ref = loadSafetensors(`${goldens}/flux-tiny/pipeline.safetensors`);
    const picture = toImage8(ref.image_out);
    const png = await encodePng(picture);
    expect(png.subarray(1, 4).toString('latin1')).toBe('PNG');
    const { data, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
    expect(info).toMatchObject({ width: 32, height: 32, channels: 3 });
    expect(Buffer.compare(data, Buffer.from(picture.data))).toBe(0);
    for (const t of Object.values(ref)) t.dispose();
  });
});
