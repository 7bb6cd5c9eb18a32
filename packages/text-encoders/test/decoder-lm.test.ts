// The decoder LLMs (Llama with Llama 3.1's rotary scaling; Qwen2.5-VL's language model) against
// transformers on small random-weight models (tools/make_llm_references.py): every hidden state a
// pipeline may read, for a right-padded batch, in float32 and bfloat16.
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { loadSafetensors, memoryStats, tensor, tidy, type Tensor } from '@ditcache/cuda-runtime';

import { DecoderLM } from '../src/index.js';
import { inverseFrequencies } from '../src/decoder-rotary.js';
import { data, relativeError } from './helpers.js';

const reference = loadSafetensors(join(data, 'llm_outputs.safetensors'));
afterAll(() => {
  for (const t of Object.values(reference)) t.dispose();
});

const MODELS = [
  ['llama', 'llama-decoder', 'LlamaForCausalLM'],
  ['qwen', 'qwen2-5-vl', 'Qwen2_5_VLForConditionalGeneration'],
] as const;

/** Each hidden state's relative error against transformers' (layers + 1 of them). */
function layerErrors(ours: Tensor[], theirs: Tensor): number[] {
  const [layers, ...shape] = theirs.shape;
  const size = shape.reduce((a, b) => a * b, 1);
  const all = theirs.toFloat32Array();
  expect(ours).toHaveLength(layers);
  return tidy(() => ours.map((t, i) => relativeError(t.cast('float32').toFloat32Array(), all.subarray(i * size, (i + 1) * size))));
}

describe.each(MODELS)('DecoderLM on %s', (name, folder, architecture) => {
  it('gives every hidden state of transformers in float32, padded rows included', () => {
    using model = DecoderLM.load(join(data, folder));
    expect(model.config.architecture).toBe(architecture);
    const before = memoryStats();
    const out = model.forward(reference[`${name}.input_ids`], { attentionMask: reference[`${name}.attention_mask`], outputHiddenStates: true });
    const errors = layerErrors(out.hiddenStates!, reference[`${name}.float32.hidden_states`]);
    for (const [i, e] of errors.entries()) expect(e, `hidden state ${i}`).toBeLessThan(1e-5);
    expect(relativeError(out.lastHiddenState.toFloat32Array(), out.hiddenStates!.at(-1)!.toFloat32Array())).toBe(0);
    for (const t of [out.lastHiddenState, ...out.hiddenStates!]) t.dispose();
    expect(memoryStats()).toEqual(before);
  });

  it('tracks transformers in bfloat16, no farther from float32 than transformers is', () => {
    using model = DecoderLM.load(join(data, folder), { dtype: 'bfloat16' });
    const out = model.forward(reference[`${name}.input_ids`], { attentionMask: reference[`${name}.attention_mask`], outputHiddenStates: true });
    expect(out.lastHiddenState.dtype).toBe('bfloat16');
    const vsSame = layerErrors(out.hiddenStates!, reference[`${name}.bfloat16.hidden_states`]);
    const vsFloat32 = layerErrors(out.hiddenStates!, reference[`${name}.float32.hidden_states`]);
    const theirs = tidy(() => {
      const states = reference[`${name}.bfloat16.hidden_states`];
      const layers = Array.from({ length: vsSame.length }, (_, i) => states.narrow(0, i, 1).reshape(states.shape.slice(1)));
      return layerErrors(layers, reference[`${name}.float32.hidden_states`]);
    });
    for (const [i, e] of vsSame.entries()) {
      expect(e, `hidden state ${i}`).toBeLessThan(1e-2);
      expect(vsFloat32[i], `hidden state ${i}`).toBeLessThanOrEqual(1.5 * theirs[i] + 1e-6);
    }
    for (const t of [out.lastHiddenState, ...out.hiddenStates!]) t.dispose();
  });

  it('returns only the last hidden state unless asked for all', () => {
    using model = DecoderLM.load(join(data, folder));
    const out = model.forward(reference[`${name}.input_ids`]);
    expect(out.hiddenStates).toBeNull();
    expect(out.lastHiddenState.shape).toEqual([2, 11, 32]);
    out.lastHiddenState.dispose();
  });
});

describe('DecoderLM inputs and configs', () => {
  it("rescales Llama 3.1's rotary frequencies in all three bands", () => {
    const config = { theta: 500000, dim: 8, llama3: { factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 } };
    const plain = inverseFrequencies({ ...config, llama3: null });
    const scaled = inverseFrequencies(config);
    // wavelengths 6.3 and 167 (short: kept), 4443 (between 2048 and 8192: blended), 118000 (long: / 8).
    expect(scaled[0]).toBe(plain[0]);
    expect(scaled[1]).toBe(plain[1]);
    expect(scaled[2]).toBeLessThan(plain[2]);
    expect(scaled[2]).toBeGreaterThan(plain[2] / 8);
    expect(scaled[3]).toBe(Math.fround(plain[3] / 8));
  });

  it('refuses a mask of the wrong shape and a row with nothing to attend to', () => {
    using model = DecoderLM.load(join(data, 'llama-decoder'));
    using ids = tensor(Int32Array.from([5, 6, 7, 8]), [2, 2]);
    using wrong = tensor(Int32Array.from([1, 1, 1]), [1, 3]);
    expect(() => model.forward(ids, { attentionMask: wrong })).toThrow(/attentionMask must be \(2, 2\) like the ids, got \(1, 3\)/);
    using leftPadded = tensor(Int32Array.from([1, 1, 0, 1]), [2, 2]);
    expect(() => model.forward(ids, { attentionMask: leftPadded })).toThrow(/row 1 masks every token up to position 0; pad on the right/);
  });
});
