// The CLI family as `ditcache` uses it: --inputs under HunyuanVideoPipeline's keyword names and
// the flags to a request that gives diffusers' latents, `forward` on the transformer's keyword
// arguments, the two cache contexts under cache-dit's names, and bad --inputs refused by name.
import { afterAll, describe, expect, it } from 'vitest';

import type { Tensor } from '@ditcache/cuda-runtime';
import { UsageError } from '@ditcache/diffusion/cli';

import family from '../src/cli-family.js';
import { HunyuanVideoPipeline, type HunyuanVideoGenerateOptions } from '../src/index.js';
import { goldens, meta, references, relativeL2 } from './helpers.js';

/** A run's tensors under the names of an --inputs file (latents_in and the pipeline's keyword names). */
function inputsOf(run: string): Record<string, Tensor> {
  const ref = references(run);
  ref.latents_out.dispose();
  ref.video.dispose();
  delete ref.latents_out;
  delete ref.video;
  return ref;
}

describe('the HunyuanVideo CLI family', () => {
  const cfg = inputsOf('guided_cfg');
  const forward = references('forward');
  const expected = references('guided_cfg');
  afterAll(() => {
    for (const t of [...Object.values(cfg), ...Object.values(forward), ...Object.values(expected)]) t.dispose();
  });

  it('declares the text prompt flags, --frames, --true-cfg-scale and --fps, and writes videos', () => {
    expect(family.options?.map((o) => o.flag)).toEqual(['--prompt', '--negative-prompt', '--max-sequence-length', '--frames', '--true-cfg-scale', '--fps']);
    expect(family.outputFormats).toEqual(['.webp', '.gif']);
  });

  it('turns --inputs and the flags (--guidance embedded, --true-cfg-scale) into a request that gives diffusers latents', () => {
    const spec = meta.runs.guided_cfg;
    const request = family.request(cfg, 'in.safetensors', {
      height: spec.height,
      width: spec.width,
      frames: spec.num_frames,
      steps: spec.steps,
      guidance: spec.guidance_scale,
      trueCfgScale: spec.true_cfg_scale,
    }) as HunyuanVideoGenerateOptions;
    expect(family.batchSize?.(request)).toBe(2);
    using pipe = HunyuanVideoPipeline.fromPretrained(`${goldens}/hv-tiny`);
    const { latents } = pipe.generate({ ...request, decode: false });
    expect(relativeL2(latents, expected.latents_out)).toBeLessThan(1e-4);
    latents.dispose();
  });

  it('runs `forward` on the transformer keyword arguments (guidance included)', () => {
    using transformer = family.loadTransformer?.(`${goldens}/hv-tiny/transformer`, {});
    const names = ['hidden_states', 'timestep', 'encoder_hidden_states', 'encoder_attention_mask', 'pooled_projections', 'guidance'];
    using sample = transformer?.forward(Object.fromEntries(names.map((n) => [n, forward[n]])), 'fwd.safetensors');
    expect(relativeL2(sample as Tensor, forward.sample)).toBeLessThan(1e-5);
  });

  it("names its two cache contexts as cache-dit does, with the folder's block counts", () => {
    expect(family.cacheChains?.(`${goldens}/hv-tiny`)).toEqual([
      { name: 'transformer.transformer_blocks', blocks: 3 },
      { name: 'transformer.single_transformer_blocks', blocks: 4 },
    ]);
  });

  it('refuses --inputs without the prompt triple, a partial negative triple, --true-cfg-scale without negatives (naming the tensors), a prompt given twice, and --frames not 4k + 1', () => {
    const { prompt_attention_mask: _mask, ...noMask } = cfg;
    expect(() => family.request(noMask, 'in.safetensors', {})).toThrow(UsageError);
    expect(() => family.request(noMask, 'in.safetensors', {})).toThrow(/has no tensor 'prompt_attention_mask'/);
    const { negative_prompt_attention_mask: _neg, ...partial } = cfg;
    expect(() => family.request(partial, 'in.safetensors', {})).not.toThrow();
    expect(() => family.request(partial, 'in.safetensors', { trueCfgScale: 3 })).toThrow(
      /has negative_prompt_embeds, negative_pooled_prompt_embeds but not negative_prompt_attention_mask/,
    );
    const { negative_prompt_embeds: _a, negative_pooled_prompt_embeds: _b, negative_prompt_attention_mask: _c, ...positive } = cfg;
    expect(() => family.request(positive, 'in.safetensors', { trueCfgScale: 3 })).toThrow(
      /--true-cfg-scale needs --negative-prompt, or negative_prompt_embeds/,
    );
    expect(() => family.request(positive, 'in.safetensors', { trueCfgScale: 3, negativePrompt: 'blur' })).not.toThrow();
    expect(() => family.request(cfg, 'in.safetensors', { negativePrompt: 'blur' })).toThrow(
      /--negative-prompt and the negative embeddings of --inputs in.safetensors/,
    );
    expect(() => family.request(positive, 'in.safetensors', { maxSequenceLength: 64 })).toThrow(
      /--max-sequence-length applies to --prompt and --negative-prompt only/,
    );
    expect(() => family.request({}, undefined, {})).toThrow(/--prompt or --inputs is required/);
    expect(() => family.request(cfg, 'in.safetensors', { frames: 8 })).toThrow(/--frames must be 4k \+ 1 \(e\.g\. 129, 61, 9\), got 8/);
  });
});
