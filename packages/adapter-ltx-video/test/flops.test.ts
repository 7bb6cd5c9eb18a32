// The FLOPs count the cache engine prices blocks with: the matrix products of one call, by hand.
import { describe, expect, it } from 'vitest';

import { LtxVideoTransformer } from '../src/index.js';
import { goldens } from './helpers.js';

describe('LtxVideoTransformer.flopsPerCall', () => {
  it('counts the projections, the attention products and the feed-forward of ltx-tiny (width 16, 8 channels, captions of 12)', () => {
    using transformer = LtxVideoTransformer.load(`${goldens}/ltx-tiny/transformer`);
    const [b, n, t, d] = [2, 18, 6, 16];
    const f = transformer.flopsPerCall({ batch: b, videoTokens: n, textTokens: t });
    // proj_in; the timestep MLP (256 -> d -> d) and its six-way projection; the caption MLP (12 -> d -> d).
    expect(f.embedders).toBe(2 * b * n * 8 * d + 2 * b * (256 * d + d * d + 6 * d * d) + 2 * b * t * (12 * d + d * d));
    // Self-attention q, k, v, out; cross-attention q, out and k, v over the text; feed-forward d -> 4d -> d; QK^T and PV of both.
    const perBlock = 2 * b * n * d * d * 4 + 2 * b * n * d * d * 2 + 2 * b * t * d * d * 2 + 2 * b * n * d * 4 * d * 2 + 4 * b * n * n * d + 4 * b * n * t * d;
    expect(f.perBlock).toBe(perBlock);
    expect(f.output).toBe(2 * b * n * d * 8);
    expect(f.total).toBe(f.embedders + 4 * perBlock + f.output);
  });
});
