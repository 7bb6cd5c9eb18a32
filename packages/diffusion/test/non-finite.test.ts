// The NaN / Inf checks every family's denoising loop runs: one reduction per tensor finds a single bad element anywhere, names the tensor and the step, and leaves finite runs untouched.
import { afterEach, describe, expect, it } from 'vitest';

import { full, memoryStats, tensor, zeros, type Tensor } from '@ditcache/cuda-runtime';

import { NonFiniteError, checkFiniteInputs, inDenoisingStep, isFiniteTensor } from '../src/index.js';

/** A (4, 5, 6) float32 tensor of random finite values with `bad` at a random element when given. */
function randomTensor(bad?: number, dtype: 'float32' | 'bfloat16' | 'float16' = 'float32'): Tensor {
  const data = Float32Array.from({ length: 120 }, () => (Math.random() - 0.5) * 8);
  if (bad !== undefined) data[Math.floor(Math.random() * data.length)] = bad;
  using t = tensor(data, [4, 5, 6]);
  return dtype === 'float32' ? t.clone() : t.cast(dtype);
}

function thrown(f: () => unknown): unknown {
  try {
    f();
  } catch (e) {
    return e;
  }
  throw new Error('expected a throw');
}

afterEach(() => {
  delete process.env.DITCACHE_CHECK_FINITE;
});

describe('isFiniteTensor', () => {
  it('finds one NaN, Inf or -Inf anywhere, in every float dtype', () => {
    for (const dtype of ['float32', 'bfloat16', 'float16'] as const) {
      using clean = randomTensor(undefined, dtype);
      expect(isFiniteTensor(clean)).toBe(true);
      for (const bad of [NaN, Infinity, -Infinity]) {
        using t = randomTensor(bad, dtype);
        expect(isFiniteTensor(t), `${bad} in ${dtype}`).toBe(false);
      }
    }
  });

  it('does not overflow on finite values at the top of float32, and an empty tensor is finite', () => {
    using huge = full([1000], 3.4e38);
    expect(isFiniteTensor(huge)).toBe(true);
    using empty = zeros([0, 3]);
    expect(isFiniteTensor(empty)).toBe(true);
  });

  it('reads a strided view as its elements', () => {
    using t = tensor([1, NaN, 3, 4], [2, 2]);
    using column = t.narrow(1, 0, 1);
    using other = t.narrow(1, 1, 1);
    expect([isFiniteTensor(column), isFiniteTensor(other)]).toEqual([true, false]);
  });
});

describe('checkFiniteInputs', () => {
  it('names the first input holding NaN or Inf, before the first step; absent inputs are skipped', () => {
    using latents = randomTensor();
    using embeds = randomTensor(Infinity);
    using pooled = randomTensor(NaN);
    const err = thrown(() =>
      checkFiniteInputs({ latents_in: latents, negative_prompt_embeds: undefined, prompt_embeds: embeds, pooled_prompt_embeds: pooled }, 28),
    );
    expect(err).toBeInstanceOf(NonFiniteError);
    const e = err as NonFiniteError;
    expect([e.name, e.tensor, e.step, e.numSteps, e.when]).toEqual(['NonFiniteError', 'prompt_embeds', 0, 28, 'before']);
    expect(e.message).toBe('non-finite values (NaN or Inf) in prompt_embeds, an input, before step 1 of 28; the pipeline was given non-finite values');
    expect(() => checkFiniteInputs({ latents_in: latents, prompt_embeds: null }, 28)).not.toThrow();
  });
});

describe('inDenoisingStep', () => {
  it('returns the step latents themselves, unchanged, when they are finite', () => {
    const before = memoryStats();
    const latents = randomTensor();
    const values = latents.toFloat32Array();
    const out = inDenoisingStep(0, 28, () => latents);
    expect(out).toBe(latents);
    expect(out.toFloat32Array()).toEqual(values);
    out.dispose();
    expect(memoryStats()).toEqual(before);
  });

  it('stops on NaN or Inf in the latents a step returns, naming the step, and frees them', () => {
    for (const bad of [NaN, Infinity, -Infinity]) {
      const before = memoryStats();
      let made: Tensor | undefined;
      const err = thrown(() => inDenoisingStep(3, 28, () => (made = randomTensor(bad))));
      expect(err).toBeInstanceOf(NonFiniteError);
      expect(err).toBeInstanceOf(RangeError);
      const e = err as NonFiniteError;
      expect([e.tensor, e.step, e.numSteps, e.when]).toEqual(['latents', 3, 28, 'after']);
      expect(e.message).toMatch(/^non-finite values \(NaN or Inf\) in the latents after step 4 of 28; the transformer's output at that step was non-finite/);
      expect(made?.disposed).toBe(true);
      expect(memoryStats()).toEqual(before);
    }
  });

  it('DITCACHE_CHECK_FINITE=0 turns the checks off', () => {
    process.env.DITCACHE_CHECK_FINITE = '0';
    using latents = randomTensor(NaN);
    expect(inDenoisingStep(0, 1, () => latents)).toBe(latents);
    expect(() => checkFiniteInputs({ latents_in: latents }, 1)).not.toThrow();
    process.env.DITCACHE_CHECK_FINITE = '1';
    expect(() => checkFiniteInputs({ latents_in: latents }, 1)).toThrow(NonFiniteError);
  });
});
