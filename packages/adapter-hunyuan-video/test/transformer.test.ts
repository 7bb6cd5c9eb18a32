// HunyuanVideoTransformer against diffusers (tools/make_references.py): every refiner block,
// dual- and single-stream block and the output, with padded masks, on both reference models.
import { afterAll, describe, expect, it } from 'vitest';

import { memoryStats, tidy, type Tensor } from '@ditcache/cuda-runtime';

import { HunyuanVideoTransformer, refinerAttentionMask, type HunyuanVideoBlock, type HunyuanVideoTransformerInputs } from '../src/index.js';
import { goldens, references, relativeL2 } from './helpers.js';

/** Wraps blocks so that block i's outputs are copied out as `{list}.{i}.out0` / `.out1`. */
function recording(list: string, blocks: HunyuanVideoBlock[], into: Map<string, Tensor>): HunyuanVideoBlock[] {
  return blocks.map((block, i) => ({
    forward(hidden, encoder, temb, mask, rotary) {
      const out = block.forward(hidden, encoder, temb, mask, rotary);
      into.set(`${list}.${i}.out0`, out[0].clone().keep());
      into.set(`${list}.${i}.out1`, out[1].clone().keep());
      return out;
    },
  }));
}

function inputsOf(ref: Record<string, Tensor>): HunyuanVideoTransformerInputs {
  return {
    hiddenStates: ref.hidden_states,
    timestep: ref.timestep,
    encoderHiddenStates: ref.encoder_hidden_states,
    encoderAttentionMask: ref.encoder_attention_mask,
    pooledProjections: ref.pooled_projections,
    guidance: ref.guidance,
  };
}

for (const [prefix, set, what] of [
  ['forward', 'hv-tiny', 'embedded guidance, two videos of 3 latent frames, prompts padded to 7 tokens (5 and 7 valid)'],
  ['forward_cfg', 'hv-cfg', 'no guidance embedding, one latent frame, a mask with holes (1 0 1 1 0 1)'],
] as const) {
  describe(`HunyuanVideoTransformer on ${set}: ${what}`, () => {
    const ref = references(prefix);
    const dir = `${goldens}/${set}/transformer`;
    afterAll(() => {
      for (const t of Object.values(ref)) t.dispose();
    });

    it('matches diffusers in every dual- and single-stream block and in the output (within 1e-5)', () => {
      using transformer = HunyuanVideoTransformer.load(dir);
      const outputs = new Map<string, Tensor>();
      transformer.transformerBlocks = recording('transformer_blocks', transformer.transformerBlocks, outputs);
      transformer.singleTransformerBlocks = recording('single_transformer_blocks', transformer.singleTransformerBlocks, outputs);
      const before = memoryStats();
      const sample = transformer.forward(inputsOf(ref));
      expect(sample.shape).toEqual(ref.sample.shape);
      const errors: Record<string, number> = { sample: relativeL2(sample, ref.sample) };
      for (const [name, t] of outputs) errors[name] = relativeL2(t, ref[name]);
      for (const [name, err] of Object.entries(errors)) expect(err, name).toBeLessThan(1e-5);
      expect(outputs.size).toBe(2 * (transformer.config.num_layers + transformer.config.num_single_layers));
      sample.dispose();
      for (const t of outputs.values()) t.dispose();
      expect(memoryStats()).toEqual(before);
    });

    it('matches diffusers in the token refiner (each block) and the condition embedding', () => {
      using transformer = HunyuanVideoTransformer.load(dir);
      const c = transformer.config;
      const errors = tidy(() => {
        const timesteps = ref.timestep.toFloat32Array();
        const mask = ref.encoder_attention_mask;
        const refiner = transformer.contextEmbedder;
        const out: Record<string, number> = {
          'time_text_embed.out0': relativeL2(
            transformer.timeTextEmbed.forward(timesteps, ref.guidance?.toFloat32Array() ?? null, ref.pooled_projections),
            ref['time_text_embed.out0'],
          ),
          'context_embedder.time_text_embed.out0': relativeL2(
            refiner.conditioning(ref.encoder_hidden_states, timesteps, mask),
            ref['context_embedder.time_text_embed.out0'],
          ),
          'context_embedder.out0': relativeL2(refiner.forward(ref.encoder_hidden_states, timesteps, mask, mask.toFloat32Array()), ref['context_embedder.out0']),
        };
        const temb = refiner.conditioning(ref.encoder_hidden_states, timesteps, mask);
        const [batch, tokens] = mask.shape;
        const attnMask = refinerAttentionMask(mask.toFloat32Array(), batch, tokens, { device: mask.device, dtype: 'float32' });
        let h = refiner.projIn.forward(ref.encoder_hidden_states);
        for (const [i, block] of refiner.blocks.entries()) {
          h = block.forward(h, temb, attnMask);
          out[`refiner_blocks.${i}`] = relativeL2(h, ref[`context_embedder.token_refiner.refiner_blocks.${i}.out0`]);
        }
        return out;
      });
      expect(Object.keys(errors)).toHaveLength(3 + c.num_refiner_layers);
      for (const [name, err] of Object.entries(errors)) expect(err, name).toBeLessThan(1e-5);
    });
  });
}
