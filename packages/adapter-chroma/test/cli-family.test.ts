// The CLI family as `ditcache` uses it: --inputs under the pipeline's __call__ names to diffusers'
// latents, `forward` on the transformer's keyword arguments, the cache contexts named as cache-dit
// names them, and bad input refused with what to give instead. The built bin on these goldens is
// tested in packages/cli (test/chroma.test.ts), which builds after the adapters.
import { readFileSync } from 'node:fs';

import { afterAll, describe, expect, it } from 'vitest';

import { loadSafetensors } from '@ditcache/cuda-runtime';
import { UsageError } from '@ditcache/diffusion/cli';

import family from '../src/cli-family.js';
import { ChromaPipeline, type ChromaGenerateOptions } from '../src/index.js';
import { goldens, relativeL2 } from './helpers.js';

const set = `${goldens}/chroma-tiny`;
const meta = JSON.parse(readFileSync(`${set}/meta.json`, 'utf-8')) as Record<string, number>;
const ref = loadSafetensors(`${set}/pipeline.safetensors`);
const forwardRef = loadSafetensors(`${set}/transformer_forward.safetensors`);
afterAll(() => {
  for (const t of [...Object.values(ref), ...Object.values(forwardRef)]) t.dispose();
});

describe('the Chroma CLI family', () => {
  it('turns --inputs and --guidance into a request that gives diffusers latents', () => {
    const request = family.request(ref, 'in.safetensors', {
      height: meta.height,
      width: meta.width,
      steps: meta.num_inference_steps,
      guidance: meta.guidance_scale,
    });
    expect(family.batchSize?.(request)).toBe(1);
    using pipe = ChromaPipeline.fromPretrained(set);
    const { latents } = pipe.generate({ ...(request as ChromaGenerateOptions), decode: false });
    expect(relativeL2(latents, ref.latents_out)).toBeLessThan(1e-4);
    latents.dispose();
  });

  it("runs `forward` on the transformer's keyword arguments, attention_mask included", () => {
    using transformer = family.loadTransformer?.(`${set}/transformer`, {});
    using sample = transformer?.forward(forwardRef, 'fwd.safetensors');
    expect(relativeL2(sample as NonNullable<typeof sample>, forwardRef.sample)).toBeLessThan(1e-5);
  });

  it('names its two cache contexts as cache-dit does, with the folder block counts', () => {
    expect(family.cacheChains?.(set)).toEqual([
      { name: 'transformer.transformer_blocks', blocks: 4 },
      { name: 'transformer.single_transformer_blocks', blocks: 5 },
    ]);
  });

  it('refuses what cannot run, saying what to give instead', () => {
    expect(() => family.checkModel?.(set, { prompt: 'a cat' })).toThrow(UsageError);
    expect(() => family.checkModel?.(set, { prompt: 'a cat' })).toThrow(/--prompt: .* has no tokenizer\/, text_encoder\/ .* give prompt embeddings and masks/);
    expect(() => family.request({}, undefined, {})).toThrow(/--prompt or --inputs is required/);
    expect(() => family.request({ prompt_embeds: ref.prompt_embeds }, 'in.safetensors', {})).toThrow(
      /has no tensor 'prompt_attention_mask' \(it has: prompt_embeds\)/,
    );
    expect(() => family.request(ref, 'in.safetensors', { prompt: 'a cat' })).toThrow(
      /--prompt and the prompt embeddings of --inputs in.safetensors exclude each other/,
    );
    expect(() => family.request(ref, 'in.safetensors', { maxSequenceLength: 600 })).toThrow(/at most 512/);
  });
});
