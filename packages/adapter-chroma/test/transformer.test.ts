// ChromaTransformer against diffusers' ChromaTransformer2DModel (with the boolean key mask) on
// both reference folders: every block's outputs, the modulation table and the sample.
import { describe, expect, it } from 'vitest';

import { loadSafetensors, memoryStats, tensor, type Tensor } from '@ditcache/cuda-runtime';

import { ChromaTransformer, type ChromaDoubleBlock, type ChromaSingleBlock } from '../src/index.js';
import { SETS, goldens, relativeL2 } from './helpers.js';

/** Wraps the blocks so that each one's outputs are copied out under diffusers' hook names. */
function recordDouble(blocks: ChromaDoubleBlock[], into: Map<string, Tensor>): ChromaDoubleBlock[] {
  return blocks.map((block, i) => ({
    forward(hidden, encoder, temb, context) {
      const [e, h] = block.forward(hidden, encoder, temb, context);
      into.set(`transformer_blocks.${i}.out0`, e.clone().keep());
      into.set(`transformer_blocks.${i}.out1`, h.clone().keep());
      return [e, h];
    },
  }));
}

function recordSingle(blocks: ChromaSingleBlock[], into: Map<string, Tensor>): ChromaSingleBlock[] {
  return blocks.map((block, i) => ({
    forward(joint, temb, context) {
      const out = block.forward(joint, temb, context);
      into.set(`single_transformer_blocks.${i}.out0`, out.clone().keep());
      return out;
    },
  }));
}

describe.each(SETS)('ChromaTransformer on %s', (set) => {
  const ref = loadSafetensors(`${goldens}/${set}/transformer_forward.safetensors`);
  const inputs = () => ({
    hiddenStates: ref.hidden_states,
    encoderHiddenStates: ref.encoder_hidden_states,
    timestep: ref.timestep,
    imgIds: ref.img_ids,
    txtIds: ref.txt_ids,
    attentionMask: ref.attention_mask,
  });

  it('matches diffusers block by block and in the output, with padded text keys masked', () => {
    using transformer = ChromaTransformer.load(`${goldens}/${set}/transformer`);
    const outputs = new Map<string, Tensor>();
    transformer.transformerBlocks = recordDouble(transformer.transformerBlocks, outputs);
    transformer.singleTransformerBlocks = recordSingle(transformer.singleTransformerBlocks, outputs);
    const before = memoryStats();
    const sample = transformer.forward(inputs());
    const errors: Record<string, number> = { sample: relativeL2(sample, ref.sample) };
    for (const [name, t] of outputs) errors[name] = relativeL2(t, ref[name]);
    for (const [name, err] of Object.entries(errors)) expect(err, name).toBeLessThan(1e-5);
    expect(outputs.size).toBe(2 * transformer.config.num_layers + transformer.config.num_single_layers);
    sample.dispose();
    for (const t of outputs.values()) t.dispose();
    expect(memoryStats()).toEqual(before);
  });

  it('masks: a padded text token does not reach the image tokens, and without the mask the output is another one', () => {
    using transformer = ChromaTransformer.load(`${goldens}/${set}/transformer`);
    // Rewrite every padded (masked) text token of the first sample: the sample is bit-identical.
    const [batch, tokens, width] = ref.encoder_hidden_states.shape;
    const mask = ref.attention_mask.toFloat32Array();
    const embeds = ref.encoder_hidden_states.toFloat32Array();
    const masked = Array.from({ length: tokens }, (_, i) => i).filter((i) => mask[i] === 0);
    expect(masked.length).toBeGreaterThan(0);
    for (const i of masked) embeds.fill(7, i * width, (i + 1) * width);
    using changed = tensor(embeds, [batch, tokens, width]);
    using withChanged = transformer.forward({ ...inputs(), encoderHiddenStates: changed });
    using plain = transformer.forward(inputs());
    expect(Buffer.compare(Buffer.from(withChanged.toBytes()), Buffer.from(plain.toBytes()))).toBe(0);
    // The references mask padded keys: dropping the mask moves the output far beyond the 1e-5 above.
    using unmasked = transformer.forward({ ...inputs(), attentionMask: undefined });
    expect(relativeL2(unmasked, ref.sample)).toBeGreaterThan(1e-3);
  });

  it('takes integer ids and an integer mask (safetensors int64 / bool load as int32) as their float values', () => {
    using transformer = ChromaTransformer.load(`${goldens}/${set}/transformer`);
    using plain = transformer.forward(inputs());
    using imgIds = ref.img_ids.cast('int32');
    using txtIds = ref.txt_ids.cast('int32');
    using mask = ref.attention_mask.cast('int32');
    using integers = transformer.forward({ ...inputs(), imgIds, txtIds, attentionMask: mask });
    expect(Buffer.compare(Buffer.from(integers.toBytes()), Buffer.from(plain.toBytes()))).toBe(0);
  });
});
