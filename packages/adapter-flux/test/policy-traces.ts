// The loading every cache-<policy> test shares: a policy's reference traces on the tiny golden, its
// inputs and pipeline, and the golden run's latents. Apart from helpers.ts because it imports the
// pipeline from the sources, which a test of the built package must not load twice.
import { readFileSync } from 'node:fs';

import { afterAll } from 'vitest';

import { loadSafetensors, type Tensor } from '@ditcache/cuda-runtime';

import { FluxPipeline, type FluxGenerateOptions } from '../src/index.js';
import { goldens, localGoldens } from './helpers.js';

/**
 * A cache policy's reference traces on flux-tiny (`cache_traces_<kind>.json` / `.safetensors`, written
 * by tools/cache-references-<kind>/), the golden's inputs and pipeline, and `latentsOf()`: the
 * golden run's final latents under whatever cache is enabled (with `extra` generate options). Call it in a describe: it frees
 * what it loaded after that describe's tests.
 */
export function fluxTinyTraces<References>(kind: string) {
  const meta = JSON.parse(readFileSync(`${goldens}/flux-tiny/meta.json`, 'utf-8')) as Record<string, number>;
  const references = JSON.parse(readFileSync(`${localGoldens}/flux-tiny/cache_traces_${kind}.json`, 'utf-8')) as References;
  const ref = loadSafetensors(`${goldens}/flux-tiny/pipeline.safetensors`);
  const traces = loadSafetensors(`${localGoldens}/flux-tiny/cache_traces_${kind}.safetensors`);
  const pipe = FluxPipeline.fromPretrained(`${goldens}/flux-tiny`);
  afterAll(() => {
    pipe.dispose();
    for (const t of [...Object.values(ref), ...Object.values(traces)]) t.dispose();
  });
  // `extra`: what a test adds to the golden run, e.g. true CFG's scale and negative embeddings.
  const latentsOf = (extra: Partial<FluxGenerateOptions> = {}): Tensor =>
    pipe.generate({
      promptEmbeds: ref.prompt_embeds,
      pooledPromptEmbeds: ref.pooled_prompt_embeds,
      latents: ref.latents_in,
      height: meta.height,
      width: meta.width,
      numInferenceSteps: meta.num_inference_steps,
      guidanceScale: meta.guidance_scale,
      ...extra,
      decode: false,
    }).latents;
  return { meta, references, ref, traces, pipe, latentsOf };
}
