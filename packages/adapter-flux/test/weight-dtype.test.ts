// A bfloat16 checkpoint, as FLUX.1 ships, loaded with weightDtype 'stored': the weights stay
// bfloat16 views of the mapped files instead of float32 copies, and the pipeline's output is the
// same bit for bit as with the weights widened at load. Computing in bfloat16 (dtype) from it
// maps the weights too, and equals bfloat16 compute from the float32 checkpoint.
import { cpSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { loadSafetensors, memoryStats, saveSafetensors } from '@ditcache/cuda-runtime';

import { FluxPipeline } from '../src/index.js';
import { goldens } from './helpers.js';

const source = `${goldens}/flux-tiny`;
/** flux-tiny with the transformer's and the VAE's weights stored as bfloat16. */
const folder = mkdtempSync(join(tmpdir(), 'ditcache-flux-bf16-'));
cpSync(source, folder, { recursive: true });
for (const component of ['transformer', 'vae']) {
  for (const file of readdirSync(join(folder, component)).filter((f) => f.endsWith('.safetensors'))) {
    const tensors = loadSafetensors(join(source, component, file));
    saveSafetensors(join(folder, component, file), Object.fromEntries(Object.entries(tensors).map(([name, t]) => [name, t.cast('bfloat16')])));
    for (const t of Object.values(tensors)) t.dispose();
  }
}
afterAll(() => rmSync(folder, { recursive: true, force: true }));

describe("FluxPipeline with weightDtype 'stored'", () => {
  it('keeps a bf16 checkpoint bf16 in memory, mapped, and generates what the widened weights generate', () => {
    const meta = JSON.parse(readFileSync(`${source}/meta.json`, 'utf-8')) as Record<string, number>;
    const ref = loadSafetensors(`${source}/pipeline.safetensors`);
    const request = {
      promptEmbeds: ref.prompt_embeds,
      pooledPromptEmbeds: ref.pooled_prompt_embeds,
      latents: ref.latents_in,
      height: meta.height,
      width: meta.width,
      numInferenceSteps: meta.num_inference_steps,
      guidanceScale: meta.guidance_scale,
    };
    const before = memoryStats();
    const widened = FluxPipeline.fromPretrained(folder);
    const widenedBytes = memoryStats().hostBytes - before.hostBytes;
    const stored = FluxPipeline.fromPretrained(folder, { weightDtype: 'stored' });
    const storedBytes = memoryStats().hostBytes - before.hostBytes - widenedBytes;
    // Views of the mapped bf16 files, where the widened load holds float32 copies.
    expect(storedBytes).toBe(0);
    expect(widenedBytes).toBeGreaterThan(100_000);

    const a = widened.generate(request);
    const b = stored.generate(request);
    expect(b.latents.dtype).toBe('float32');
    expect(Buffer.compare(Buffer.from(a.latents.toBytes()), Buffer.from(b.latents.toBytes()))).toBe(0);
    expect(Buffer.compare(Buffer.from(a.image!.toBytes()), Buffer.from(b.image!.toBytes()))).toBe(0);
    for (const t of [a.latents, a.image!, b.latents, b.image!, ...Object.values(ref)]) t.dispose();
    widened.dispose();
    stored.dispose();
    expect(memoryStats().hostBytes).toBe(before.hostBytes);
  });
});

describe("FluxPipeline with dtype 'bfloat16' on a bf16 checkpoint", () => {
  it('computes straight from the mapped files, as from the float32 checkpoint rounded at load', () => {
    const meta = JSON.parse(readFileSync(`${source}/meta.json`, 'utf-8')) as Record<string, number>;
    const ref = loadSafetensors(`${source}/pipeline.safetensors`);
    const request = {
      promptEmbeds: ref.prompt_embeds,
      pooledPromptEmbeds: ref.pooled_prompt_embeds,
      latents: ref.latents_in,
      height: meta.height,
      width: meta.width,
      numInferenceSteps: meta.num_inference_steps,
    };
    const before = memoryStats();
    const mapped = FluxPipeline.fromPretrained(folder, { dtype: 'bfloat16' });
    expect(memoryStats().hostBytes).toBe(before.hostBytes);
    const rounded = FluxPipeline.fromPretrained(source, { dtype: 'bfloat16' });
    const a = mapped.generate(request);
    const b = rounded.generate(request);
    expect(a.latents.dtype).toBe('bfloat16');
    expect(Buffer.compare(Buffer.from(a.latents.toBytes()), Buffer.from(b.latents.toBytes()))).toBe(0);
    expect(Buffer.compare(Buffer.from(a.image!.toBytes()), Buffer.from(b.image!.toBytes()))).toBe(0);
    for (const t of [a.latents, a.image!, b.latents, b.image!, ...Object.values(ref)]) t.dispose();
    mapped.dispose();
    rounded.dispose();
    expect(memoryStats().hostBytes).toBe(before.hostBytes);
  });
});
