// A HiDream-like model whose forward does per-block work (each block reads its own extra text
// tokens, and the model trims what the block returns), so its lists fit no ForwardPattern until
// a PatchFunctor moves that work into the blocks.
import { describe, expect, it } from 'vitest';

import { BlockAdapter, disableCache, enableCache, ForwardPattern, patchProperty, summary, type Block, type PatchFunctor, type Undo } from '../src/index.js';
import { PlainTensorOps, type PlainTensor } from '../src/testing.js';
import { noise, toyBlocks } from './toy-models.js';

const ops = new PlainTensorOps();
const concat = (a: PlainTensor, b: PlainTensor) => ops.tensor([...a.values(), ...b.values()]);
const head = (a: PlainTensor, n: number) => ops.tensor(a.values().slice(0, n));

class HiDreamLike {
  doubleStreamBlocks: Block[] = toyBlocks(ops, ForwardPattern.Pattern_0, 3);
  singleStreamBlocks: Block[] = toyBlocks(ops, ForwardPattern.Pattern_3, 3, 3);

  /** `extra[k]` are block k's own text tokens (HiDream's per-block Llama layer). */
  forward(input: PlainTensor, text: PlainTensor, extra: PlainTensor[], t: number): PlainTensor {
    const mine = (x: PlainTensor) => x !== input && x !== text;
    let h = input;
    let e = text;
    this.doubleStreamBlocks.forEach((block, k) => {
      const withExtra = concat(e, extra[k]);
      const [nextH, nextE] = block.forward(h, withExtra, t) as [PlainTensor, PlainTensor];
      const trimmed = head(nextE, text.shape[0]);
      for (const x of [withExtra, nextE, h, e]) if (mine(x)) x.dispose();
      [h, e] = [nextH, trimmed];
    });
    let joint = concat(h, e);
    const jointLength = joint.shape[0];
    this.singleStreamBlocks.forEach((block, j) => {
      const withExtra = concat(joint, extra[this.doubleStreamBlocks.length + j]);
      const out = block.forward(withExtra, t) as PlainTensor;
      const trimmed = head(out, jointLength);
      for (const x of [withExtra, out, joint]) x.dispose();
      joint = trimmed;
    });
    const out = head(joint, input.shape[0]);
    for (const x of [joint, h, e]) if (mine(x)) x.dispose();
    return out;
  }
}

/** Moves the per-block work into wrappers, and the model's forward becomes a plain loop. */
class HiDreamLikePatch implements PatchFunctor {
  apply(model: object): Undo {
    const m = model as HiDreamLike;
    const doubles = m.doubleStreamBlocks;
    const singles = m.singleStreamBlocks;
    const wrappedDoubles: Block[] = doubles.map((block, k) => ({
      forward(h: PlainTensor, e: PlainTensor, extra: PlainTensor[], t: number) {
        const withExtra = concat(e, extra[k]);
        const [nextH, nextE] = block.forward(h, withExtra, t) as [PlainTensor, PlainTensor];
        const trimmed = head(nextE, e.shape[0]);
        withExtra.dispose();
        nextE.dispose();
        return [nextH, trimmed];
      },
    }));
    const wrappedSingles: Block[] = singles.map((block, j) => ({
      forward(joint: PlainTensor, extra: PlainTensor[], t: number) {
        const withExtra = concat(joint, extra[doubles.length + j]);
        const out = block.forward(withExtra, t) as PlainTensor;
        const trimmed = head(out, joint.shape[0]);
        withExtra.dispose();
        out.dispose();
        return trimmed;
      },
    }));
    function forward(this: HiDreamLike, h: PlainTensor, text: PlainTensor, extra: PlainTensor[], t: number): PlainTensor {
      const inputs = [h, text];
      const drop = (x: PlainTensor, next: PlainTensor) => x !== next && !inputs.includes(x) && x.dispose();
      let e = text;
      for (const block of this.doubleStreamBlocks) {
        const [nextH, nextE] = block.forward(h, e, extra, t) as [PlainTensor, PlainTensor];
        drop(h, nextH);
        drop(e, nextE);
        [h, e] = [nextH, nextE];
      }
      let joint = concat(h, e);
      for (const block of this.singleStreamBlocks) {
        const next = block.forward(joint, extra, t) as PlainTensor;
        drop(joint, next);
        joint = next;
      }
      const out = head(joint, h.shape[0]);
      for (const x of [joint, h, e]) if (!inputs.includes(x)) x.dispose();
      return out;
    }
    const undos = [
      patchProperty(m, 'doubleStreamBlocks', wrappedDoubles),
      patchProperty(m, 'singleStreamBlocks', wrappedSingles),
      patchProperty(m, 'forward', forward),
    ];
    return () => undos.reverse().forEach((undo) => undo());
  }
}

function denoise(model: HiDreamLike, steps: number): number[] {
  let x = ops.tensor(noise(6, 7));
  const text = ops.tensor(noise(3, 8));
  const extra = Array.from({ length: 6 }, (_, k) => ops.tensor(noise(2, 20 + k)));
  for (let step = 0; step < steps; step++) {
    const v = model.forward(x, text, extra, 1 - step / steps);
    const next = ops.addScaled(x, v, -1 / steps);
    x.dispose();
    v.dispose();
    x = next;
  }
  const out = Array.from(x.values());
  for (const t of [x, text, ...extra]) t.dispose();
  return out;
}

describe('PatchFunctor', () => {
  it('caches a model whose loop does per-block work, and undoes the patch on disableCache', () => {
    const model = new HiDreamLike();
    const { doubleStreamBlocks, singleStreamBlocks } = model;
    const reference = denoise(model, 10);
    const live = ops.liveCount;

    const undo = new HiDreamLikePatch().apply(model);
    expect(denoise(model, 10)).toEqual(reference); // the patched model computes the same
    undo();
    expect(Object.hasOwn(model, 'forward')).toBe(false);

    const adapter = () =>
      new BlockAdapter({
        transformer: model,
        blocks: ['doubleStreamBlocks', 'singleStreamBlocks'],
        forwardPattern: [ForwardPattern.Pattern_0, ForwardPattern.Pattern_3],
        patchFunctor: new HiDreamLikePatch(),
        ops,
      });
    enableCache(adapter(), { Fn_compute_blocks: 1, Bn_compute_blocks: 1, max_warmup_steps: 2, residual_diff_threshold: 0 });
    expect(denoise(model, 10)).toEqual(reference);

    enableCache(adapter(), { Fn_compute_blocks: 1, max_warmup_steps: 2, residual_diff_threshold: 1, max_cached_steps: 3 });
    const cached = denoise(model, 10);
    expect(cached).not.toEqual(reference);
    const stats = summary(model, { print: false });
    expect(stats.contexts.map((c) => [c.name, c.cachedSteps])).toEqual([
      ['transformer.doubleStreamBlocks', [2, 3, 4]],
      ['transformer.singleStreamBlocks', [2, 3, 4]],
    ]);

    disableCache(model);
    expect(model.doubleStreamBlocks).toBe(doubleStreamBlocks);
    expect(model.singleStreamBlocks).toBe(singleStreamBlocks);
    expect(Object.hasOwn(model, 'forward')).toBe(false);
    expect(ops.liveCount).toBe(live);
    expect(denoise(model, 10)).toEqual(reference);
  });
});
