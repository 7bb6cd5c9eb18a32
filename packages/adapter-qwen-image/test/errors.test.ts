// Bad input gets an error that names it: embeddings and masks that do not fit each other or the
// model, image sizes the packing cannot take, config flags of variants this port does not run,
// and the Qwen-Image VAE config read into the shared Wan-layout decoder.
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { zeros } from '@ditcache/cuda-runtime';
import { AutoencoderKLWanDecoder } from '@ditcache/diffusion';

import { QwenImagePipeline, QwenImageTransformer, loadQwenImageTransformerConfig } from '../src/index.js';
import { goldens, loadReferences, runRequest } from './helpers.js';

const ref = loadReferences();
const pipe = QwenImagePipeline.fromPretrained(`${goldens}/qwen-tiny`);
const tempDirs: string[] = [];
afterAll(() => {
  pipe.dispose();
  for (const t of Object.values(ref)) t.dispose();
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

/** A copy of the qwen-tiny transformer folder with `changes` in its config.json. */
function transformerWith(changes: Record<string, unknown>): string {
  const dir = mkdtempSync(join(tmpdir(), 'qwen-config-'));
  tempDirs.push(dir);
  cpSync(`${goldens}/qwen-tiny/transformer`, dir, { recursive: true });
  const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf-8'));
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...config, ...changes }));
  return dir;
}

describe('QwenImagePipeline input errors', () => {
  const request = runRequest(ref, 'cfg_square', false);

  it('a mask that does not fit its embeddings', () => {
    using mask = zeros([2, 6], { dtype: 'int32' });
    expect(() => pipe.generate({ ...request, promptEmbedsMask: mask })).toThrow(
      /promptEmbedsMask must be \(2, 7\), the batch and tokens of promptEmbeds \(2, 7, 24\), got \(2, 6\)/,
    );
    expect(() => pipe.generate({ ...request, negativePromptEmbedsMask: mask })).toThrow(/negativePromptEmbedsMask must be \(2, 5\)/);
    expect(() => pipe.generate({ ...request, negativePromptEmbeds: undefined })).toThrow(/negativePromptEmbedsMask needs negativePromptEmbeds/);
  });

  it('embeddings of the wrong width or batch', () => {
    using wide = zeros([2, 7, 23]);
    expect(() => pipe.generate({ ...request, promptEmbeds: wide })).toThrow(/promptEmbeds must be \(B, tokens, 24\), got \(2, 7, 23\)/);
    using single = zeros([1, 5, 24]);
    expect(() => pipe.generate({ ...request, negativePromptEmbeds: single, negativePromptEmbedsMask: undefined })).toThrow(
      /negativePromptEmbeds must be \(2, tokens, 24\), got \(1, 5, 24\)/,
    );
  });

  it('sizes that are not multiples of 16, latents of another size, maxSequenceLength out of range', () => {
    expect(() => pipe.generate({ ...request, height: 40 })).toThrow(/height must be a positive multiple of 16 \(2 x the VAE scale factor\), got 40/);
    expect(() => pipe.generate({ ...request, width: 64 })).toThrow(/latents must be packed \(2, 12, 16\) for this size, got \(2, 9, 16\)/);
    expect(() => pipe.generate({ ...request, maxSequenceLength: 1025 })).toThrow(/maxSequenceLength must be an integer from 1 to 1024, got 1025/);
  });

  it('keeps maxSequenceLength tokens of the embeddings, as diffusers cuts them', () => {
    const short = { ...request, maxSequenceLength: 4, numInferenceSteps: 2 };
    const a = pipe.generate(short).latents;
    using e = ref['cfg_square.prompt_embeds'].narrow(1, 0, 4);
    using m = ref['cfg_square.prompt_embeds_mask'].narrow(1, 0, 4);
    using ne = ref['cfg_square.negative_prompt_embeds'].narrow(1, 0, 4);
    using nm = ref['cfg_square.negative_prompt_embeds_mask'].narrow(1, 0, 4);
    const b = pipe.generate({
      ...request,
      numInferenceSteps: 2,
      promptEmbeds: e,
      promptEmbedsMask: m,
      negativePromptEmbeds: ne,
      negativePromptEmbedsMask: nm,
    }).latents;
    expect(Buffer.compare(Buffer.from(a.toBytes()), Buffer.from(b.toBytes()))).toBe(0);
    a.dispose();
    b.dispose();
  });
});

describe('QwenImageTransformer input and config errors', () => {
  const transformer = QwenImageTransformer.load(`${goldens}/qwen-tiny/transformer`);
  afterAll(() => transformer.dispose());
  const given = {
    hiddenStates: ref['forward.hidden_states'],
    encoderHiddenStates: ref['forward.encoder_hidden_states'],
    encoderHiddenStatesMask: ref['forward.encoder_hidden_states_mask'],
    timestep: ref['forward.timestep'],
    imgShapes: [[1, 3, 5]] as [number, number, number][],
  };

  it('a mask, img_shapes or timestep that do not fit the latents', () => {
    using mask = zeros([2, 6], { dtype: 'int32' });
    expect(() => transformer.forward({ ...given, encoderHiddenStatesMask: mask })).toThrow(
      /encoderHiddenStatesMask must be \(2, 7\) like encoderHiddenStates' batch and tokens, got \(2, 6\)/,
    );
    expect(() => transformer.forward({ ...given, imgShapes: [[1, 4, 4]] })).toThrow(/imgShapes \[\[1,4,4\]\] make 16 image tokens, but hiddenStates has 15/);
    using t = zeros([3]);
    expect(() => transformer.forward({ ...given, timestep: t })).toThrow(/timestep must be \(2,\), got \(3\)/);
  });

  it('refuses the config flags of variants it does not run, by name', () => {
    expect(() => loadQwenImageTransformerConfig(transformerWith({ zero_cond_t: true }))).toThrow(
      /'zero_cond_t' is true: Qwen-Image-Edit-2511's zero-timestep condition is not supported/,
    );
    expect(() => loadQwenImageTransformerConfig(transformerWith({ use_layer3d_rope: true }))).toThrow(/'use_layer3d_rope' is true/);
    expect(() => loadQwenImageTransformerConfig(transformerWith({ axes_dims_rope: [2, 2, 2] }))).toThrow(/axes_dims_rope sum to 6 but attention_head_dim is 8/);
  });
});

describe('the Qwen-Image VAE in the shared Wan-layout decoder', () => {
  it("reads AutoencoderKLQwenImage's config: input_channels for both ends, its latents_mean / latents_std, no declared scale factors", () => {
    using vae = AutoencoderKLWanDecoder.load(`${goldens}/qwen-tiny/vae`);
    expect(vae.config.out_channels).toBe(3);
    expect(vae.config.z_dim).toBe(4);
    expect(vae.config.latents_std).toEqual([2.8184, 1.4541, 2.3275, 2.6558]);
    expect(vae.config.scale_factor_spatial).toBeNull();
    expect(vae.scaleFactorSpatial).toBe(8);
  });
});
