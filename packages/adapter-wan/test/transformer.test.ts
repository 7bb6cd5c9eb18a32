import { afterAll, describe, expect, it } from 'vitest';

import { loadSafetensors, memoryStats, tidy, type Tensor } from '@ditcache/cuda-runtime';

import { WanTransformer, wanRotaryAxes, type WanBlock } from '../src/index.js';
import { goldens, localGoldens, relativeL2 } from './helpers.js';

/** Wraps blocks so that block i's output is copied out as `blocks.{i}.out0`, and block 0's inputs as `blocks.0.in*`. */
function recording(blocks: WanBlock[], into: Map<string, Tensor>): WanBlock[] {
  const copy = (name: string, t: Tensor): void => void into.set(name, t.clone().keep());
  return blocks.map((block, i) => ({
    forward(hidden, encoder, temb, rotary, image) {
      if (i === 0) {
        copy('blocks.0.in0', hidden);
        copy('blocks.0.in1', encoder);
        copy('blocks.0.in2', temb);
        copy('blocks.0.in3.0', rotary.cos);
        copy('blocks.0.in3.1', rotary.sin);
      }
      const out = block.forward(hidden, encoder, temb, rotary, image);
      copy(`blocks.${i}.out0`, out);
      return out;
    },
  }));
}

describe('WanTransformer on wan-tiny', () => {
  const ref = loadSafetensors(`${goldens}/wan-tiny/transformer_forward.safetensors`);
  const dir = `${goldens}/wan-tiny/transformer`;
  const inputs = { hiddenStates: ref.hidden_states, timestep: ref.timestep, encoderHiddenStates: ref.encoder_hidden_states };
  afterAll(() => {
    for (const t of Object.values(ref)) t.dispose();
  });

  it('matches diffusers in every block, in what block 0 is given, and in the output', () => {
    using transformer = WanTransformer.load(dir);
    const outputs = new Map<string, Tensor>();
    transformer.blocks = recording(transformer.blocks, outputs);
    const before = memoryStats();
    const sample = transformer.forward(inputs);
    const errors: Record<string, number> = { sample: relativeL2(sample, ref.sample) };
    for (const [name, t] of outputs) errors[name] = relativeL2(t, ref[name]);
    for (const [name, err] of Object.entries(errors)) expect(err, name).toBeLessThan(1e-5);
    expect(outputs.size).toBe(5 + transformer.config.num_layers);
    sample.dispose();
    for (const t of outputs.values()) t.dispose();
    expect(memoryStats()).toEqual(before);
  });

  it('matches diffusers piece by piece: rotary tables, patch embedding, condition embedder, output norm and projection', () => {
    using transformer = WanTransformer.load(dir);
    expect(wanRotaryAxes(transformer.config.attention_head_dim)).toEqual([4, 4, 4]);
    const before = memoryStats();
    const errors = tidy(() => {
      const rotary = transformer.rotaryEmbedding([3, 2, 3]);
      const conditions = transformer.conditionEmbedder.forward(ref.timestep.toFloat32Array(), ref.encoder_hidden_states);
      const last = ref[`blocks.${transformer.config.num_layers - 1}.out0`];
      return {
        'rope.out0': relativeL2(rotary.cos, ref['rope.out0']),
        'rope.out1': relativeL2(rotary.sin, ref['rope.out1']),
        'patch_embedding.out0': relativeL2(transformer.patchEmbedding.forward(ref.hidden_states), ref['patch_embedding.out0']),
        'condition_embedder.out0': relativeL2(conditions.temb, ref['condition_embedder.out0']),
        'condition_embedder.out1': relativeL2(conditions.timestepProj.reshape(2, -1), ref['condition_embedder.out1']),
        'condition_embedder.out2': relativeL2(conditions.text, ref['condition_embedder.out2']),
        'norm_out.out0': relativeL2(transformer.normOut.forward(last), ref['norm_out.out0']),
        'proj_out.out0': relativeL2(transformer.outputProjection(last, ref['condition_embedder.out0']), ref['proj_out.out0']),
        unpatchify: relativeL2(transformer.unpatchify(ref['proj_out.out0'], [3, 2, 3]), ref.sample),
      };
    });
    for (const [name, err] of Object.entries(errors)) expect(err, name).toBeLessThan(1e-5);
    expect([errors['rope.out0'], errors['rope.out1'], errors.unpatchify]).toEqual([0, 0, 0]);
    expect(memoryStats()).toEqual(before);
  });
});

describe.each(['wan-i2v-tiny', 'wan-flf2v-tiny'])('WanTransformer on %s (image-to-video, references from tools/make_i2v_references.py)', (set) => {
  const ref = loadSafetensors(`${localGoldens}/${set}/transformer_forward.safetensors`);
  const dir = `${localGoldens}/${set}/transformer`;
  const inputs = {
    hiddenStates: ref.hidden_states,
    timestep: ref.timestep,
    encoderHiddenStates: ref.encoder_hidden_states,
    encoderHiddenStatesImage: ref.encoder_hidden_states_image,
  };
  afterAll(() => {
    for (const t of Object.values(ref)) t.dispose();
  });

  it('matches diffusers in the image embedding, every block and the output', () => {
    using transformer = WanTransformer.load(dir);
    const outputs = new Map<string, Tensor>();
    transformer.blocks = recording(transformer.blocks, outputs);
    const before = memoryStats();
    const sample = transformer.forward(inputs);
    const image = tidy(() =>
      transformer.conditionEmbedder.forward(ref.timestep.toFloat32Array(), ref.encoder_hidden_states, ref.encoder_hidden_states_image).image!.keep(),
    );
    const errors: Record<string, number> = {
      sample: relativeL2(sample, ref.sample),
      'condition_embedder.out3': relativeL2(image, ref['condition_embedder.out3']),
    };
    for (let i = 0; i < transformer.config.num_layers; ++i) errors[`blocks.${i}.out0`] = relativeL2(outputs.get(`blocks.${i}.out0`)!, ref[`blocks.${i}.out0`]);
    for (const [name, err] of Object.entries(errors)) expect(err, name).toBeLessThan(1e-5);
    expect(image.shape).toEqual(ref['condition_embedder.out3'].shape);
    for (const t of [sample, image, ...outputs.values()]) t.dispose();
    expect(memoryStats()).toEqual(before);
  });

  it('names what is wrong with the image embeddings', () => {
    using transformer = WanTransformer.load(dir);
    const { encoderHiddenStatesImage: image, ...textOnly } = inputs;
    expect(() => transformer.forward(textOnly)).toThrow(
      /encoderHiddenStatesImage \(the CLIP image embeddings\) is required: this is an image-to-video model \(image_dim 20\)/,
    );
    using half = image.slice(0, 0, image.shape[0] / 2);
    expect(() => transformer.forward({ ...textOnly, encoderHiddenStatesImage: half })).toThrow(
      /encoderHiddenStatesImage must be \(\d, .*, 20\).*got \(\d, 9, 20\)/,
    );
    using t2v = WanTransformer.load(`${goldens}/wan-tiny/transformer`);
    expect(() =>
      t2v.forward({
        hiddenStates: ref.hidden_states.slice(1, 0, 16),
        timestep: ref.timestep,
        encoderHiddenStates: ref.encoder_hidden_states,
        encoderHiddenStatesImage: image,
      }),
    ).toThrow(/encoderHiddenStatesImage given, but this is a text-to-video model/);
  });
});
