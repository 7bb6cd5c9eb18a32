// A float16 run whose activations leave float16's range stops with an error naming the step and
// the block and suggesting bfloat16, instead of carrying Inf / NaN into a black image. The model
// is flux-tiny-guidance with one weight of its double-stream block scaled by 1e6, so the block's
// MLP output (image stream, which diffusers does not clip) exceeds 65504.
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { loadSafetensors, memoryStats, meanAbs, mul, saveSafetensors } from '@ditcache/cuda-runtime';
import { Float16OverflowError } from '@ditcache/diffusion';

import { FluxPipeline, FluxTransformer } from '../src/index.js';
import { goldens } from './helpers.js';

const source = `${goldens}/flux-tiny-guidance`;
const OVERFLOWING_WEIGHT = 'transformer_blocks.0.ff.net.2.weight';

/** flux-tiny-guidance with OVERFLOWING_WEIGHT x 1e6. */
const folder = mkdtempSync(join(tmpdir(), 'ditcache-flux-overflow-'));
cpSync(source, folder, { recursive: true });
{
  const file = join(folder, 'transformer', 'diffusion_pytorch_model.safetensors');
  const tensors = loadSafetensors(file);
  const scaled = mul(tensors[OVERFLOWING_WEIGHT], 1e6);
  saveSafetensors(file, { ...tensors, [OVERFLOWING_WEIGHT]: scaled });
  for (const t of [...Object.values(tensors), scaled]) t.dispose();
}
afterAll(() => rmSync(folder, { recursive: true, force: true }));

const meta = JSON.parse(readFileSync(`${source}/meta.json`, 'utf-8')) as Record<string, number>;

describe('float16 overflow', () => {
  it('the transformer names the block whose output overflowed', () => {
    const inputs = loadSafetensors(`${source}/transformer_forward.safetensors`);
    using transformer = FluxTransformer.load(join(folder, 'transformer'), { dtype: 'float16' });
    const before = memoryStats();
    const call = () =>
      transformer.forward({
        hiddenStates: inputs.hidden_states,
        encoderHiddenStates: inputs.encoder_hidden_states,
        pooledProjections: inputs.pooled_projections,
        timestep: inputs.timestep,
        imgIds: inputs.img_ids,
        txtIds: inputs.txt_ids,
        guidance: inputs.guidance,
      });
    expect(call).toThrow(Float16OverflowError);
    expect(call).toThrow(/^float16 overflow in transformer_blocks\.0: .*compute in bfloat16/);
    // The call's scope freed what it had made.
    expect(memoryStats()).toEqual(before);
    for (const t of Object.values(inputs)) t.dispose();
  });

  it('the pipeline stops at the step it happened in, naming the block; in bfloat16 the same model runs', () => {
    const inputs = loadSafetensors(`${source}/pipeline.safetensors`);
    const request = {
      promptEmbeds: inputs.prompt_embeds,
      pooledPromptEmbeds: inputs.pooled_prompt_embeds,
      latents: inputs.latents_in,
      height: meta.height,
      width: meta.width,
      numInferenceSteps: meta.num_inference_steps,
      guidanceScale: meta.guidance_scale,
    };
    {
      using pipe = FluxPipeline.fromPretrained(folder, { dtype: 'float16' });
      const before = memoryStats();
      let caught: unknown;
      try {
        pipe.generate(request).latents.dispose();
      } catch (e) {
        caught = e;
      }
      expect(caught).toBeInstanceOf(Float16OverflowError);
      const err = caught as Float16OverflowError;
      expect([err.module, err.step, err.numSteps]).toEqual(['transformer_blocks.0', 0, meta.num_inference_steps]);
      expect(err.message).toMatch(new RegExp(`^float16 overflow at step 1 of ${meta.num_inference_steps}, in transformer_blocks\\.0: .*dtype: 'bfloat16'`));
      expect(memoryStats()).toEqual(before);
    }
    {
      using pipe = FluxPipeline.fromPretrained(folder, { dtype: 'bfloat16' });
      const { latents, image } = pipe.generate(request);
      expect(Number.isFinite(meanAbs(latents))).toBe(true);
      expect(Number.isFinite(meanAbs(image!))).toBe(true);
      latents.dispose();
      image!.dispose();
    }
    for (const t of Object.values(inputs)) t.dispose();
  });
});
