import { describe, expect, it } from 'vitest';

import { loadSafetensors, memoryStats, type Tensor } from '@ditcache/cuda-runtime';

import { FluxTransformer, type FluxBlock } from '../src/index.js';
import { goldens, relativeL2 } from './helpers.js';

/** Wraps blocks so that each one's outputs are copied out under `name.{i}.out0/out1`. */
function recording(blocks: FluxBlock[], name: string, into: Map<string, Tensor>): FluxBlock[] {
  return blocks.map((block, i) => ({
    forward(hidden, encoder, temb, rotary) {
      const [e, h] = block.forward(hidden, encoder, temb, rotary);
      into.set(`${name}.${i}.out0`, e.clone().keep());
      into.set(`${name}.${i}.out1`, h.clone().keep());
      return [e, h];
    },
  }));
}

describe.each(['flux-tiny', 'flux-tiny-guidance'])('FluxTransformer on %s', (set) => {
  it('matches diffusers block by block and in the output', () => {
    const ref = loadSafetensors(`${goldens}/${set}/transformer_forward.safetensors`);
    using transformer = FluxTransformer.load(`${goldens}/${set}/transformer`);
    const outputs = new Map<string, Tensor>();
    transformer.transformerBlocks = recording(transformer.transformerBlocks, 'transformer_blocks', outputs);
    transformer.singleTransformerBlocks = recording(transformer.singleTransformerBlocks, 'single_transformer_blocks', outputs);
    const before = memoryStats();
    const sample = transformer.forward({
      hiddenStates: ref.hidden_states,
      encoderHiddenStates: ref.encoder_hidden_states,
      pooledProjections: ref.pooled_projections,
      timestep: ref.timestep,
      imgIds: ref.img_ids,
      txtIds: ref.txt_ids,
      guidance: ref.guidance,
    });
    const errors: Record<string, number> = { sample: relativeL2(sample, ref.sample) };
    for (const [name, t] of outputs) errors[name] = relativeL2(t, ref[name]);
    for (const [name, err] of Object.entries(errors)) expect(err, name).toBeLessThan(1e-5);
    expect(outputs.size).toBe(2 * (transformer.config.num_layers + transformer.config.num_single_layers));
    sample.dispose();
    for (const t of outputs.values()) t.dispose();
    expect(memoryStats()).toEqual(before);
    for (const t of Object.values(ref)) t.dispose();
  });
  it('gives the same output, bit for bit, from the text conditioning and rotary tables made once (embedText, rotaryEmbedding)', () => {
    const ref = loadSafetensors(`${goldens}/${set}/transformer_forward.safetensors`);
    using transformer = FluxTransformer.load(`${goldens}/${set}/transformer`);
    const inputs = {
      hiddenStates: ref.hidden_states,
      encoderHiddenStates: ref.encoder_hidden_states,
      pooledProjections: ref.pooled_projections,
      timestep: ref.timestep,
      imgIds: ref.img_ids,
      txtIds: ref.txt_ids,
      guidance: ref.guidance,
    };
    const text = transformer.embedText(ref.encoder_hidden_states, ref.pooled_projections);
    const rotary = transformer.rotaryEmbedding(ref.txt_ids, ref.img_ids);
    const perStep = transformer.forward(inputs);
    const once = transformer.forward({ ...inputs, text, rotary });
    expect(relativeL2(perStep, ref.sample)).toBeLessThan(1e-5);
    expect(Array.from(once.toFloat32Array())).toEqual(Array.from(perStep.toFloat32Array()));
    expect(() => transformer.forward({ ...inputs, text: { encoder: text.pooled, pooled: text.pooled } })).toThrow(/text\.encoder must be \(\d+, \d+, \d+\)/);
    for (const t of [perStep, once, text.encoder, text.pooled, rotary.cos, rotary.sin, ...Object.values(ref)]) t.dispose();
  });
});
