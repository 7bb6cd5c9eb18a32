import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { featureStatistics, fidOfFiles, frechetDistance, InceptionFeatureExtractor, listImages, loadImage, rgbPlanes } from '../src/index.js';
import { GOLDENS_DIR } from './helpers/paths.js';
import { relativeError } from './helpers/synthetic.js';
import { convRelu, poolAndProject, tinyInception } from './helpers/tiny-networks.js';
import { scratchDir } from '../../../scripts/testing/scratch-dir.js';

describe('FID through an ONNX feature extractor (tiny stand-in built by the test)', () => {
  const tiny = tinyInception();
  let extractor: InceptionFeatureExtractor;

  beforeAll(async () => {
    const path = join(scratchDir('metrics-fid-'), 'fid-tiny.onnx');
    writeFileSync(path, tiny.onnx);
    extractor = await InceptionFeatureExtractor.load(path, { runtime: 'web', threads: 1 });
  });
  afterAll(async () => extractor?.dispose());

  async function referenceFeatures(paths: string[]): Promise<Float64Array> {
    const rows: Float64Array[] = [];
    for (const path of paths) {
      const image = await loadImage(path);
      const map = convRelu(Float64Array.from(rgbPlanes(image)), image.height, image.width, tiny.conv);
      rows.push(poolAndProject(map.data, 6, map.height * map.width, tiny.projection, tiny.bias));
    }
    const all = new Float64Array(rows.length * 8);
    rows.forEach((row, i) => all.set(row, i * 8));
    return all;
  }

  it('equals the Frechet distance of float64 reference features (mixed image sizes, batching)', async () => {
    const names = await listImages(join(GOLDENS_DIR, 'ref'));
    const first = names.map((n) => join(GOLDENS_DIR, 'ref', n));
    const second = names.map((n) => join(GOLDENS_DIR, 'test', n));
    // Repeat one size so that a batch of two equal-size images also runs.
    const firstSet = [...first, first[0]];
    const progress: number[] = [];
    const fid = await fidOfFiles(firstSet, second, extractor, { batchSize: 4, onProgress: (done) => progress.push(done) });
    const expected = frechetDistance(
      featureStatistics(await referenceFeatures(firstSet), firstSet.length, 8),
      featureStatistics(await referenceFeatures(second), second.length, 8),
    );
    // 7 and 6 samples of 8-d features: singular covariances, the case the stable square root is for.
    expect(relativeError(fid, expected)).toBeLessThan(1e-4);
    expect(progress[progress.length - 1]).toBe(firstSet.length + second.length);
  });

  it('is 0 for a set against itself and refuses sets of one image', async () => {
    const paths = (await listImages(join(GOLDENS_DIR, 'ref'))).map((n) => join(GOLDENS_DIR, 'ref', n));
    expect(await fidOfFiles(paths, paths, extractor)).toBeLessThan(1e-9);
    await expect(fidOfFiles(paths.slice(0, 1), paths, extractor)).rejects.toThrow(/at least 2 images/);
  });
});
