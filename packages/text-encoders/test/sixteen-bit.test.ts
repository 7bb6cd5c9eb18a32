// The encoders in bfloat16 and float16 (LoadOptions' dtype, diffusers' torch_dtype passed on to a
// pipeline's text encoders) against transformers loaded with the same torch_dtype
// (tools/make_16bit_references.py): close to transformers' 16-bit outputs, returned in the dtype,
// and no farther from transformers' float32 outputs than transformers' own 16-bit run is.
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { loadSafetensors, tensor, type Tensor } from '@ditcache/cuda-runtime';

import { ClipTextModel, T5Encoder } from '../src/index.js';
import { data, relativeError } from './helpers.js';

const reference = loadSafetensors(join(data, 'outputs_16bit.safetensors'));
const UMT5 = new URL('../../adapter-wan/test/goldens/wan-prompt/text_encoder', import.meta.url).pathname;
const DTYPES = ['bfloat16', 'float16'] as const;
type Dtype = (typeof DTYPES)[number];

/** Our output's error against transformers in the same dtype, and both sides' errors against transformers' float32. */
function compare(ours: Tensor, key: string, dtype: Dtype) {
  expect(ours.dtype).toBe(dtype);
  const got = ours.toFloat32Array();
  const float32 = reference[`${key.replace('{dtype}', 'float32')}`].toFloat32Array();
  const theirs = reference[`${key.replace('{dtype}', dtype)}`].toFloat32Array();
  return { vsSameDtype: relativeError(got, theirs), ours: relativeError(got, float32), theirs: relativeError(theirs, float32) };
}

/** Within a few units of the dtype's rounding of transformers' same-dtype run. */
const SAME_DTYPE_BOUND: Record<Dtype, number> = { bfloat16: 1.5e-2, float16: 3e-3 };
function expectClose(e: ReturnType<typeof compare>, dtype: Dtype) {
  expect(e.vsSameDtype).toBeLessThan(SAME_DTYPE_BOUND[dtype]);
}
/**
 * Close, and no farther from float32 than 1.5x transformers' own 16-bit error (the bound the
 * runtime's 16-bit transformers meet). Only for whole hidden states: a pooled or projected vector
 * of 20-odd values is too few for the ratio to mean anything.
 */
function expectTracks(e: ReturnType<typeof compare>, dtype: Dtype) {
  expectClose(e, dtype);
  expect(e.ours).toBeLessThanOrEqual(1.5 * e.theirs);
}

const ids = (key: string) => reference[key];

describe.each(DTYPES)('text encoders in %s', (dtype) => {
  it.each(['cat', 'long'])('CLIPTextModel (quick_gelu) tracks transformers on "%s"', (prompt) => {
    using model = ClipTextModel.load(join(data, 'clip-text-model'), { dtype });
    expect(model.dtype).toBe(dtype);
    const out = model.forward(ids(`clip.${prompt}.input_ids`), { outputHiddenStates: true });
    try {
      expectTracks(compare(out.lastHiddenState, `clip.${prompt}.{dtype}.last_hidden_state`, dtype), dtype);
      expectTracks(compare(out.hiddenStates!.at(-2)!, `clip.${prompt}.{dtype}.penultimate`, dtype), dtype);
      expectClose(compare(out.pooledOutput, `clip.${prompt}.{dtype}.pooled`, dtype), dtype);
    } finally {
      for (const t of [out.lastHiddenState, out.pooledOutput, ...out.hiddenStates!]) t.dispose();
    }
  });

  it.each(['cat', 'long'])('CLIPTextModelWithProjection (gelu) tracks transformers on "%s"', (prompt) => {
    using model = ClipTextModel.load(join(data, 'clip-text-model-projection'), { dtype });
    const out = model.forward(ids(`clip_projection.${prompt}.input_ids`), { outputHiddenStates: true });
    try {
      expectTracks(compare(out.lastHiddenState, `clip_projection.${prompt}.{dtype}.last_hidden_state`, dtype), dtype);
      expectClose(compare(out.textEmbeds!, `clip_projection.${prompt}.{dtype}.text_embeds`, dtype), dtype);
    } finally {
      for (const t of [out.lastHiddenState, out.pooledOutput, out.textEmbeds!, ...out.hiddenStates!]) t.dispose();
    }
  });

  it.each([
    ['t5', join(data, 't5-encoder')],
    ['t5_relu', join(data, 't5-encoder-relu')],
    ['umt5', UMT5],
  ])('%s tracks transformers, unmasked and masked', (name, dir) => {
    using model = T5Encoder.load(dir, { dtype });
    expect(model.dtype).toBe(dtype);
    for (const c of ['cat', 'cat_masked']) {
      const mask = reference[`${name}.${c}.attention_mask`];
      using out = model.forward(ids(`${name}.${c}.input_ids`), mask ? { attentionMask: mask } : {});
      expectTracks(compare(out, `${name}.${c}.{dtype}.last_hidden_state`, dtype), dtype);
    }
  });
});

describe('T5 in float16 past its range', () => {
  it('clamps an overflowed hidden state as transformers does, instead of passing infinities on', () => {
    // The first layer's attention output projection scaled by 1e4: its output is infinite in float16.
    using model = T5Encoder.load(join(data, 't5-encoder-overflow'), { dtype: 'float16' });
    using out = model.forward(ids('t5_overflow.cat.input_ids'));
    const values = out.toFloat32Array();
    expect(values.every(Number.isFinite)).toBe(true);
    expect(relativeError(values, reference['t5_overflow.cat.float16.last_hidden_state'].toFloat32Array())).toBeLessThan(SAME_DTYPE_BOUND.float16);
  });
});

describe('text encoders in float32', () => {
  it('are unchanged by the dtype option: the default and an explicit float32 give the same bits', () => {
    using a = T5Encoder.load(join(data, 't5-encoder'));
    using b = T5Encoder.load(join(data, 't5-encoder'), { dtype: 'float32' });
    using input = tensor(Int32Array.from([4, 121, 44, 4, 142, 1]), [1, 6]);
    using x = a.forward(input);
    using y = b.forward(input);
    expect(x.dtype).toBe('float32');
    expect(y.toFloat32Array()).toEqual(x.toFloat32Array());
  });
});
