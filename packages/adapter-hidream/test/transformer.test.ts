import { describe, expect, it } from 'vitest';

import { loadSafetensors, memoryStats, tidy, type Tensor } from '@ditcache/cuda-runtime';

import { HiDreamTransformer, type DoubleStreamBlock, type SingleStreamBlock } from '../src/index.js';
import { goldenInputs, goldens, rotaryMatrices, snapshot, snapshotError, type Snapshot } from './helpers.js';

const INPUTS = ['hidden_states', 'timesteps', 'encoder_hidden_states_t5', 'encoder_hidden_states_llama3', 'pooled_embeds'];

/** Wraps the blocks so that what each receives and returns is recorded under diffusers' names. */
function recordBlocks(transformer: HiDreamTransformer, into: Map<string, Snapshot>): void {
  const record = (name: string, t: Tensor | null): void => {
    if (t) into.set(name, snapshot(t));
  };
  transformer.doubleStreamBlocks = transformer.doubleStreamBlocks.map(
    (block, i): DoubleStreamBlock => ({
      forward(hidden, encoder, context) {
        const name = `double_stream_blocks.${i}`;
        record(`${name}.in.hidden_states`, hidden);
        record(`${name}.in.encoder_hidden_states`, encoder);
        // diffusers recorded the conditioning of block 0 only: every block gets the same one.
        if (i === 0) record(`${name}.in.temb`, context.temb);
        record(`${name}.in.hidden_states_masks`, context.masks);
        const [h, e] = block.forward(hidden, encoder, context);
        record(`${name}.out0`, h);
        record(`${name}.out1`, e);
        return [h, e];
      },
    }),
  );
  transformer.singleStreamBlocks = transformer.singleStreamBlocks.map(
    (block, j): SingleStreamBlock => ({
      forward(hidden, context) {
        const name = `single_stream_blocks.${j}`;
        record(`${name}.in.hidden_states`, hidden);
        record(`${name}.in.hidden_states_masks`, context.masks);
        const h = block.forward(hidden, context);
        record(`${name}.out0`, h);
        return h;
      },
    }),
  );
}

describe.each(['transformer_forward', 'transformer_forward_nonsquare'])('HiDreamTransformer against %s', (file) => {
  it('matches diffusers in every embedder, every block input and output, the final layer and the sample', () => {
    const ref = loadSafetensors(`${goldens}/hidream-tiny/${file}.safetensors`);
    using transformer = HiDreamTransformer.load(`${goldens}/hidream-tiny/transformer`);
    const before = memoryStats();
    const errors = tidy(() => {
      const ours = new Map<string, Snapshot>();
      const inputs = goldenInputs(ref);
      const embedded = transformer.embed(inputs);
      const { context } = embedded;
      ours.set('x_embedder.out0', snapshot(embedded.hidden));
      ours.set('t_embedder.out0', snapshot(transformer.tEmbedder.forward(ref.timesteps)));
      ours.set('p_embedder.out0', snapshot(transformer.pEmbedder.forward(ref.pooled_embeds)));
      const rotary = snapshot(rotaryMatrices(context.rotary, ref.hidden_states.shape[0]));
      ours.set('pe_embedder.out0', rotary);
      ours.set('double_stream_blocks.0.in.image_rotary_emb', rotary);
      context.llamaStates.forEach((states, k) => ours.set(`caption_projection.${k}.out0`, snapshot(states)));
      ours.set(`caption_projection.${context.llamaStates.length}.out0`, snapshot(embedded.t5));
      recordBlocks(transformer, ours);
      ours.set('final_layer.out0', snapshot(transformer.finalLayer.forward(transformer.runBlocks(embedded), context.temb)));
      ours.set('sample', snapshot(transformer.forward(inputs)));

      const expected = Object.keys(ref).filter((name) => !INPUTS.includes(name));
      expect([...ours.keys()].sort()).toEqual(expected.sort());
      return Object.fromEntries(expected.map((name) => [name, snapshotError(ours.get(name) as Snapshot, ref[name])]));
    });
    for (const [name, err] of Object.entries(errors)) expect(err, name).toBeLessThan(1e-5);
    expect(memoryStats()).toEqual(before);
    for (const t of Object.values(ref)) t.dispose();
  });
});
