// SD3Transformer against diffusers' SD3Transformer2DModel, block by block.
import { describe, expect, it } from 'vitest';

import { loadSafetensors, memoryStats, type Tensor } from '@ditcache/cuda-runtime';

import { SD3Transformer, type SD3Block } from '../src/index.js';
import { goldens, relativeL2, SETS } from './helpers.js';

/** Wraps blocks so that each one's outputs are copied out under `transformer_blocks.{i}.out0/out1`. */
function recording(blocks: SD3Block[], into: Map<string, Tensor>): SD3Block[] {
  return blocks.map((block, i) => ({
    forward(hidden, encoder, temb) {
      const [e, h] = block.forward(hidden, encoder, temb);
      if (e) into.set(`transformer_blocks.${i}.out0`, e.clone().keep());
      into.set(`transformer_blocks.${i}.out1`, h.clone().keep());
      return [e, h];
    },
  }));
}

describe.each(SETS)('SD3Transformer on %s', (set) => {
  it('matches diffusers block by block and in the output; the last block returns no encoder stream', () => {
    const ref = loadSafetensors(`${goldens}/${set}/transformer_forward.safetensors`);
    using transformer = SD3Transformer.load(`${goldens}/${set}/transformer`);
    const outputs = new Map<string, Tensor>();
    transformer.transformerBlocks = recording(transformer.transformerBlocks, outputs);
    const before = memoryStats();
    const sample = transformer.forward({
      hiddenStates: ref.hidden_states,
      encoderHiddenStates: ref.encoder_hidden_states,
      pooledProjections: ref.pooled_projections,
      timestep: ref.timestep,
    });
    const errors: Record<string, number> = { sample: relativeL2(sample, ref.sample) };
    for (const [name, t] of outputs) errors[name] = relativeL2(t, ref[name]);
    for (const [name, err] of Object.entries(errors)) expect(err, name).toBeLessThan(1e-5);
    const layers = transformer.config.num_layers;
    // Every block's hidden output, and the encoder output of all but the context_pre_only block.
    expect(outputs.size).toBe(2 * layers - 1);
    expect(outputs.has(`transformer_blocks.${layers - 1}.out0`)).toBe(false);
    expect(ref[`transformer_blocks.${layers - 1}.out0`]).toBeUndefined();
    sample.dispose();
    for (const t of outputs.values()) t.dispose();
    expect(memoryStats()).toEqual(before);
    for (const t of Object.values(ref)) t.dispose();
  });
});
