import { describe, expect, it } from 'vitest';

import { WeightFolder } from '@ditcache/cuda-runtime';

import { WanTransformer } from '../src/index.js';
import { goldens, localGoldens } from './helpers.js';

/** Rows (batch x tokens) each weight of a Wan checkpoint multiplies: per sample, per text token, per image token or per video token. */
function rowsOf(name: string, b: number, videoTokens: number, textTokens: number, imageTokens: number): number {
  if (name.startsWith('condition_embedder.image_embedder.') || /\.attn2\.add_[kv]_proj\./.test(name)) return b * imageTokens;
  if (name.startsWith('condition_embedder.text_embedder.') || /\.attn2\.to_[kv]\./.test(name)) return b * textTokens;
  if (name.startsWith('condition_embedder.')) return b;
  return b * videoTokens;
}

describe.each([
  ['wan-tiny', `${goldens}/wan-tiny/transformer`, 0, false],
  // Image-to-video: 9 image tokens per video, and the first-last-frame model joins two images' 9.
  ['wan-i2v-tiny', `${localGoldens}/wan-i2v-tiny/transformer`, 9, true],
  ['wan-flf2v-tiny', `${localGoldens}/wan-flf2v-tiny/transformer`, 18, true],
])('WanTransformer.flopsPerCall on %s', (_name, dir, m, imageToVideo) => {
  it('counts 2 FLOPs per multiply-add of every Linear and of the patch embedding, plus the attention products', () => {
    using folder = new WeightFolder(dir);
    using transformer = WanTransformer.load(dir);
    const [b, n, t] = [2, 18, 10];
    const d = transformer.innerDim;
    const layers = transformer.config.num_layers;
    const attention = 4 * b * n * n * d + 4 * b * n * (t + m) * d;
    let total = 0;
    let block0 = 0;
    let counted = 0;
    for (const name of folder.keys()) {
      const shape = folder.entry(name)!.shape;
      // Linear weights (out, in) and the patch embedding's (out, in, kt, kh, kw); the rest is element-wise.
      if (!name.endsWith('.weight') || (shape.length !== 2 && shape.length !== 5)) continue;
      const flops = 2 * rowsOf(name, b, n, t, m) * shape.reduce((x, y) => x * y, 1);
      total += flops;
      counted += 1;
      if (name.startsWith('blocks.0.')) block0 += flops;
    }
    // The patch embedding, five condition Linears, ten per block, proj_out; image-to-video: two in the embedder and two more per block.
    expect(counted).toBe(1 + 5 + layers * 10 + 1 + (imageToVideo ? 2 + 2 * layers : 0));
    const flops = transformer.flopsPerCall({ batch: b, videoTokens: n, textTokens: t, imageTokens: m });
    expect(flops.perBlock).toBe(block0 + attention);
    expect(flops.total).toBe(total + layers * attention);
    expect(flops.embedders + layers * flops.perBlock + flops.output).toBe(flops.total);
  });
});
