import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { loadSafetensors, memoryStats, tensor } from '@ditcache/cuda-runtime';

import { ClipTextModel, T5Encoder, loadTokenizer, positionBuckets, relativePositionBucket } from '../src/index.js';
import { data, relativeError, unpacked } from './helpers.js';

const reference = loadSafetensors(join(data, 'outputs.safetensors'));
const PROMPTS: Record<string, string> = {
  cat: 'a photo of a cat',
  long: (JSON.parse(readFileSync(join(data, 'tokens.json'), 'utf-8')) as { prompts: { text: string }[] }).prompts.at(-1)!.text,
  unicode: 'emoji: 🐱🐶 👍🏽 👨\u200d👩\u200d👧\u200d👦 🇫🇷 ❤️',
  empty: '',
};
const ids = (rows: number[]) => tensor(Int32Array.from(rows), [1, rows.length]);
const errors: Record<string, number> = {};

describe('CLIPTextModel', () => {
  const clipTokenizer = loadTokenizer(join(data, 'clip-tokenizer'));

  it.each(Object.keys(PROMPTS))('matches transformers (bfloat16 weights, quick_gelu, legacy eos id) on "%s"', (name) => {
    using model = ClipTextModel.load(join(data, 'clip-text-model'));
    expect(model.config).toMatchObject({ architecture: 'CLIPTextModel', hiddenAct: 'quick_gelu', eosTokenId: 2, hiddenSize: 24 });
    const before = memoryStats();
    const input = ids(clipTokenizer.encodePadded(PROMPTS[name], 77).ids);
    const out = model.forward(input);
    errors[`clip.${name}.pooled`] = relativeError(out.pooledOutput.toFloat32Array(), reference[`clip.${name}.pooled`].toFloat32Array());
    errors[`clip.${name}.last`] = relativeError(out.lastHiddenState.toFloat32Array(), reference[`clip.${name}.last_hidden_state`].toFloat32Array());
    expect(errors[`clip.${name}.pooled`]).toBeLessThan(1e-5);
    expect(errors[`clip.${name}.last`]).toBeLessThan(1e-5);
    expect(out.textEmbeds).toBeNull();
    out.pooledOutput.dispose();
    out.lastHiddenState.dispose();
    input.dispose();
    expect(memoryStats()).toEqual(before);
  });

  it.each(Object.keys(PROMPTS))('matches CLIPTextModelWithProjection (float16 weights, gelu, real eos id) on "%s"', (name) => {
    using model = ClipTextModel.load(join(data, 'clip-text-model-projection'));
    using input = ids(clipTokenizer.encodePadded(PROMPTS[name], 77).ids);
    const out = model.forward(input);
    errors[`clip_projection.${name}`] = relativeError(out.textEmbeds!.toFloat32Array(), reference[`clip_projection.${name}.text_embeds`].toFloat32Array());
    expect(errors[`clip_projection.${name}`]).toBeLessThan(1e-5);
    expect(out.textEmbeds!.shape).toEqual([1, 20]);
    for (const t of [out.pooledOutput, out.lastHiddenState, out.textEmbeds!]) t.dispose();
  });

  it('pools each row of a batch at its own end-of-text token', () => {
    using model = ClipTextModel.load(join(data, 'clip-text-model'));
    using batch = tensor(Int32Array.from([...clipTokenizer.encodePadded(PROMPTS.cat, 77).ids, ...clipTokenizer.encodePadded(PROMPTS.empty, 77).ids]), [2, 77]);
    const out = model.forward(batch);
    const pooled = out.pooledOutput.toFloat32Array();
    expect(relativeError(pooled.subarray(0, 24), reference['clip.cat.pooled'].toFloat32Array())).toBeLessThan(1e-5);
    expect(relativeError(pooled.subarray(24), reference['clip.empty.pooled'].toFloat32Array())).toBeLessThan(1e-5);
    out.pooledOutput.dispose();
    out.lastHiddenState.dispose();
  });
});

describe('T5EncoderModel', () => {
  const t5Tokenizer = unpacked('t5-tokenizer-json', loadTokenizer);

  it('computes the relative position buckets of transformers for FLUX.1 settings', () => {
    const table = JSON.parse(readFileSync(join(data, 't5-buckets.json'), 'utf-8')) as { buckets: number[]; first_position: number };
    expect(table.buckets.map((_, i) => relativePositionBucket(i + table.first_position, 32, 128))).toEqual(table.buckets);
    expect([...positionBuckets(3, 32, 128)]).toEqual([0, 17, 18, 1, 0, 17, 2, 1, 0]);
  });

  it.each(Object.keys(PROMPTS))('matches transformers (v1.1, gated-gelu, bfloat16 shards) on "%s"', (name) => {
    using model = T5Encoder.load(join(data, 't5-encoder'));
    expect(model.config).toMatchObject({ isGatedAct: true, denseActFn: 'gelu_new', dModel: 32 });
    const length = reference[`t5.${name}.length`].item();
    const encoded = t5Tokenizer.encodePadded(PROMPTS[name], length);
    using input = ids(encoded.ids);
    using out = model.forward(input);
    errors[`t5.${name}`] = relativeError(out.toFloat32Array(), reference[`t5.${name}.last_hidden_state`].toFloat32Array());
    expect(errors[`t5.${name}`]).toBeLessThan(1e-5);
    if (name !== 'long') {
      using mask = tensor(Float32Array.from(encoded.attentionMask), [1, length]);
      using masked = model.forward(input, { attentionMask: mask });
      errors[`t5.${name}.masked`] = relativeError(masked.toFloat32Array(), reference[`t5.${name}.masked_last_hidden_state`].toFloat32Array());
      expect(errors[`t5.${name}.masked`]).toBeLessThan(1e-5);
    } else {
      expect(encoded.truncatedTokens).toBeGreaterThan(0);
    }
  });

  it.each(['cat', 'unicode', 'empty'])('matches transformers (v1.0, relu, float16 weights) on "%s"', (name) => {
    using model = T5Encoder.load(join(data, 't5-encoder-relu'));
    expect(model.config).toMatchObject({ isGatedAct: false, denseActFn: 'relu' });
    using input = ids(t5Tokenizer.encodePadded(PROMPTS[name], 24).ids);
    using out = model.forward(input);
    errors[`t5_relu.${name}`] = relativeError(out.toFloat32Array(), reference[`t5_relu.${name}.last_hidden_state`].toFloat32Array());
    expect(errors[`t5_relu.${name}`]).toBeLessThan(1e-5);
  });

  it('reports the measured errors', () => {
    console.log(
      Object.entries(errors)
        .map(([k, v]) => `${k}: ${v.toExponential(1)}`)
        .join('\n'),
    );
  });
});
