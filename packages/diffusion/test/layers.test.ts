import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { WeightFolder, conv3d, gelu, linear, memoryStats, saveSafetensors, tensor, tidy } from '@ditcache/cuda-runtime';

import { Conv2d, Conv3d, FeedForward, GroupNorm, LayerNorm, Linear, ParameterStore, RMSNorm, WeightMismatchError, WeightReader } from '../src/index.js';
import { goldens, relativeL2 } from './helpers.js';
import { scratchDir } from '../../../scripts/testing/scratch-dir.js';

describe('WeightReader and layers', () => {
  it('load weights by dotted prefix into a store that frees them together', () => {
    using folder = new WeightFolder(`${goldens}/flux-tiny/transformer`);
    const before = memoryStats();
    const store = new ParameterStore();
    const w = new WeightReader(folder, store).at('transformer_blocks').at(0);
    const proj = Linear.load(w.at('attn.to_q'), 32, 32);
    const norm = RMSNorm.load(w.at('attn.norm_q'), 16, 1e-6);
    expect([proj.outFeatures, proj.inFeatures, store.count]).toEqual([32, 32, 3]);
    expect(proj.weight.readOnly).toBe(true);
    const x = tensor(
      Array.from({ length: 64 }, (_, i) => i / 64),
      [2, 32],
    );
    const y = tidy(() => norm.forward(proj.forward(x).reshape(2, 2, 16)));
    expect([...y.shape]).toEqual([2, 2, 16]);
    for (const t of [x, y]) t.dispose();
    store.dispose();
    expect(memoryStats()).toEqual(before);
  });

  it('cast bf16 and f16 weights to float32 once, at load', () => {
    const dir = scratchDir('ditcache-half-');
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ _class_name: 'Test' }));
    using w32 = tensor([0.5, -1.25, 3, 1e-3, 7, -2], [3, 2]);
    using b32 = tensor([1, 2, 3]);
    using wbf = w32.cast('bfloat16');
    using f16 = b32.cast('float16');
    saveSafetensors(join(dir, 'model.safetensors'), { 'proj.weight': wbf, 'proj.bias': f16 });
    using folder = new WeightFolder(dir);
    using store = new ParameterStore();
    const proj = Linear.load(new WeightReader(folder, store).at('proj'), 2, 3);
    expect([proj.weight.dtype, proj.bias?.dtype]).toEqual(['float32', 'float32']);
    expect([...proj.weight.toFloat32Array()]).toEqual([...wbf.toFloat32Array()]);
    expect([...proj.bias!.toFloat32Array()]).toEqual([1, 2, 3]);
  });

  it("keep bf16 and f16 weights as stored with weightDtype 'stored', mapped rather than copied, computing as the float32 ones do", () => {
    const dir = scratchDir('ditcache-stored-');
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ _class_name: 'Test' }));
    using w32 = tensor(
      Array.from({ length: 64 * 32 }, (_, i) => Math.sin(i) / 8),
      [64, 32],
    );
    using b32 = tensor(Array.from({ length: 64 }, (_, i) => Math.cos(i)));
    using wbf = w32.cast('bfloat16');
    using bf16 = b32.cast('float16');
    saveSafetensors(join(dir, 'model.safetensors'), { 'block.proj.weight': wbf, 'block.proj.bias': bf16 });
    using folder = new WeightFolder(dir);
    using x = tensor(
      Array.from({ length: 3 * 32 }, (_, i) => Math.cos(i / 3)),
      [3, 32],
    );
    const before = memoryStats();
    using store = new ParameterStore();
    const stored = Linear.load(new WeightReader(folder, store, { weightDtype: 'stored' }).at('block').at('proj'), 32, 64);
    expect([stored.weight.dtype, stored.bias?.dtype]).toEqual(['bfloat16', 'float16']);
    expect(memoryStats().hostBytes - before.hostBytes).toBe(0);
    const widened = Linear.load(new WeightReader(folder, store).at('block').at('proj'), 32, 64);
    expect(memoryStats().hostBytes - before.hostBytes).toBe(4 * (64 * 32 + 64));
    using a = stored.forward(x);
    using b = widened.forward(x);
    expect([a.dtype, b.dtype]).toEqual(['float32', 'float32']);
    expect(Buffer.compare(Buffer.from(a.toBytes()), Buffer.from(b.toBytes()))).toBe(0);
  });

  it('name the folder, weight and shapes when weights do not fit', () => {
    using folder = new WeightFolder(`${goldens}/flux-tiny/vae`);
    using store = new ParameterStore();
    const w = new WeightReader(folder, store).at('decoder');
    expect(() => Linear.load(w.at('mid_block.attentions.0.to_q'), 16, 32)).toThrow(WeightMismatchError);
    expect(() => Linear.load(w.at('mid_block.attentions.0.to_q'), 16, 32)).toThrow(
      /vae: weight 'decoder.mid_block.attentions.0.to_q.weight' has shape \(16, 16\) but config.json implies \(32, 16\)/,
    );
    expect(() => Conv2d.load(w.at('conv_nowhere'), 4, 16, { kernel: 3 })).toThrow(/no weight named 'decoder.conv_nowhere.weight'/);
    expect(() => GroupNorm.load(w.at('conv_norm_out'), 3, 8, 1e-6)).toThrow(/3 groups do not divide 8 channels/);
    expect(LayerNorm.load(w.at('conv_norm_out'), 8, 1e-6).weight?.shape).toEqual([8]);
  });

  it('Conv3d reads (out, in, kd, kh, kw) weights and convolves with its stride and padding', () => {
    using folder = new WeightFolder(`${goldens}/wan-tiny/transformer`);
    using store = new ParameterStore();
    const w = new WeightReader(folder, store);
    const patches = Conv3d.load(w.at('patch_embedding'), 16, 24, { kernel: [1, 2, 2], stride: [1, 2, 2] });
    expect(patches.kernel).toEqual([1, 2, 2]);
    using x = tensor(
      Array.from({ length: 16 * 3 * 4 * 6 }, (_, i) => Math.cos(i)),
      [1, 16, 3, 4, 6],
    );
    using y = patches.forward(x);
    using expected = conv3d(x, patches.weight, patches.bias, { stride: [1, 2, 2] });
    expect([...y.shape]).toEqual([1, 24, 3, 2, 3]);
    expect(relativeL2(y, expected)).toBe(0);
    expect(() => Conv3d.load(w.at('patch_embedding'), 16, 24, { kernel: 2 })).toThrow(
      /weight 'patch_embedding.weight' has shape \(24, 16, 1, 2, 2\) but config.json implies \(24, 16, 2, 2, 2\)/,
    );
  });

  it('FeedForward is net.0.proj, GELU, net.2', () => {
    using folder = new WeightFolder(`${goldens}/wan-tiny/transformer`);
    using store = new ParameterStore();
    const w = new WeightReader(folder, store).at('blocks').at(0).at('ffn');
    const ff = FeedForward.load(w, 24, 32, 'gelu-approximate');
    expect(ff.innerDim).toBe(32);
    using x = tensor(
      Array.from({ length: 48 }, (_, i) => Math.sin(i)),
      [2, 24],
    );
    const before = memoryStats();
    using y = ff.forward(x);
    using expected = tidy(() => linear(gelu(linear(x, ff.proj.weight, ff.proj.bias), { approximate: 'tanh' }), ff.out.weight, ff.out.bias));
    expect(relativeL2(y, expected)).toBe(0);
    expect(memoryStats().liveTensors).toBe(before.liveTensors + 2);
    expect(() => FeedForward.load(w, 24, 64, 'gelu')).toThrow(/has shape \(32, 24\) but config.json implies \(64, 24\)/);
  });
});
