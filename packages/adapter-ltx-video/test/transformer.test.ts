import { afterAll, describe, expect, it } from 'vitest';

import { loadSafetensors, memoryStats, tidy, type Tensor } from '@ditcache/cuda-runtime';

import { LtxVideoTransformer, ltxRotaryEmbedding, type LtxBlock } from '../src/index.js';
import ropeCases from './goldens/rope_tables.json' with { type: 'json' };
import { forwardInputs, goldens, relativeL2 } from './helpers.js';

/** Wraps blocks so that block i's output is copied out as `transformer_blocks.{i}.out0`. */
function recording(blocks: LtxBlock[], into: Map<string, Tensor>): LtxBlock[] {
  return blocks.map((block, i) => ({
    forward(hidden, encoder, temb, rotary, maskBias) {
      const out = block.forward(hidden, encoder, temb, rotary, maskBias);
      into.set(`transformer_blocks.${i}.out0`, out.clone().keep());
      return out;
    },
  }));
}

describe.each(['ltx-tiny', 'ltx-095-tiny'])('LtxVideoTransformer on %s', (set) => {
  const ref = loadSafetensors(`${goldens}/${set}/transformer_forward.safetensors`);
  const dir = `${goldens}/${set}/transformer`;
  afterAll(() => {
    for (const t of Object.values(ref)) t.dispose();
  });

  it('matches diffusers in every block and in the output', () => {
    using transformer = LtxVideoTransformer.load(dir);
    const outputs = new Map<string, Tensor>();
    transformer.transformerBlocks = recording(transformer.transformerBlocks, outputs);
    const before = memoryStats();
    const sample = transformer.forward(forwardInputs(ref));
    const errors: Record<string, number> = { sample: relativeL2(sample, ref.sample) };
    for (const [name, t] of outputs) errors[name] = relativeL2(t, ref[name]);
    for (const [name, err] of Object.entries(errors)) expect(err, name).toBeLessThan(1e-5);
    expect(outputs.size).toBe(transformer.config.num_layers);
    sample.dispose();
    for (const t of outputs.values()) t.dispose();
    expect(memoryStats()).toEqual(before);
  });

  it('matches diffusers piece by piece: rotary tables, time embedding, caption projection, output norm and projection', () => {
    using transformer = LtxVideoTransformer.load(dir);
    const inputs = forwardInputs(ref);
    const before = memoryStats();
    const errors = tidy(() => {
      const rotary = transformer.ropeTables([inputs.numFrames, inputs.height, inputs.width], inputs.ropeInterpolationScale);
      const time = transformer.timeEmbed.forward(ref.timestep.toFloat32Array(), 'float32');
      const last = ref[`transformer_blocks.${transformer.config.num_layers - 1}.out0`];
      return {
        'rope.out0': relativeL2(rotary.cos.expand([...ref['rope.out0'].shape]), ref['rope.out0']),
        'rope.out1': relativeL2(rotary.sin.expand([...ref['rope.out1'].shape]), ref['rope.out1']),
        'time_embed.out0': relativeL2(time.temb.reshape(2, -1), ref['time_embed.out0']),
        'time_embed.out1': relativeL2(time.embedded.reshape(2, -1), ref['time_embed.out1']),
        'caption_projection.out0': relativeL2(transformer.captionProjection.forward(ref.encoder_hidden_states), ref['caption_projection.out0']),
        'proj_in.out0': relativeL2(transformer.projIn.forward(ref.hidden_states), ref['proj_in.out0']),
        'norm_out.out0': relativeL2(transformer.normOut.forward(last), ref['norm_out.out0']),
        'proj_out.out0': relativeL2(transformer.outputProjection(last, ref['time_embed.out1'].unsqueeze(1)), ref['proj_out.out0']),
      };
    });
    for (const [name, err] of Object.entries(errors)) expect(err, name).toBeLessThan(1e-5);
    // The angles reach thousands of radians: only float32 angles equal to diffusers' keep the tables within rounding of cos / sin.
    expect(errors['rope.out0']).toBeLessThan(1e-7);
    expect(errors['rope.out1']).toBeLessThan(1e-7);
    expect(memoryStats()).toEqual(before);
  });
});

describe("ltxRotaryEmbedding on wider models (more frequencies than the goldens' transformers)", () => {
  const ref = loadSafetensors(`${goldens}/rope_tables.safetensors`);
  afterAll(() => {
    for (const t of Object.values(ref)) t.dispose();
  });

  it.each(ropeCases)('width $dim, grid $grid, scale $scale: the tables within rounding of cos / sin', ({ dim, grid, scale }) => {
    const { cos, sin } = ltxRotaryEmbedding(grid as [number, number, number], dim, scale as [number, number, number] | null);
    expect(relativeL2(cos, ref[`dim${dim}.cos`])).toBeLessThan(1e-7);
    expect(relativeL2(sin, ref[`dim${dim}.sin`])).toBeLessThan(1e-7);
    cos.dispose();
    sin.dispose();
  });
});
