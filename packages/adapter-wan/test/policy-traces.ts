// The loading every cache-<policy> test shares: a policy's reference traces on the tiny golden, its
// inputs and pipeline, and the golden run's latents. Apart from helpers.ts because it imports the
// pipeline from the sources, which a test of the built package must not load twice.
import { readFileSync } from 'node:fs';

import { afterAll } from 'vitest';

import { loadSafetensors, type Tensor } from '@ditcache/cuda-runtime';

import { WanPipeline } from '../src/index.js';
import { goldens, localGoldens } from './helpers.js';

/**
 * A cache policy's reference traces on a tiny Wan golden set (`set`: wan-tiny, or its Wan 2.2 set
 * wan-tiny/wan22; `cache_traces_<kind>.json` / `.safetensors`, written by
 * tools/cache-references-<kind>/), the golden's inputs and pipeline, and `latentsOf()`: the
 * golden run's final latents under whatever cache is enabled. Call it in a describe: it frees
 * what it loaded after that describe's tests.
 */
export function wanTinyTraces<References>(kind: string, set = 'wan-tiny') {
  const meta = JSON.parse(readFileSync(`${goldens}/${set}/meta.json`, 'utf-8')) as Record<string, number>;
  const references = JSON.parse(readFileSync(`${localGoldens}/${set}/cache_traces_${kind}.json`, 'utf-8')) as References;
  const ref = loadSafetensors(`${goldens}/${set}/pipeline.safetensors`);
  const traces = loadSafetensors(`${localGoldens}/${set}/cache_traces_${kind}.safetensors`);
  const pipe = WanPipeline.fromPretrained(`${goldens}/${set}`);
  afterAll(() => {
    pipe.dispose();
    for (const t of [...Object.values(ref), ...Object.values(traces)]) t.dispose();
  });
  const latentsOf = (): Tensor =>
    pipe.generate({
      promptEmbeds: ref.prompt_embeds,
      negativePromptEmbeds: ref.negative_prompt_embeds,
      latents: ref.latents_in,
      height: meta.height,
      width: meta.width,
      numFrames: meta.num_frames,
      numInferenceSteps: meta.num_inference_steps,
      guidanceScale: meta.guidance_scale,
      // Wan 2.2's second expert has its own scale (absent from a Wan 2.1 set's meta).
      guidanceScale2: meta.guidance_scale_2,
      decode: false,
    }).latents;
  return { meta, references, ref, traces, pipe, latentsOf };
}
