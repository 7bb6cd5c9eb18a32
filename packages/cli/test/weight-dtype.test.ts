// weightDtype 'stored' on bf16 checkpoints, as real ones ship: the weights stay bf16 and every
// family generates the same latents bit for bit as with the weights widened to float32 at load;
// `ditcache generate --weight-dtype stored` runs the same way. (FLUX: test/weight-dtype.test.ts of
// @ditcache/adapter-flux.)
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { HiDreamPipeline } from '@ditcache/adapter-hidream';
import { WanPipeline, type WanTransformerBlock } from '@ditcache/adapter-wan';
import { loadSafetensors, saveSafetensors, type Tensor } from '@ditcache/cuda-runtime';

const root = new URL('../../../', import.meta.url).pathname;
const bin = join(root, 'packages/cli/dist/cli.js');
const work = mkdtempSync(join(tmpdir(), 'ditcache-weight-dtype-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** A copy of the model folder `source` whose component weights are stored as bfloat16. */
function bf16Copy(source: string): string {
  const copy = join(work, source.split('/').filter(Boolean).pop() as string);
  cpSync(source, copy, { recursive: true });
  for (const component of readdirSync(copy).filter((c) => statSync(join(copy, c)).isDirectory())) {
    for (const file of readdirSync(join(copy, component)).filter((f) => f.endsWith('.safetensors'))) {
      const tensors = loadSafetensors(join(copy, component, file));
      saveSafetensors(join(copy, component, file), Object.fromEntries(Object.entries(tensors).map(([name, t]) => [name, t.cast('bfloat16')])));
    }
  }
  return copy;
}

const bytes = (t: Tensor): Buffer => Buffer.from(t.toBytes());

describe("weightDtype 'stored' on bf16 checkpoints", () => {
  it('Wan 2.2 (two experts): bf16 weights, the latents of the widened ones; and the same from ditcache generate --weight-dtype stored', () => {
    const model = bf16Copy(join(root, 'testdata/goldens/wan-tiny/wan22'));
    const m = JSON.parse(readFileSync(join(model, 'meta.json'), 'utf-8')) as Record<string, number>;
    const ref = loadSafetensors(join(model, 'pipeline.safetensors'));
    const request = {
      promptEmbeds: ref.prompt_embeds,
      negativePromptEmbeds: ref.negative_prompt_embeds,
      latents: ref.latents_in,
      height: m.height,
      width: m.width,
      numFrames: m.num_frames,
      numInferenceSteps: 4,
      guidanceScale: m.guidance_scale,
      guidanceScale2: m.guidance_scale_2,
      decode: false,
    };
    using widened = WanPipeline.fromPretrained(model);
    using stored = WanPipeline.fromPretrained(model, { weightDtype: 'stored' });
    expect([widened.transformer2!.blocks, stored.transformer2!.blocks].map((b) => (b[0] as WanTransformerBlock).attn1.toQ.weight.dtype)).toEqual([
      'float32',
      'bfloat16',
    ]);
    using a = widened.generate(request).latents;
    using b = stored.generate(request).latents;
    expect(Buffer.compare(bytes(a), bytes(b))).toBe(0);

    const out = join(work, 'wan-stored.safetensors');
    const flags = [
      '--height',
      String(m.height),
      '--width',
      String(m.width),
      '--frames',
      String(m.num_frames),
      '--steps',
      '4',
      '--guidance',
      String(m.guidance_scale),
      '--guidance-2',
      String(m.guidance_scale_2),
    ];
    const r = spawnSync(
      process.execPath,
      [bin, 'generate', '--model', model, '--inputs', join(model, 'pipeline.safetensors'), ...flags, '--weight-dtype', 'stored', '--save-latents', out],
      { encoding: 'utf-8' },
    );
    expect(r.status, r.stderr).toBe(0);
    expect(Buffer.compare(bytes(loadSafetensors(out).latents_out), bytes(b))).toBe(0);
  });

  it('HiDream: bf16 weights, the latents of the widened ones', () => {
    const model = bf16Copy(join(root, 'testdata/goldens/hidream-tiny'));
    const m = JSON.parse(readFileSync(join(model, 'meta.json'), 'utf-8')) as Record<string, number>;
    const ref = loadSafetensors(join(model, 'pipeline.safetensors'));
    const request = {
      promptEmbedsT5: ref.prompt_embeds_t5,
      promptEmbedsLlama3: ref.prompt_embeds_llama3,
      pooledPromptEmbeds: ref.pooled_prompt_embeds,
      negativePromptEmbedsT5: ref.negative_prompt_embeds_t5,
      negativePromptEmbedsLlama3: ref.negative_prompt_embeds_llama3,
      negativePooledPromptEmbeds: ref.negative_pooled_prompt_embeds,
      latents: ref.latents_in,
      height: m.height,
      width: m.width,
      numInferenceSteps: 4,
      guidanceScale: m.guidance_scale,
      defaultSampleSize: m['pipe.default_sample_size'],
      decode: false,
    };
    using widened = HiDreamPipeline.fromPretrained(model);
    using stored = HiDreamPipeline.fromPretrained(model, { weightDtype: 'stored' });
    expect([widened, stored].map((p) => p.transformer.xEmbedder.weight.dtype)).toEqual(['float32', 'bfloat16']);
    using a = widened.generate(request).latents;
    using b = stored.generate(request).latents;
    expect(Buffer.compare(bytes(a), bytes(b))).toBe(0);
  });
});
