// QwenImageTransformer against diffusers' QwenImageTransformer2DModel on the goldens: every block's
// two outputs and the sample, with padded text masks of two lengths, a non-square grid and a batch
// of two timesteps; and the rotary layout it rests on.
import { afterAll, describe, expect, it } from 'vitest';

import { tensor, type Tensor } from '@ditcache/cuda-runtime';

import { QwenImageTransformer, qwenImagePositions, type ImageShape } from '../src/index.js';
import { imgShapesFromTensor } from '../src/cli-family.js';
import { goldens, loadReferences, relativeL2 } from './helpers.js';

const ref = loadReferences();
afterAll(() => {
  for (const t of Object.values(ref)) t.dispose();
});

function inputs(prefix: string) {
  return {
    hiddenStates: ref[`${prefix}.hidden_states`],
    encoderHiddenStates: ref[`${prefix}.encoder_hidden_states`],
    encoderHiddenStatesMask: ref[`${prefix}.encoder_hidden_states_mask`],
    timestep: ref[`${prefix}.timestep`],
    imgShapes: imgShapesFromTensor(ref[`${prefix}.img_shapes`], prefix),
  };
}

describe('QwenImageTransformer (qwen-tiny: 6 blocks, batch 2, masks of 5 and 7 of 7 tokens, a 3 x 5 grid)', () => {
  const transformer = QwenImageTransformer.load(`${goldens}/qwen-tiny/transformer`);
  afterAll(() => transformer.dispose());

  it("matches diffusers' sample within 1e-5 relative", () => {
    using sample = transformer.forward(inputs('forward'));
    expect(sample.shape).toEqual([2, 15, 16]);
    expect(relativeL2(sample, ref['forward.sample'])).toBeLessThan(1e-5);
  });

  it("matches every block's (encoder, hidden) outputs within 1e-5 relative", () => {
    const blocks = transformer.transformerBlocks;
    const errors: number[] = [];
    transformer.transformerBlocks = blocks.map((block, i) => ({
      forward(...args: Parameters<typeof block.forward>): [Tensor, Tensor] {
        const [encoder, hidden] = block.forward(...args);
        errors.push(relativeL2(encoder, ref[`forward.block_${i}.encoder_hidden_states`]), relativeL2(hidden, ref[`forward.block_${i}.hidden_states`]));
        return [encoder, hidden];
      },
    }));
    try {
      transformer.forward(inputs('forward')).dispose();
    } finally {
      transformer.transformerBlocks = blocks;
    }
    expect(errors).toHaveLength(12);
    for (const e of errors) expect(e).toBeLessThan(1e-5);
  });

  it('masks padded text out of attention: what a padded token holds does not reach the image, and without the mask the sample differs', () => {
    const given = inputs('forward');
    // Sample 0 has 5 real tokens of 7: its tokens 5 and 6 are replaced.
    const values = given.encoderHiddenStates.toFloat32Array();
    const [, tokens, dim] = given.encoderHiddenStates.shape;
    for (let i = 5 * dim; i < tokens * dim; ++i) values[i] += 3;
    using changed = tensor(values, given.encoderHiddenStates.shape);
    using a = transformer.forward(given);
    using b = transformer.forward({ ...given, encoderHiddenStates: changed });
    expect(Buffer.compare(Buffer.from(a.toBytes()), Buffer.from(b.toBytes()))).toBe(0);
    using unmasked = transformer.forward({ ...given, encoderHiddenStatesMask: null });
    expect(relativeL2(unmasked, ref['forward.sample'])).toBeGreaterThan(1e-3);
  });
});

describe('QwenImageTransformer (qwen-deep: 34 blocks of one head, a 4 x 4 grid, 3 of 6 tokens)', () => {
  it("matches diffusers' sample within 1e-5 relative", () => {
    using transformer = QwenImageTransformer.load(`${goldens}/qwen-deep/transformer`);
    using sample = transformer.forward(inputs('forward_deep'));
    expect(relativeL2(sample, ref['forward_deep.sample'])).toBeLessThan(1e-5);
  });
});

describe('Qwen-Image rotary positions', () => {
  it('centres the image grid and puts text on the diagonal past it', () => {
    const shapes: ImageShape[] = [[1, 3, 5]];
    const { image, text } = qwenImagePositions(shapes, 2);
    // Rows of 3 run -2..0 (ceil(3 / 2) below zero), columns of 5 run -3..1; frame 0.
    expect(Array.from(image.slice(0, 6))).toEqual([0, -2, -3, 0, -2, -2]);
    expect(Array.from(image.slice(-3))).toEqual([0, 0, 1]);
    // Text starts at max(3 // 2, 5 // 2) = 2 on all three axes.
    expect(Array.from(text)).toEqual([2, 2, 2, 3, 3, 3]);
  });
});
