// The rewrite a cache engine needs before it can cache Chroma's blocks (what cache-dit's
// ChromaPatchFunctor does). Unpatched, the transformer's loop does work between blocks: it cuts
// each block's modulation rows out of the table and hands them to it. A cache engine replaces a
// whole block list with one runner that calls the blocks itself, with the arguments the first
// block got, so that work has to move into the blocks:
//   - each double-stream block takes (hidden, encoder, table, context) and returns
//     [encoder, hidden] (cache-dit's ForwardPattern.Pattern_1);
//   - each single-stream block takes (joint tokens, table, context) and returns the joint tokens
//     (ForwardPattern.Pattern_3);
//   - the transformer's runBlocks hands every block the whole table and does nothing else per block.
// Each wrapped block cuts its own rows by its index. The patched model runs the same ops on the
// same values as the unpatched one, so it is bit-identical (a test checks it).
import { concat, tidy, type Tensor } from '@ditcache/cuda-runtime';

import type { ChromaBlockContext, ChromaDoubleBlock, ChromaSingleBlock } from './blocks.js';
import { doubleBlockRows, singleBlockRow, type ChromaEmbedded, type ChromaTransformer } from './transformer.js';

/** A double-stream block that takes the whole modulation table and cuts its own 12 rows. */
export class TableDoubleStreamBlock implements ChromaDoubleBlock {
  /** cache-dit's ForwardPattern.Pattern_1: (hidden, encoder, ...) -> [encoder, hidden]. */
  static readonly forwardPattern = 1;

  constructor(
    readonly block: ChromaDoubleBlock,
    /** Its first image row and first text row in the table. */
    readonly rows: readonly [image: number, text: number],
  ) {}

  forward(hidden: Tensor, encoder: Tensor, table: Tensor, context: ChromaBlockContext): [Tensor, Tensor] {
    return tidy(() => {
      const [image, text] = this.rows;
      return this.block.forward(hidden, encoder, concat([table.narrow(1, image, 6), table.narrow(1, text, 6)], 1), context);
    });
  }
}

/** A single-stream block that takes the whole modulation table and cuts its own 3 rows. */
export class TableSingleStreamBlock implements ChromaSingleBlock {
  /** cache-dit's ForwardPattern.Pattern_3: (hidden, ...) -> hidden. */
  static readonly forwardPattern = 3;

  constructor(
    readonly block: ChromaSingleBlock,
    readonly row: number,
  ) {}

  forward(joint: Tensor, table: Tensor, context: ChromaBlockContext): Tensor {
    return tidy(() => this.block.forward(joint, table.narrow(1, this.row, 3), context));
  }
}

/** The patched runBlocks: the per-block work lives in the blocks now. */
function runPatchedBlocks(this: ChromaTransformer, x: ChromaEmbedded): Tensor {
  return tidy(() => {
    let { hidden, encoder } = x;
    for (const block of this.transformerBlocks) [encoder, hidden] = block.forward(hidden, encoder, x.modulation, x.context);
    let joint = concat([encoder, hidden], 1);
    for (const block of this.singleTransformerBlocks) joint = block.forward(joint, x.modulation, x.context);
    return joint.narrow(1, encoder.shape[1], hidden.shape[1]);
  });
}

const patched = new WeakSet<ChromaTransformer>();

/**
 * Rewrites `transformer` in place for a cache engine: wraps every block (TableDoubleStreamBlock,
 * TableSingleStreamBlock) and replaces its runBlocks by a plain loop. Returns the function that
 * restores the original block lists and runBlocks.
 */
export function patchChromaForCaching(transformer: ChromaTransformer): () => void {
  if (patched.has(transformer)) throw new Error('patchChromaForCaching: this transformer is already patched');
  const { num_layers: doubles, num_single_layers: singles } = transformer.config;
  const originalDouble = transformer.transformerBlocks;
  const originalSingle = transformer.singleTransformerBlocks;
  // Block indices pick the modulation rows, so the lists must still hold one entry per block.
  if (originalDouble.length !== doubles || originalSingle.length !== singles) {
    throw new Error(
      `patchChromaForCaching: the block lists hold ${originalDouble.length} + ${originalSingle.length} blocks, ` +
        `not the model's ${doubles} + ${singles} (patch before a cache engine replaces them)`,
    );
  }
  transformer.transformerBlocks = originalDouble.map((block, i) => new TableDoubleStreamBlock(block, doubleBlockRows(transformer.config, i)));
  transformer.singleTransformerBlocks = originalSingle.map((block, j) => new TableSingleStreamBlock(block, singleBlockRow(j)));
  Object.defineProperty(transformer, 'runBlocks', { value: runPatchedBlocks, configurable: true, writable: true, enumerable: false });
  patched.add(transformer);
  return () => {
    if (!patched.delete(transformer)) return;
    delete (transformer as { runBlocks?: unknown }).runBlocks;
    transformer.transformerBlocks = originalDouble;
    transformer.singleTransformerBlocks = originalSingle;
  };
}
