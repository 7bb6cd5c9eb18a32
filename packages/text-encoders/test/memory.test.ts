// Loading a sharded bfloat16 T5 must not copy it: weights stay views of the mapped shards, so
// the resident set grows by the pages a forward pass touches (at most the file once), never by
// a float32 copy (twice the file) on top of the mapping.
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { saveSafetensors, tensor, type Tensor } from '@ditcache/cuda-runtime';

import { T5Encoder } from '../src/index.js';

const MB = 2 ** 20;
const config = { d_model: 512, d_kv: 64, num_heads: 8, d_ff: 1536, num_layers: 8, vocab_size: 1024 };

/** Random bfloat16 weights (bits of N(0, 0.05)-ish values), without a float32 copy in between. */
function randomBf16(shape: number[], seed: number): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const bits = new Uint16Array(n);
  let s = seed >>> 0;
  const f32 = new Float32Array(1);
  const u32 = new Uint32Array(f32.buffer);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    f32[0] = (s / 2 ** 32 - 0.5) * 0.1;
    bits[i] = u32[0] >>> 16;
  }
  return tensor(bits, shape, { dtype: 'bfloat16' });
}

/** A transformers-layout T5EncoderModel checkpoint in three shards with its index. */
function writeShardedT5(dir: string): number {
  const c = config;
  const inner = c.num_heads * c.d_kv;
  const shapes: Record<string, number[]> = {
    'shared.weight': [c.vocab_size, c.d_model],
    'encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight': [32, c.num_heads],
    'encoder.final_layer_norm.weight': [c.d_model],
  };
  for (let i = 0; i < c.num_layers; i++) {
    const b = `encoder.block.${i}.layer`;
    for (const p of ['q', 'k', 'v']) shapes[`${b}.0.SelfAttention.${p}.weight`] = [inner, c.d_model];
    shapes[`${b}.0.SelfAttention.o.weight`] = [c.d_model, inner];
    shapes[`${b}.0.layer_norm.weight`] = [c.d_model];
    shapes[`${b}.1.DenseReluDense.wi_0.weight`] = [c.d_ff, c.d_model];
    shapes[`${b}.1.DenseReluDense.wi_1.weight`] = [c.d_ff, c.d_model];
    shapes[`${b}.1.DenseReluDense.wo.weight`] = [c.d_model, c.d_ff];
    shapes[`${b}.1.layer_norm.weight`] = [c.d_model];
  }
  const names = Object.keys(shapes);
  const shards = [names.slice(0, 30), names.slice(30, 60), names.slice(60)];
  const weightMap: Record<string, string> = {};
  let bytes = 0;
  shards.forEach((shard, s) => {
    const file = `model-0000${s + 1}-of-00003.safetensors`;
    const tensors = Object.fromEntries(shard.map((n, i) => [n, randomBf16(shapes[n], s * 1000 + i + 1)]));
    saveSafetensors(join(dir, file), tensors);
    for (const t of Object.values(tensors)) t.dispose();
    for (const n of shard) weightMap[n] = file;
    bytes += statSync(join(dir, file)).size;
  });
  writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: bytes }, weight_map: weightMap }));
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ architectures: ['T5EncoderModel'], model_type: 't5', feed_forward_proj: 'gated-gelu', ...config }));
  return bytes;
}

const status = (key: 'VmRSS' | 'VmHWM'): number =>
  Number(
    /(\d+) kB/.exec(
      readFileSync('/proc/self/status', 'utf-8')
        .split('\n')
        .find((l) => l.startsWith(key))!,
    )![1],
  ) * 1024;
/** Resets the kernel's peak resident set (VmHWM) of this process to its current size. */
const resetPeak = (): void => writeFileSync('/proc/self/clear_refs', '5');

describe('loading a sharded bfloat16 T5 checkpoint', () => {
  const dir = mkdtempSync(join(tmpdir(), 't5-sharded-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('maps the shards instead of copying them: peak resident memory stays under one copy of the file', () => {
    const fileBytes = writeShardedT5(dir);
    (globalThis as { gc?: () => void }).gc?.();
    resetPeak();
    const baseline = status('VmRSS');
    using model = T5Encoder.load(dir);
    const afterLoad = status('VmHWM') - baseline;
    using ids = tensor(
      Int32Array.from({ length: 64 }, (_, i) => (i * 37) % config.vocab_size),
      [1, 64],
    );
    using out = model.forward(ids);
    const afterForward = status('VmHWM') - baseline;
    console.log(
      `sharded bf16 T5 of ${(fileBytes / MB).toFixed(1)} MB: peak resident growth ${(afterLoad / MB).toFixed(1)} MB after loading, ` +
        `${(afterForward / MB).toFixed(1)} MB after a 64-token forward pass (a float32 copy alone would be ${((2 * fileBytes) / MB).toFixed(1)} MB)`,
    );
    expect(out.shape).toEqual([1, 64, config.d_model]);
    expect(afterLoad).toBeLessThan(0.1 * fileBytes);
    expect(afterForward).toBeLessThan(1.25 * fileBytes);
  });
});
