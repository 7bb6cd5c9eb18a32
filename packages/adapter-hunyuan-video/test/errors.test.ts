// Bad input gets an error naming what is wrong and what is wanted: the transformer's inputs and
// config, the pipeline folder, and NaN / Inf in the pipeline's inputs (named as in --inputs).
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { memoryStats, tensor } from '@ditcache/cuda-runtime';

import { HunyuanVideoPipeline, HunyuanVideoTransformer, type HunyuanVideoTransformerInputs } from '../src/index.js';
import { goldens, references, requestOf } from './helpers.js';
import { nonFiniteFailure, withValue } from '../../../scripts/testing/non-finite.js';

const scratch = mkdtempSync(join(tmpdir(), 'ditcache-hunyuan-video-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** A copy of a golden folder with its config.json (of `component`, or the folder's own) edited. */
function editedCopy(folder: string, file: string, edit: (config: Record<string, unknown>) => void): string {
  const dir = mkdtempSync(join(scratch, 'copy-'));
  cpSync(`${goldens}/${folder}`, dir, { recursive: true });
  const path = join(dir, file);
  const config = JSON.parse(readFileSync(path, 'utf-8')) as Record<string, unknown>;
  edit(config);
  writeFileSync(path, JSON.stringify(config));
  return dir;
}

describe('HunyuanVideoTransformer input checks', () => {
  const ref = references('forward');
  const ref2 = references('forward_cfg');
  afterAll(() => {
    for (const t of [...Object.values(ref), ...Object.values(ref2)]) t.dispose();
  });
  const inputs = (extra: Partial<HunyuanVideoTransformerInputs> = {}): HunyuanVideoTransformerInputs => ({
    hiddenStates: ref.hidden_states,
    timestep: ref.timestep,
    encoderHiddenStates: ref.encoder_hidden_states,
    encoderAttentionMask: ref.encoder_attention_mask,
    pooledProjections: ref.pooled_projections,
    guidance: ref.guidance,
    ...extra,
  });

  it('names the input and the shape it needs', () => {
    using transformer = HunyuanVideoTransformer.load(`${goldens}/hv-tiny/transformer`);
    using oddWidth = ref.hidden_states.narrow(4, 0, 5);
    using shortMask = ref.encoder_attention_mask.narrow(1, 0, 6);
    using empty = tensor(new Float32Array(14), [2, 7]);
    using narrowPooled = ref.pooled_projections.narrow(1, 0, 9);
    using oneTimestep = ref.timestep.narrow(0, 0, 1);
    const before = memoryStats();
    expect(() => transformer.forward(inputs({ hiddenStates: ref.encoder_hidden_states }))).toThrow(
      /hiddenStates must be \(B, 4, frames, height, width\), got \(2, 7, 12\)/,
    );
    expect(() => transformer.forward(inputs({ hiddenStates: oddWidth }))).toThrow(/multiples of \(1, 2, 2\), got \(2, 4, 3, 4, 5\)/);
    expect(() => transformer.forward(inputs({ encoderAttentionMask: shortMask }))).toThrow(/encoderAttentionMask must be \(2, 7\), got \(2, 6\)/);
    expect(() => transformer.forward(inputs({ encoderAttentionMask: empty }))).toThrow(/encoderAttentionMask row 0 has no token \(all zeros\)/);
    expect(() => transformer.forward(inputs({ pooledProjections: narrowPooled }))).toThrow(/pooledProjections must be \(2, 10\), got \(2, 9\)/);
    expect(() => transformer.forward(inputs({ guidance: undefined }))).toThrow(/has guidance embeddings \(guidance_embeds\): pass guidance/);
    expect(() => transformer.forward(inputs({ timestep: oneTimestep }))).toThrow(/timestep must be \(2,\), got \(1\)/);
    expect(memoryStats()).toEqual(before);
  });

  it('refuses guidance for a model without a guidance embedding', () => {
    using transformer = HunyuanVideoTransformer.load(`${goldens}/hv-cfg/transformer`);
    const given = {
      hiddenStates: ref2.hidden_states,
      timestep: ref2.timestep,
      encoderHiddenStates: ref2.encoder_hidden_states,
      encoderAttentionMask: ref2.encoder_attention_mask,
      pooledProjections: ref2.pooled_projections,
    };
    expect(() => transformer.forward({ ...given, guidance: ref2.timestep })).toThrow(/no guidance embeddings \(guidance_embeds is false\): omit guidance/);
  });

  it('refuses configs it cannot run, naming the key', () => {
    const imageToVideo = editedCopy('hv-tiny/transformer', 'config.json', (c) => {
      c.image_condition_type = 'token_replace';
    });
    expect(() => HunyuanVideoTransformer.load(imageToVideo)).toThrow(
      /image_condition_type "token_replace" is HunyuanVideo image-to-video, which is not ported/,
    );
    const rope = editedCopy('hv-tiny/transformer', 'config.json', (c) => {
      c.rope_axes_dim = [2, 2, 2];
    });
    expect(() => HunyuanVideoTransformer.load(rope)).toThrow(/rope_axes_dim sum to 6 but attention_head_dim is 8/);
  });
});

describe('HunyuanVideoPipeline folder and NaN checks', () => {
  const ref = references('guided');
  afterAll(() => {
    for (const t of Object.values(ref)) t.dispose();
  });

  it('refuses a folder of another pipeline class, naming it', () => {
    const other = editedCopy('hv-tiny', 'model_index.json', (c) => {
      c._class_name = 'WanPipeline';
    });
    expect(() => HunyuanVideoPipeline.fromPretrained(other)).toThrow(/describes a WanPipeline, not a HunyuanVideoPipeline/);
    expect(() => HunyuanVideoPipeline.fromPretrained(join(scratch, 'missing'))).toThrow(/no such pipeline folder/);
  });

  it('names latents_in or prompt_embeds holding NaN / Inf before the first step', () => {
    using pipe = HunyuanVideoPipeline.fromPretrained(`${goldens}/hv-tiny`);
    const request = { ...requestOf('guided', ref), decode: false };
    using latents = withValue(ref.latents_in, 5, Number.NaN);
    const first = nonFiniteFailure(pipe, { ...request, latents });
    expect([first.tensor, first.step, first.when]).toEqual(['latents_in', 0, 'before']);
    using embeds = withValue(ref.prompt_embeds, 2, Number.POSITIVE_INFINITY);
    expect(nonFiniteFailure(pipe, { ...request, promptEmbeds: embeds }).tensor).toBe('prompt_embeds');
  });
});
