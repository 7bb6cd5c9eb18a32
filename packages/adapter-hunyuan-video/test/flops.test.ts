// HunyuanVideoTransformer.flopsPerCall against a count made from the checkpoint's weights: every
// Linear (and the patch embedding) costs 2 FLOPs per multiply-add over the rows it multiplies.
import { describe, expect, it } from 'vitest';

import { WeightFolder } from '@ditcache/cuda-runtime';

import { HunyuanVideoTransformer } from '../src/index.js';
import { goldens } from './helpers.js';

/** Rows (batch x tokens) each weight multiplies: per sample, per text token, per image token, or per joint token. */
function rowsOf(name: string, b: number, n: number, t: number): number {
  if (/(^|\.)(norm1|norm1_context|norm|norm_out)\.linear\.|time_text_embed\./.test(name)) return b;
  if (name.startsWith('context_embedder.') || /\.attn\.(add_[qkv]_proj|to_add_out)\.|\.ff_context\./.test(name)) return b * t;
  if (name.startsWith('single_transformer_blocks.')) return b * (n + t);
  return b * n;
}

describe.each(['hv-tiny', 'hv-cfg'])('HunyuanVideoTransformer.flopsPerCall on %s', (set) => {
  it('counts 2 FLOPs per multiply-add of every Linear and of the patch embedding, plus the attention products', () => {
    const dir = `${goldens}/${set}/transformer`;
    using folder = new WeightFolder(dir);
    using transformer = HunyuanVideoTransformer.load(dir);
    const c = transformer.config;
    const [b, n, t] = [2, 18, 7];
    const d = transformer.innerDim;
    const attention = 4 * b * (n + t) * (n + t) * d;
    let total = 0;
    let dual0 = 0;
    let single0 = 0;
    for (const name of folder.keys()) {
      const shape = folder.entry(name)?.shape ?? [];
      // Linear weights (out, in) and the patch embedding's (out, in, kt, kh, kw); the rest is element-wise.
      if (!name.endsWith('.weight') || (shape.length !== 2 && shape.length !== 5)) continue;
      const flops = 2 * rowsOf(name, b, n, t) * shape.reduce((x, y) => x * y, 1);
      total += flops;
      if (name.startsWith('transformer_blocks.0.')) dual0 += flops;
      if (name.startsWith('single_transformer_blocks.0.')) single0 += flops;
    }
    const refinerAttention = c.num_refiner_layers * 4 * b * t * t * d;
    const flops = transformer.flopsPerCall({ batch: b, imageTokens: n, textTokens: t });
    expect(flops.perDualBlock).toBe(dual0 + attention);
    expect(flops.perSingleBlock).toBe(single0 + attention);
    expect(flops.total).toBe(total + (c.num_layers + c.num_single_layers) * attention + refinerAttention);
    expect(flops.embedders + c.num_layers * flops.perDualBlock + c.num_single_layers * flops.perSingleBlock + flops.output).toBe(flops.total);
  });
});
