// NaN or Inf in an input or a weight of the reference model stops a run with an error naming the tensor and the step, in the thread and through the worker, instead of a black image; a clean run is unchanged bit for bit.
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, afterEach, describe, expect, it } from 'vitest';

import { loadSafetensors, memoryStats, saveSafetensors, type Tensor } from '@ditcache/cuda-runtime';
import { isFiniteTensor } from '@ditcache/diffusion';

import { FluxPipeline, type FluxGenerateOptions, type FluxTransformerInputs } from '../src/index.js';
import { nonFiniteFailure, withValue } from '../../../scripts/testing/non-finite.js';

const REFERENCE_MODEL = new URL('../../../models/flux-shapes', import.meta.url).pathname;
const STEPS = 28;
const POISONED_WEIGHT = 'single_transformer_blocks.3.proj_out.weight';

/** The reference model with one element of POISONED_WEIGHT set to NaN: its entries linked, the transformer's weights rewritten. */
const poisoned = mkdtempSync(join(tmpdir(), 'ditcache-flux-nan-weight-'));
afterAll(() => rmSync(poisoned, { recursive: true, force: true }));
for (const entry of readdirSync(REFERENCE_MODEL)) {
  if (entry !== 'transformer') symlinkSync(join(REFERENCE_MODEL, entry), join(poisoned, entry));
}
mkdirSync(join(poisoned, 'transformer'));
copyFileSync(join(REFERENCE_MODEL, 'transformer', 'config.json'), join(poisoned, 'transformer', 'config.json'));
{
  const weights = loadSafetensors(join(REFERENCE_MODEL, 'transformer', 'diffusion_pytorch_model.safetensors'));
  const bad = withValue(weights[POISONED_WEIGHT], 7, NaN);
  saveSafetensors(join(poisoned, 'transformer', 'diffusion_pytorch_model.safetensors'), { ...weights, [POISONED_WEIGHT]: bad });
  for (const t of [...Object.values(weights), bad]) t.dispose();
}

const prompts = loadSafetensors(join(REFERENCE_MODEL, 'demo-prompts.safetensors'));
const promptEmbeds = prompts.prompt_embeds.narrow(0, 0, 1).keep();
const pooledPromptEmbeds = prompts.pooled_prompt_embeds.narrow(0, 0, 1).keep();
afterAll(() => {
  for (const t of [...Object.values(prompts), promptEmbeds, pooledPromptEmbeds]) t.dispose();
});
const request = (extra: Partial<FluxGenerateOptions> = {}): FluxGenerateOptions => ({
  promptEmbeds,
  pooledPromptEmbeds,
  seed: 0,
  height: 32,
  width: 32,
  numInferenceSteps: STEPS,
  decode: false,
  ...extra,
});

afterEach(() => {
  delete process.env.DITCACHE_CHECK_FINITE;
});

describe('NaN / Inf on the reference model', () => {
  it('NaN in latents_in stops before the first step, naming latents_in', () => {
    using pipe = FluxPipeline.fromPretrained(REFERENCE_MODEL);
    using latents = withValue(pipe.generate(request({ numInferenceSteps: 1 })).latents, 100, NaN);
    const before = memoryStats();
    const err = nonFiniteFailure(pipe, request({ latents }));
    expect([err.tensor, err.step, err.when]).toEqual(['latents_in', 0, 'before']);
    expect(err.message).toMatch(new RegExp(`^non-finite values \\(NaN or Inf\\) in latents_in, an input, before step 1 of ${STEPS}`));
    expect(memoryStats()).toEqual(before);
  });

  it('Inf in prompt_embeds stops before the first step, naming prompt_embeds', () => {
    using pipe = FluxPipeline.fromPretrained(REFERENCE_MODEL);
    using bad = withValue(promptEmbeds, 5 * 64 + 3, Infinity);
    const before = memoryStats();
    const err = nonFiniteFailure(pipe, request({ promptEmbeds: bad }));
    expect([err.tensor, err.step, err.when]).toEqual(['prompt_embeds', 0, 'before']);
    expect(err.message).toMatch(/in prompt_embeds, an input, before step 1 of 28/);
    expect(memoryStats()).toEqual(before);
  });

  it('a NaN weight stops the run after its first step, naming the latents and the transformer', () => {
    using pipe = FluxPipeline.fromPretrained(poisoned);
    const before = memoryStats();
    const err = nonFiniteFailure(pipe, request());
    expect([err.tensor, err.step, err.numSteps, err.when]).toEqual(['latents', 0, STEPS, 'after']);
    expect(err.message).toMatch(/^non-finite values \(NaN or Inf\) in the latents after step 1 of 28; the transformer's output at that step was non-finite/);
    expect(memoryStats()).toEqual(before);
    // Unchecked, the same run ends in NaN latents (a black image) without a word.
    process.env.DITCACHE_CHECK_FINITE = '0';
    using latents = pipe.generate(request()).latents;
    expect(isFiniteTensor(latents)).toBe(false);
  });

  it('a transformer output turning non-finite at a later step is caught at that step', () => {
    using pipe = FluxPipeline.fromPretrained(REFERENCE_MODEL);
    const forward = pipe.transformer.forward.bind(pipe.transformer);
    let calls = 0;
    pipe.transformer.forward = (inputs: FluxTransformerInputs): Tensor => {
      const out = forward(inputs);
      if (calls++ !== 5) return out;
      const bad = withValue(out, 0, -Infinity);
      out.dispose();
      return bad;
    };
    const err = nonFiniteFailure(pipe, request());
    expect([err.tensor, err.step, err.when]).toEqual(['latents', 5, 'after']);
    expect(err.message).toMatch(/after step 6 of 28/);
  });

  it('a clean run gives the same latents, bit for bit, as with the check turned off', () => {
    using pipe = FluxPipeline.fromPretrained(REFERENCE_MODEL);
    using checked = pipe.generate(request()).latents;
    process.env.DITCACHE_CHECK_FINITE = '0';
    using unchecked = pipe.generate(request()).latents;
    expect(isFiniteTensor(checked)).toBe(true);
    expect(checked.toFloat32Array()).toEqual(unchecked.toFloat32Array());
  });

  it('the worker carries the error across with its name and message', async () => {
    const remote = await FluxPipeline.spawn(poisoned);
    try {
      const rejected = remote.generate(request());
      await expect(rejected).rejects.toThrow(/^non-finite values \(NaN or Inf\) in the latents after step 1 of 28; the transformer's output/);
      await expect(rejected).rejects.toMatchObject({ name: 'NonFiniteError' });
    } finally {
      await remote.close();
    }
  });
});
