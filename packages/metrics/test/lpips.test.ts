import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { evaluateLpips, loadImage, LpipsNetwork, lpipsFromFeatures, pairDirectories, rgbPlanes, type PixelImage } from '../src/index.js';
import { GOLDENS_DIR } from './helpers/paths.js';
import { Lcg, relativeError } from './helpers/synthetic.js';
import { convRelu, tinyLpips } from './helpers/tiny-networks.js';
import { scratchDir } from '../../../scripts/testing/scratch-dir.js';

/** lpips written the plain way: normalise whole tensors first, then diff, weight, average. */
function referenceLpips(first: Float64Array[], second: Float64Array[], channels: number[], planes: number[], weights: ArrayLike<number>[]): number {
  let total = 0;
  first.forEach((x, layer) => {
    const c = channels[layer];
    const plane = planes[layer];
    const normalise = (t: Float64Array): Float64Array => {
      const out = new Float64Array(t.length);
      for (let p = 0; p < plane; p++) {
        let norm = 0;
        for (let k = 0; k < c; k++) norm += t[k * plane + p] ** 2;
        for (let k = 0; k < c; k++) out[k * plane + p] = t[k * plane + p] / (Math.sqrt(norm) + 1e-10);
      }
      return out;
    };
    const nx = normalise(x);
    const ny = normalise(second[layer]);
    let sum = 0;
    for (let k = 0; k < c; k++) for (let p = 0; p < plane; p++) sum += weights[layer][k] * (nx[k * plane + p] - ny[k * plane + p]) ** 2;
    total += sum / plane;
  });
  return total;
}

describe('LPIPS combination math', () => {
  it('matches a hand-computed value', () => {
    // x = (3, 4) -> (0.6, 0.8); y = (1, 0); weights (2, 3): 2 * 0.16 + 3 * 0.64 = 2.24
    // (lpips' 1e-10 in the normalisation shifts it by ~2e-10).
    const d = lpipsFromFeatures([{ data: [3, 4], channels: 2, height: 1, width: 1 }], [{ data: [1, 0], channels: 2, height: 1, width: 1 }], [[2, 3]]);
    expect(d).toBeCloseTo(2.24, 8);
  });

  it('matches the plain float64 formula on random multi-layer features', () => {
    const g = new Lcg(7);
    const shapes = [
      [8, 6, 5],
      [16, 3, 2],
      [4, 1, 1],
    ];
    const first = shapes.map(([c, h, w]) => Float64Array.from({ length: c * h * w }, () => Math.max(0, g.uniform())));
    const second = shapes.map(([c, h, w]) => Float64Array.from({ length: c * h * w }, () => Math.max(0, g.uniform())));
    const weights = shapes.map(([c]) => Float64Array.from({ length: c }, () => Math.abs(g.uniform())));
    const maps = (set: Float64Array[]) => set.map((data, l) => ({ data, channels: shapes[l][0], height: shapes[l][1], width: shapes[l][2] }));
    const expected = referenceLpips(
      first,
      second,
      shapes.map((s) => s[0]),
      shapes.map((s) => s[1] * s[2]),
      weights,
    );
    expect(relativeError(lpipsFromFeatures(maps(first), maps(second), weights), expected)).toBeLessThan(1e-13);
    expect(lpipsFromFeatures(maps(first), maps(first), weights)).toBe(0);
  });
});

describe('LPIPS through an ONNX network (tiny stand-in built by the test)', () => {
  const tiny = tinyLpips();
  let network: LpipsNetwork;
  let modelPath: string;

  beforeAll(async () => {
    modelPath = join(scratchDir('metrics-lpips-'), 'lpips-tiny.onnx');
    writeFileSync(modelPath, tiny.onnx);
    network = await LpipsNetwork.load(modelPath, { runtime: 'web', threads: 1 });
  });
  afterAll(async () => network?.dispose());

  function referenceDistance(a: PixelImage, b: PixelImage): number {
    const features = (image: PixelImage) => {
      const input = Float64Array.from(rgbPlanes(image), (v) => 2 * v - 1);
      const f0 = convRelu(input, image.height, image.width, tiny.conv1);
      const f1 = convRelu(f0.data, f0.height, f0.width, tiny.conv2);
      return { maps: [f0.data, f1.data], planes: [f0.height * f0.width, f1.height * f1.width] };
    };
    const fa = features(a);
    const fb = features(b);
    return referenceLpips(fa.maps, fb.maps, [4, 5], fa.planes, tiny.lin);
  }

  it('finds the layers and equals the float64 reference on the golden pairs', async () => {
    expect(network.layers).toBe(2);
    const pairs = await pairDirectories(join(GOLDENS_DIR, 'ref'), join(GOLDENS_DIR, 'test'));
    const summary = await evaluateLpips(pairs, network);
    expect(summary.count).toBe(pairs.length);
    for (const pair of pairs) {
      const expected = referenceDistance(await loadImage(pair.path1), await loadImage(pair.path2));
      // The network runs in float32: features carry ~1e-7 relative error, which leaves the
      // distance of a nearly identical pair (img_05, ~6e-10) with only an absolute bound.
      expect(Math.abs(summary.perImage[pair.name] - expected)).toBeLessThan(1e-5 * expected + 1e-12);
    }
  });

  it('rejects a model without the LPIPS outputs, naming what it has', async () => {
    const { tinyInception } = await import('./helpers/tiny-networks.js');
    const wrong = join(scratchDir('metrics-lpips-'), 'wrong.onnx');
    writeFileSync(wrong, tinyInception().onnx);
    await expect(LpipsNetwork.load(wrong, { runtime: 'web' })).rejects.toThrow(/missing output "feat_0".*"features"/);
    await expect(LpipsNetwork.load(join(tmpdir(), 'nope', 'lpips-alex.onnx'))).rejects.toThrow(/LPIPS model not found.*Model files/);
  });
});
