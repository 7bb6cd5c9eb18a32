import { describe, expect, it } from 'vitest';

import { concat, tensor } from '@ditcache/cuda-runtime';

import { batchedGuidance, classifierFreeGuidance } from '../src/index.js';

describe('classifier-free guidance', () => {
  const uncond = [0.5, -1, 2, 0.25];
  const cond = [1.5, 3, -2, 0.25];
  const want = uncond.map((u, i) => u + 4.5 * (cond[i] - u));

  it('is uncond + scale * (cond - uncond), for separate predictions and for the batch [uncond, cond]', () => {
    using u = tensor(uncond, [1, 4]);
    using c = tensor(cond, [1, 4]);
    using separate = classifierFreeGuidance(u, c, 4.5);
    using both = concat([u, c], 0);
    using batched = batchedGuidance(both, 4.5);
    for (const got of [separate, batched]) {
      expect(got.shape).toEqual([1, 4]);
      [...got.toFloat32Array()].forEach((v, i) => expect(v).toBeCloseTo(want[i], 5));
    }
  });
});
