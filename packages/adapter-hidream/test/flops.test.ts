import { describe, expect, it } from 'vitest';

import { WeightFolder } from '@ditcache/cuda-runtime';

import { HiDreamTransformer } from '../src/index.js';
import { goldens } from './helpers.js';

const dir = `${goldens}/hidream-tiny/transformer`;

/** Rows (batch x tokens) each Linear of a HiDream checkpoint is applied to. */
function rowsOf(name: string, b: number, imageTokens: number, textTokens: number, t5Tokens: number, llamaTokens: number, blocks: number): number {
  if (/^(t_embedder|p_embedder)\.|adaLN_modulation/.test(name)) return b;
  const caption = /^caption_projection\.(\d+)\./.exec(name);
  if (caption) return b * (Number(caption[1]) < blocks ? llamaTokens : t5Tokens);
  if (name.startsWith('single_stream_blocks.')) return b * (imageTokens + textTokens);
  if (/\.(ff_t|attn1\.(to_[qkv]_t|to_out_t))\./.test(name)) return b * textTokens;
  return b * imageTokens;
}

describe('HiDreamTransformer.flopsPerCall', () => {
  it.each([
    ['square', 16, 16, 64],
    ['non-square (padded to max_seq)', 16, 24, 144],
  ])('counts 2 FLOPs per multiply-add of every Linear a %s call runs, the activated experts only, plus attention', (_, height, width, imageTokens) => {
    using folder = new WeightFolder(dir);
    using transformer = HiDreamTransformer.load(dir);
    const c = transformer.config;
    const [b, t5Tokens, llamaTokens] = [2, 8, 6];
    const textTokens = t5Tokens + 2 * llamaTokens;
    const blocks = c.num_layers + c.num_single_layers;
    const attention = 4 * b * (imageTokens + textTokens) ** 2 * transformer.innerDim;
    let total = 0;
    let double0 = 0;
    let single0 = 0;
    for (const name of folder.keys()) {
      const shape = folder.entry(name)!.shape;
      if (shape.length !== 2) continue;
      // Each token runs through num_activated_experts of the num_routed_experts experts.
      const share = /\.experts\.\d+\./.test(name) ? c.num_activated_experts / c.num_routed_experts : 1;
      const flops = 2 * rowsOf(name, b, imageTokens, textTokens, t5Tokens, llamaTokens, blocks) * shape[0] * shape[1] * share;
      total += flops;
      if (name.startsWith('double_stream_blocks.0.')) double0 += flops;
      if (name.startsWith('single_stream_blocks.0.')) single0 += flops;
    }
    expect(transformer.imageTokens(height, width)).toBe(imageTokens);
    const counted = transformer.flopsPerCall({ batch: b, imageTokens, t5Tokens, llamaTokens });
    expect(counted.perDoubleBlock).toBe(double0 + attention);
    expect(counted.perSingleBlock).toBe(single0 + attention);
    expect(counted.total).toBe(total + blocks * attention);
  });
});
