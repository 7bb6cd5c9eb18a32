import { describe, expect, it } from 'vitest';

import { WeightFolder } from '@ditcache/cuda-runtime';

import { WanTransformer } from '../src/index.js';
import { goldens } from './helpers.js';

/** Rows (batch x tokens) each weight of a Wan checkpoint multiplies: per sample, per text token or per video token. */
function rowsOf(name: string, b: number, videoTokens: number, textTokens: number): number {
  if (name.startsWith('condition_embedder.text_embedder.') || /\.attn2\.to_[kv]\./.test(name)) return b * textTokens;
  if (name.startsWith('condition_embedder.')) return b;
  return b * videoTokens;
}

describe('WanTransformer.flopsPerCall on wan-tiny', () => {
  it('counts 2 FLOPs per multiply-add of every Linear and of the patch embedding, plus both attentions', () => {
    const dir = `${goldens}/wan-tiny/transformer`;
    using folder = new WeightFolder(dir);
    using transformer = WanTransformer.load(dir);
    const [b, n, t] = [2, 18, 10];
    const d = transformer.innerDim;
    const attention = 4 * b * n * n * d + 4 * b * n * t * d;
    let total = 0;
    let block0 = 0;
    let counted = 0;
    for (const name of folder.keys()) {
      const shape = folder.entry(name)!.shape;
      // Linear weights (out, in) and the patch embedding's (out, in, kt, kh, kw); the rest is element-wise.
      if (!name.endsWith('.weight') || (shape.length !== 2 && shape.length !== 5)) continue;
      const flops = 2 * rowsOf(name, b, n, t) * shape.reduce((x, y) => x * y, 1);
      total += flops;
      counted += 1;
      if (name.startsWith('blocks.0.')) block0 += flops;
    }
    expect(counted).toBe(1 + 5 + 4 * 10 + 1);
    const flops = transformer.flopsPerCall({ batch: b, videoTokens: n, textTokens: t });
    expect(flops.perBlock).toBe(block0 + attention);
    expect(flops.total).toBe(total + transformer.config.num_layers * attention);
    expect(flops.embedders + transformer.config.num_layers * flops.perBlock + flops.output).toBe(flops.total);
  });
});
