import { afterAll, describe, expect, it } from 'vitest';

import { loadSafetensors, memoryStats, tidy, type Tensor } from '@ditcache/cuda-runtime';

import {
  HiDreamPatchFunctor,
  HiDreamTransformer,
  InitialTextDoubleStreamBlock,
  JointTokensSingleStreamBlock,
  hidreamBlockAdapter,
  patchHiDreamForCaching,
  type DoubleStreamBlock,
  type SingleStreamBlock,
} from '../src/index.js';
import { goldenInputs, goldens } from './helpers.js';

/** Host copies of what each block returns, the sample last. */
interface Trace {
  double: { hidden: Buffer; hiddenShape: number[]; encoder: Buffer; encoderShape: number[] }[];
  single: { hidden: Buffer; shape: number[] }[];
  sample: Buffer;
}

/** Runs one forward with every block's outputs copied out, without changing the lists for good. */
function trace(transformer: HiDreamTransformer, inputs: ReturnType<typeof goldenInputs>): Trace {
  const out: Trace = { double: [], single: [], sample: Buffer.alloc(0) };
  const doubles = transformer.doubleStreamBlocks;
  const singles = transformer.singleStreamBlocks;
  transformer.doubleStreamBlocks = doubles.map(
    (block): DoubleStreamBlock => ({
      forward(hidden, encoder, context) {
        const [h, e] = block.forward(hidden, encoder, context);
        out.double.push({ hidden: h.toBytes(), hiddenShape: [...h.shape], encoder: e.toBytes(), encoderShape: [...e.shape] });
        return [h, e];
      },
    }),
  );
  transformer.singleStreamBlocks = singles.map(
    (block): SingleStreamBlock => ({
      forward(hidden, context) {
        const h = block.forward(hidden, context);
        out.single.push({ hidden: h.toBytes(), shape: [...h.shape] });
        return h;
      },
    }),
  );
  try {
    out.sample = tidy(() => transformer.forward(inputs).toBytes());
  } finally {
    transformer.doubleStreamBlocks = doubles;
    transformer.singleStreamBlocks = singles;
  }
  return out;
}

/** The first `tokens` tokens of every row of a (B, S, D) float32 tensor's bytes. */
function firstTokens(bytes: Buffer, [batch, seq, dim]: number[], tokens: number): Buffer {
  const row = seq * dim * 4;
  return Buffer.concat(Array.from({ length: batch }, (_, b) => bytes.subarray(b * row, b * row + tokens * dim * 4)));
}

describe.each(['transformer_forward', 'transformer_forward_nonsquare'])('patchHiDreamForCaching on %s', (file) => {
  const ref = loadSafetensors(`${goldens}/hidream-tiny/${file}.safetensors`);
  const inputs = goldenInputs(ref);
  afterAll(() => {
    for (const t of Object.values(ref)) t.dispose();
  });
  // T5 tokens plus one Llama projection: the initial text tokens every double-stream block keeps.
  const initialTokens = ref.encoder_hidden_states_t5.shape[1] + ref.encoder_hidden_states_llama3.shape[2];

  it('makes Pattern 0 / Pattern 3 blocks that compute bit for bit what the unpatched model does', () => {
    using transformer = HiDreamTransformer.load(`${goldens}/hidream-tiny/transformer`);
    const before = memoryStats();
    const plain = trace(transformer, inputs);
    const undo = patchHiDreamForCaching(transformer);
    expect(transformer.doubleStreamBlocks.every((b) => b instanceof InitialTextDoubleStreamBlock)).toBe(true);
    expect(transformer.singleStreamBlocks.every((b) => b instanceof JointTokensSingleStreamBlock)).toBe(true);
    expect([InitialTextDoubleStreamBlock.forwardPattern, JointTokensSingleStreamBlock.forwardPattern]).toEqual([0, 3]);
    const patched = trace(transformer, inputs);
    undo();

    expect(patched.sample.equals(plain.sample)).toBe(true);
    patched.double.forEach((p, i) => {
      const u = plain.double[i];
      expect(p.hidden.equals(u.hidden), `double ${i} hidden`).toBe(true);
      expect(p.encoderShape[1]).toBe(initialTokens);
      expect(p.encoder.equals(firstTokens(u.encoder, u.encoderShape, initialTokens)), `double ${i} encoder`).toBe(true);
    });
    const imageTokens = plain.double[0].hiddenShape[1];
    patched.single.forEach((p, j) => {
      const u = plain.single[j];
      expect(p.shape[1]).toBe(imageTokens + initialTokens);
      expect(p.hidden.equals(firstTokens(u.hidden, u.shape, imageTokens + initialTokens)), `single ${j}`).toBe(true);
    });
    expect(memoryStats()).toEqual(before);
  });

  it('lets one object take the place of a whole block list, as a cache engine does', () => {
    using transformer = HiDreamTransformer.load(`${goldens}/hidream-tiny/transformer`);
    const plain = tidy(() => transformer.forward(inputs).toBytes());
    const undo = patchHiDreamForCaching(transformer);
    const doubles = transformer.doubleStreamBlocks;
    const singles = transformer.singleStreamBlocks;
    const calls: string[] = [];
    transformer.doubleStreamBlocks = [
      {
        forward(hidden: Tensor, encoder: Tensor, context) {
          calls.push(`double (${hidden.shape[1]}, ${encoder.shape[1]})`);
          for (const block of doubles) [hidden, encoder] = block.forward(hidden, encoder, context);
          return [hidden, encoder];
        },
      },
    ];
    transformer.singleStreamBlocks = [
      {
        forward(hidden: Tensor, context) {
          calls.push(`single (${hidden.shape[1]})`);
          for (const block of singles) hidden = block.forward(hidden, context);
          return hidden;
        },
      },
    ];
    const chained = tidy(() => transformer.forward(inputs).toBytes());
    undo();
    expect(chained.equals(plain)).toBe(true);
    const imageTokens = file === 'transformer_forward' ? 64 : 144;
    expect(calls).toEqual([`double (${imageTokens}, ${initialTokens})`, `single (${imageTokens + initialTokens})`]);
  });

  it('is undone exactly, and refuses to patch twice or lists an engine already replaced', () => {
    using transformer = HiDreamTransformer.load(`${goldens}/hidream-tiny/transformer`);
    const doubles = transformer.doubleStreamBlocks;
    const singles = transformer.singleStreamBlocks;
    const undo = patchHiDreamForCaching(transformer);
    expect(Object.hasOwn(transformer, 'runBlocks')).toBe(true);
    expect(() => patchHiDreamForCaching(transformer)).toThrow(/already patched/);
    undo();
    undo();
    expect(transformer.doubleStreamBlocks).toBe(doubles);
    expect(transformer.singleStreamBlocks).toBe(singles);
    expect(Object.hasOwn(transformer, 'runBlocks')).toBe(false);
    transformer.singleStreamBlocks = [];
    expect(() => patchHiDreamForCaching(transformer)).toThrow(/the block lists hold 3 \+ 0 blocks, not the model's 3 \+ 3/);
    transformer.singleStreamBlocks = singles;
    patchHiDreamForCaching(transformer)();
  });
});

describe('HiDreamPatchFunctor', () => {
  it('is the PatchFunctor the registered adapter applies, and its undo restores the instance', () => {
    using transformer = HiDreamTransformer.load(`${goldens}/hidream-tiny/transformer`);
    const lists = [transformer.doubleStreamBlocks, transformer.singleStreamBlocks];
    expect(hidreamBlockAdapter({ transformer }).patchFunctor).toBeInstanceOf(HiDreamPatchFunctor);
    const undo = new HiDreamPatchFunctor().apply(transformer);
    expect(transformer.doubleStreamBlocks).not.toBe(lists[0]);
    undo();
    expect(transformer.doubleStreamBlocks).toBe(lists[0]);
    expect(transformer.singleStreamBlocks).toBe(lists[1]);
  });
});
