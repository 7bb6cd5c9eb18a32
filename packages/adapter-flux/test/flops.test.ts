import { describe, expect, it } from 'vitest';

import { WeightFolder } from '@ditcache/cuda-runtime';

import { FluxTransformer } from '../src/index.js';
import { goldens } from './helpers.js';

/** Rows (batch x tokens) each Linear of a FLUX checkpoint is applied to. */
function rowsOf(name: string, b: number, imageTokens: number, textTokens: number): number {
  if (/^(time_text_embed|norm_out)\.|\.norm1(_context)?\.linear\.|\.norm\.linear\./.test(name)) return b;
  if (name.startsWith('single_transformer_blocks.')) return b * (imageTokens + textTokens);
  if (name.startsWith('context_embedder.') || /\.(ff_context|attn\.add_[qkv]_proj|attn\.to_add_out)\./.test(name)) return b * textTokens;
  return b * imageTokens;
}

describe.each(['flux-tiny', 'flux-tiny-guidance'])('FluxTransformer.flopsPerCall on %s', (set) => {
  it('counts 2 FLOPs per multiply-add of every Linear in the checkpoint, plus attention', () => {
    using folder = new WeightFolder(`${goldens}/${set}/transformer`);
    using transformer = FluxTransformer.load(`${goldens}/${set}/transformer`);
    const [b, n, t] = [2, 64, 7];
    const d = transformer.innerDim;
    const attention = 4 * b * (n + t) ** 2 * d;
    let total = 0;
    let block0 = 0;
    let single0 = 0;
    for (const name of folder.keys()) {
      const shape = folder.entry(name)!.shape;
      if (shape.length !== 2) continue;
      const flops = 2 * rowsOf(name, b, n, t) * shape[0] * shape[1];
      total += flops;
      if (name.startsWith('transformer_blocks.0.')) block0 += flops;
      if (name.startsWith('single_transformer_blocks.0.')) single0 += flops;
    }
    const blocks = transformer.config.num_layers + transformer.config.num_single_layers;
    const counted = transformer.flopsPerCall({ batch: b, imageTokens: n, textTokens: t });
    expect(counted.perDoubleBlock).toBe(block0 + attention);
    expect(counted.perSingleBlock).toBe(single0 + attention);
    expect(counted.total).toBe(total + blocks * attention);
  });
});
