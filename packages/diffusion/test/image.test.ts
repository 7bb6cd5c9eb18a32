import { readdirSync } from 'node:fs';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { loadSafetensors, memoryStats, tensor, tidy } from '@ditcache/cuda-runtime';
import sharp from 'sharp';

import { encodePng, saveAnimation, savePngFrames, toImage8, toImageRange, toVideoRange } from '../src/index.js';
import { goldens } from './helpers.js';
import { scratchDir } from '../../../scripts/testing/scratch-dir.js';

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

  it('maps video decoder output (B, C, F, H, W) to frames (B, F, H, W, C) in [0, 1]', () => {
    using decoded = tensor([-2, -1, 0, 0.5, 1, 3], [1, 3, 2, 1, 1]);
    const before = memoryStats();
    using video = toVideoRange(decoded);
    expect([...video.shape]).toEqual([1, 2, 1, 1, 3]);
    expect([...video.toFloat32Array()]).toEqual([0, 0.5, 1, 0, 0.75, 1]);
    expect(memoryStats().liveTensors).toBe(before.liveTensors + 1);
    expect(() => tidy(() => toVideoRange(tensor([0, 1, 2], [1, 3, 1, 1])))).toThrow(/expected \(B, C, F, H, W\) decoder output, got \(1, 3, 1, 1\)/);
  });

  it('writes every frame of a video as a PNG, in frame order', async () => {
    const ref = loadSafetensors(`${goldens}/wan-tiny/pipeline.safetensors`);
    const dir = join(scratchDir('ditcache-frames-'), 'out');
    const before = memoryStats();
    const paths = await savePngFrames(ref.video_out, dir);
    expect(memoryStats()).toEqual(before);
    expect(readdirSync(dir).sort()).toEqual(Array.from({ length: 9 }, (_, f) => `frame_000${f}.png`));
    expect(paths).toEqual(
      readdirSync(dir)
        .sort()
        .map((name) => join(dir, name)),
    );
    const frames = ref.video_out.squeeze(0);
    const { data, info } = await sharp(paths[4]).raw().toBuffer({ resolveWithObject: true });
    expect(info).toMatchObject({ width: 48, height: 32, channels: 3 });
    expect(Buffer.compare(data, Buffer.from(toImage8(frames, 4).data))).toBe(0);
    await expect(savePngFrames(ref.video_out, dir, 1)).rejects.toThrow(/video 1 of a batch of 1/);
    frames.dispose();
    for (const t of Object.values(ref)) t.dispose();
  });

  it('writes looping animations (lossless WebP, GIF) with every frame', async () => {
    const ref = loadSafetensors(`${goldens}/wan-tiny/pipeline.safetensors`);
    const dir = scratchDir('ditcache-anim-');
    const before = memoryStats();
    await saveAnimation(ref.video_out, join(dir, 'a.webp'), { fps: 8 });
    await saveAnimation(ref.video_out, join(dir, 'a.gif'));
    expect(memoryStats()).toEqual(before);
    const webp = await sharp(join(dir, 'a.webp'), { animated: true }).metadata();
    expect(webp).toMatchObject({ format: 'webp', pages: 9, width: 48, loop: 0 });
    expect(webp.delay).toEqual(Array(9).fill(125));
    // Lossless: frame 4 decodes to exactly the 8-bit pixels.
    const { data } = await sharp(join(dir, 'a.webp'), { page: 4 }).removeAlpha().raw().toBuffer({ resolveWithObject: true });
    const frames = ref.video_out.squeeze(0);
    expect(Buffer.compare(data, Buffer.from(toImage8(frames, 4).data))).toBe(0);
    expect((await sharp(join(dir, 'a.gif'), { animated: true }).metadata()).pages).toBe(9);
    await expect(saveAnimation(ref.video_out, join(dir, 'a.mp4'))).rejects.toThrow(/must end in .webp or .gif/);
    frames.dispose();
    for (const t of Object.values(ref)) t.dispose();
  });
});
