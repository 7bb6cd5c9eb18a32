// The rewrite a cache engine needs before it can cache HiDream's blocks (the behaviour of
// cache-dit's HiDreamPatchFunctor). Unpatched, the transformer's loop does work between blocks:
// it appends each block's own Llama projection to the text tokens and cuts the text back after
// each block. A cache engine replaces whole block lists with one runner that calls the blocks
// itself, so that work has to move into the blocks:
//   - each double-stream block takes and returns (hidden, encoder) with encoder = the initial
//     text tokens (cache-dit's ForwardPattern.Pattern_0);
//   - each single-stream block takes and returns hidden = the joint [image, initial text] tokens
//     (ForwardPattern.Pattern_3);
//   - the transformer's runBlocks does nothing per block but call forward.
// Each wrapped block reads its own Llama projection from the context by its block id. The patched
// model runs the same ops on the same values as the unpatched one, so it is bit-identical.
import { concat, tidy, type Tensor } from '@ditcache/cuda-runtime';

import type { DoubleStreamBlock, HiDreamBlockContext, SingleStreamBlock } from './blocks.js';
import { initialEncoderStates, singleStreamContext, type HiDreamEmbedded, type HiDreamTransformer } from './transformer.js';

/** A double-stream block that appends its Llama projection and returns only the initial text tokens. */
export class InitialTextDoubleStreamBlock implements DoubleStreamBlock {
  /** cache-dit's ForwardPattern.Pattern_0: (hidden, encoder, ...) -> [hidden, encoder]. */
  static readonly forwardPattern = 0;

  constructor(
    readonly block: DoubleStreamBlock,
    /** The block's index among all blocks: which Llama projection it reads. */
    readonly blockId: number,
  ) {}

  forward(hidden: Tensor, initial: Tensor, context: HiDreamBlockContext): [Tensor, Tensor] {
    return tidy(() => {
      const [h, e] = this.block.forward(hidden, concat([initial, context.llamaStates[this.blockId]], 1), context);
      return [h, e.narrow(1, 0, initial.shape[1])];
    });
  }
}

/** A single-stream block that appends its Llama projection and returns only the joint tokens it was given. */
export class JointTokensSingleStreamBlock implements SingleStreamBlock {
  /** cache-dit's ForwardPattern.Pattern_3: (hidden, ...) -> hidden. */
  static readonly forwardPattern = 3;

  constructor(
    readonly block: SingleStreamBlock,
    readonly blockId: number,
  ) {}

  forward(hidden: Tensor, context: HiDreamBlockContext): Tensor {
    return tidy(() => this.block.forward(concat([hidden, context.llamaStates[this.blockId]], 1), context).narrow(1, 0, hidden.shape[1]));
  }
}

/** The patched runBlocks: the per-block work lives in the blocks now. */
function runPatchedBlocks(this: HiDreamTransformer, x: HiDreamEmbedded): Tensor {
  return tidy(() => {
    let hidden = x.hidden;
    let encoder = initialEncoderStates(x);
    for (const block of this.doubleStreamBlocks) [hidden, encoder] = block.forward(hidden, encoder, x.context);
    const imageLen = hidden.shape[1];
    hidden = concat([hidden, encoder], 1);
    const single = singleStreamContext(x.context, encoder.shape[1] + x.context.llamaStates[0].shape[1]);
    for (const block of this.singleStreamBlocks) hidden = block.forward(hidden, single);
    return hidden.narrow(1, 0, imageLen);
  });
}

const patched = new WeakSet<HiDreamTransformer>();

/**
 * Rewrites `transformer` in place for a cache engine: wraps every block (InitialTextDoubleStreamBlock,
 * JointTokensSingleStreamBlock) and replaces its runBlocks by a plain loop. Returns the function
 * that restores the original block lists and runBlocks.
 */
export function patchHiDreamForCaching(transformer: HiDreamTransformer): () => void {
  if (patched.has(transformer)) throw new Error('patchHiDreamForCaching: this transformer is already patched');
  const { num_layers: doubles, num_single_layers: singles } = transformer.config;
  const originalDouble = transformer.doubleStreamBlocks;
  const originalSingle = transformer.singleStreamBlocks;
  // Block ids index the Llama projections, so the lists must still hold one entry per block.
  if (originalDouble.length !== doubles || originalSingle.length !== singles) {
    throw new Error(
      `patchHiDreamForCaching: the block lists hold ${originalDouble.length} + ${originalSingle.length} blocks, ` +
        `not the model's ${doubles} + ${singles} (patch before a cache engine replaces them)`,
    );
  }
  transformer.doubleStreamBlocks = originalDouble.map((block, i) => new InitialTextDoubleStreamBlock(block, i));
  transformer.singleStreamBlocks = originalSingle.map((block, j) => new JointTokensSingleStreamBlock(block, doubles + j));
  Object.defineProperty(transformer, 'runBlocks', { value: runPatchedBlocks, configurable: true, writable: true, enumerable: false });
  patched.add(transformer);
  return () => {
    if (!patched.delete(transformer)) return;
    delete (transformer as { runBlocks?: unknown }).runBlocks;
    transformer.doubleStreamBlocks = originalDouble;
    transformer.singleStreamBlocks = originalSingle;
  };
}
