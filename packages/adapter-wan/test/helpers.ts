// What this package's tests share: where the goldens are, and the loading of a cache policy's reference traces.
import { readFileSync } from 'node:fs';

import { afterAll } from 'vitest';

import { loadSafetensors, type Tensor } from '@ditcache/cuda-runtime';

import { WanPipeline } from '../src/index.js';

export const goldens = new URL('../../../testdata/goldens/', import.meta.url).pathname;

export { relativeL2, relativeL2Values } from '@ditcache/cuda-runtime';

/** This package's own reference data (tools/make_i2v_references.py wrote it; goldens/README.md describes it). */
export const localGoldens = new URL('./goldens/', import.meta.url).pathname;

/**
 * A cache policy's reference traces on wan-tiny (`cache_traces_<kind>.json` / `.safetensors`, written
 * by tools/cache-references-<kind>/), the golden's inputs and pipeline, and `latentsOf()`: the
 * golden run's final latents under whatever cache is enabled. Call it in a describe: it frees
 * what it loaded after that describe's tests.
 */
export function wanTinyTraces<References>(kind: string) {
  const meta = JSON.parse(readFileSync(`${goldens}/wan-tiny/meta.json`, 'utf-8')) as Record<string, number>;
  const references = JSON.parse(readFileSync(`${localGoldens}/wan-tiny/cache_traces_${kind}.json`, 'utf-8')) as References;
  const ref = loadSafetensors(`${goldens}/wan-tiny/pipeline.safetensors`);
  const traces = loadSafetensors(`${localGoldens}/wan-tiny/cache_traces_${kind}.safetensors`);
  const pipe = WanPipeline.fromPretrained(`${goldens}/wan-tiny`);
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
      decode: false,
    }).latents;
  return { meta, references, ref, traces, pipe, latentsOf };
}
