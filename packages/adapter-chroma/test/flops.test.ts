// ChromaTransformer.flopsPerCall (what `summary` reports skipped FLOPs from) against every Linear
// of the checkpoint, each counted over the rows it is applied to, plus attention.
import { describe, expect, it } from 'vitest';

import { WeightFolder } from '@ditcache/cuda-runtime';

import { ChromaTransformer, modulationRows } from '../src/index.js';
import { SETS, goldens } from './helpers.js';

/** Rows (batch x tokens, or batch x modulation rows) each Linear of a Chroma checkpoint is applied to. */
function rowsOf(name: string, b: number, imageTokens: number, textTokens: number, tableRows: number): number {
  if (name.startsWith('distilled_guidance_layer.')) return b * tableRows;
  if (name.startsWith('single_transformer_blocks.')) return b * (imageTokens + textTokens);
  if (name.startsWith('context_embedder.') || /\.(ff_context|attn\.add_[qkv]_proj|attn\.to_add_out)\./.test(name)) return b * textTokens;
  return b * imageTokens;
}

describe.each(SETS)('ChromaTransformer.flopsPerCall on %s', (set) => {
  it('counts 2 FLOPs per multiply-add of every Linear in the checkpoint, plus attention', () => {
    using folder = new WeightFolder(`${goldens}/${set}/transformer`);
    using transformer = ChromaTransformer.load(`${goldens}/${set}/transformer`);
    const [b, n, t] = [2, 15, 8];
    const attention = 4 * b * (n + t) ** 2 * transformer.innerDim;
    const tableRows = modulationRows(transformer.config);
    let total = 0;
    let block0 = 0;
    let single0 = 0;
    for (const name of folder.keys()) {
      const shape = folder.entry(name)?.shape ?? [];
      if (shape.length !== 2) continue;
      const flops = 2 * rowsOf(name, b, n, t, tableRows) * shape[0] * shape[1];
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
