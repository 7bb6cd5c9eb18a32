import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { evaluatePixelMetrics, listImages, pairDirectories, resolvePairs, siblingDirectories, summarize } from '../src/index.js';
import { GOLDENS_DIR } from './helpers/paths.js';
import { scratchDir } from '../../../scripts/testing/scratch-dir.js';

describe('directory pairing', () => {
  it('lists images in natural order and skips other files', async () => {
    const dir = scratchDir('metrics-list-');
    for (const name of ['img_10.png', 'img_2.png', 'img_1.PNG', '.hidden.png', 'notes.txt', 'frame.npy']) writeFileSync(join(dir, name), '');
    expect(await listImages(dir)).toEqual(['frame.npy', 'img_1.PNG', 'img_2.png', 'img_10.png']);
  });

  it('matches files by name and names every file without a partner', async () => {
    const dir = scratchDir('metrics-pairs-');
    mkdirSync(join(dir, 'a'));
    mkdirSync(join(dir, 'b'));
    for (const name of ['x.png', 'y.png']) writeFileSync(join(dir, 'a', name), '');
    for (const name of ['y.png', 'z.png']) writeFileSync(join(dir, 'b', name), '');
    await expect(pairDirectories(join(dir, 'a'), join(dir, 'b'))).rejects.toThrow(/a\/x\.png has no partner in .*b; .*b\/z\.png has no partner in .*a/);
    writeFileSync(join(dir, 'b', 'x.png'), '');
    writeFileSync(join(dir, 'a', 'z.png'), '');
    expect((await pairDirectories(join(dir, 'a'), join(dir, 'b'))).map((p) => p.name)).toEqual(['x.png', 'y.png', 'z.png']);
  });

  it('finds the sibling directories of a reference', async () => {
    const dir = scratchDir('metrics-siblings-');
    for (const name of ['ref', 'run_10', 'run_2', '.cache']) mkdirSync(join(dir, name));
    writeFileSync(join(dir, 'log.txt'), '');
    expect(await siblingDirectories(join(dir, 'ref'), dir)).toEqual([join(dir, 'run_2'), join(dir, 'run_10')]);
  });
});

describe('evaluatePixelMetrics', () => {
  it('summarises every pair with progress, in pair order', async () => {
    const pairs = await resolvePairs(join(GOLDENS_DIR, 'ref'), join(GOLDENS_DIR, 'test'));
    const progress: number[] = [];
    const result = await evaluatePixelMetrics(pairs, { metrics: ['psnr', 'mae'], onProgress: (done) => progress.push(done) });
    expect(Object.keys(result.psnr!.perImage)).toEqual(pairs.map((p) => p.name));
    expect(progress).toEqual([1, 2, 3, 4, 5, 6]);
    expect(result.mae!.count).toBe(6);
    expect(result.ssim).toBeUndefined();
  });

  it('reports the failing pair by file name', async () => {
    const dir = scratchDir('metrics-eval-');
    mkdirSync(join(dir, 'a'));
    mkdirSync(join(dir, 'b'));
    copyFileSync(join(GOLDENS_DIR, 'ref', 'img_00.png'), join(dir, 'a', 'img.png'));
    copyFileSync(join(GOLDENS_DIR, 'ref', 'img_01.png'), join(dir, 'b', 'img.png'));
    const pairs = await pairDirectories(join(dir, 'a'), join(dir, 'b'));
    await expect(evaluatePixelMetrics(pairs, { metrics: ['ssim'] })).rejects.toThrow(/size mismatch: .*a\/img\.png is 60x58, .*b\/img\.png is 76x49/);
  });
});

describe('summaries', () => {
  it('leaves infinite values out of the mean and counts them', () => {
    expect(summarize({ a: 10, b: Infinity, c: 20 })).toEqual({ mean: 15, count: 2, infiniteCount: 1, perImage: { a: 10, b: Infinity, c: 20 } });
    expect(summarize({ a: Infinity }).mean).toBeNull();
  });
});
