// The CLI family as `ditcache` uses it: --inputs under diffusers' names to a request that gives
// diffusers' latents, `forward` with img_shapes as a tensor, the one cache chain under cache-dit's
// name, and --prompt / --negative-prompt taken as text or refused with what to give instead.
import { afterAll, describe, expect, it } from 'vitest';

import { tensor } from '@ditcache/cuda-runtime';
import { UsageError } from '@ditcache/diffusion/cli';

import family, { imgShapesFromTensor } from '../src/cli-family.js';
import { QwenImagePipeline, type QwenImageGenerateOptions } from '../src/index.js';
import { goldens, loadReferences, meta, relativeL2 } from './helpers.js';

const ref = loadReferences();
afterAll(() => {
  for (const t of Object.values(ref)) t.dispose();
});

/** The tensors of run `run` under the names of an --inputs file. */
function inputsOf(run: string): Record<string, (typeof ref)[string]> {
  const prefix = `${run}.`;
  return Object.fromEntries(
    Object.entries(ref)
      .filter(([k]) => k.startsWith(prefix) && !k.endsWith('.latents_out') && !k.endsWith('.image'))
      .map(([k, v]) => [k.slice(prefix.length), v]),
  );
}

describe('the Qwen-Image CLI family', () => {
  it('turns --inputs and the flags into a request that gives diffusers latents', () => {
    const spec = meta.runs.cfg_square;
    const request = family.request(inputsOf('cfg_square'), 'in.safetensors', {
      height: spec.height,
      width: spec.width,
      steps: spec.steps,
    }) as QwenImageGenerateOptions;
    expect(family.batchSize?.(request)).toBe(2);
    using pipe = QwenImagePipeline.fromPretrained(`${goldens}/qwen-tiny`);
    // true_cfg_scale left out: the pipeline's default of 4, the reference's.
    const { latents } = pipe.generate({ ...request, decode: false });
    expect(relativeL2(latents, ref['cfg_square.latents_out'])).toBeLessThan(1e-4);
    latents.dispose();
  });

  it('runs `forward` on the transformer forward keyword arguments, img_shapes as a tensor', () => {
    using transformer = family.loadTransformer?.(`${goldens}/qwen-tiny/transformer`, {});
    const names = ['hidden_states', 'encoder_hidden_states', 'encoder_hidden_states_mask', 'timestep', 'img_shapes'];
    using sample = transformer?.forward(Object.fromEntries(names.map((n) => [n, ref[`forward.${n}`]])), 'fwd.safetensors');
    expect(relativeL2(sample as NonNullable<typeof sample>, ref['forward.sample'])).toBeLessThan(1e-5);
  });

  it('reads img_shapes as diffusers does: the first sample, of (B, images, 3), (B, 3) or (3,)', () => {
    using batched = tensor(new Int32Array([1, 3, 5, 1, 3, 5]), [2, 1, 3], { dtype: 'int32' });
    expect(imgShapesFromTensor(batched, 'f')).toEqual([[1, 3, 5]]);
    using rows = tensor([1, 4, 2, 1, 9, 9], [2, 3]);
    expect(imgShapesFromTensor(rows, 'f')).toEqual([[1, 4, 2]]);
    using bad = tensor([1, 4], [2]);
    expect(() => imgShapesFromTensor(bad, 'f')).toThrow(/img_shapes must hold \(frames, height, width\) triples/);
  });

  it("names its one cache chain as cache-dit does, with the folder's block count", () => {
    expect(family.cacheChains?.(`${goldens}/qwen-deep`)).toEqual([{ name: 'transformer.transformer_blocks', blocks: 34 }]);
  });

  it('takes --prompt and --negative-prompt for a folder with text encoders, and refuses them mixed with embeddings or without a negative for --true-cfg-scale', () => {
    // qwen-tiny has no tokenizer/ or text_encoder/: the flags are refused naming both.
    expect(() => family.checkModel?.(`${goldens}/qwen-tiny`, { prompt: 'a cat' })).toThrow(UsageError);
    expect(() => family.checkModel?.(`${goldens}/qwen-tiny`, { negativePrompt: 'blur' })).toThrow(
      /--prompt: .*qwen-tiny has no tokenizer\/, text_encoder\/ \(text encoder\); give prompt embeddings with --inputs instead/,
    );
    expect(family.request({}, undefined, { prompt: 'a cat', negativePrompt: 'blur', trueCfgScale: 4, maxSequenceLength: 64 })).toMatchObject({
      prompt: 'a cat',
      negativePrompt: 'blur',
      promptEmbeds: undefined,
      trueCfgScale: 4,
      maxSequenceLength: 64,
    });
    expect(family.batchSize?.(family.request({}, undefined, { prompt: 'a cat' }))).toBe(1);
    expect(() => family.request(inputsOf('plain_wide'), 'in.safetensors', { prompt: 'a cat' })).toThrow(
      /--prompt and the prompt embeddings of --inputs in.safetensors exclude each other/,
    );
    expect(() => family.request(inputsOf('cfg_square'), 'in.safetensors', { negativePrompt: 'blur' })).toThrow(
      /--negative-prompt and the negative embeddings of --inputs in.safetensors exclude each other/,
    );
    expect(() => family.request({}, undefined, {})).toThrow(/--prompt or --inputs is required/);
    expect(() => family.request({ latents_in: ref['cfg_square.latents_in'] }, 'in.safetensors', {})).toThrow(
      /has no tensor 'prompt_embeds' \(it has: latents_in\)/,
    );
    expect(() => family.request(inputsOf('plain_wide'), 'in.safetensors', { trueCfgScale: 4 })).toThrow(
      /--true-cfg-scale 4 needs --negative-prompt, or negative_prompt_embeds \(and negative_prompt_embeds_mask\) in --inputs in.safetensors/,
    );
    expect(() => family.request({}, undefined, { prompt: 'a cat', trueCfgScale: 4 })).toThrow(/--true-cfg-scale 4 needs --negative-prompt/);
  });
});
