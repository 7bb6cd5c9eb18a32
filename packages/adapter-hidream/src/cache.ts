// How the cache engine sees HiDream: after patchHiDreamForCaching moves the per-block text
// handling into the blocks, the double-stream blocks take and return (hidden, initial text)
// (ForwardPattern 0) and the single-stream blocks take and return the joint tokens (Pattern 3).
// The two lists are cached as two contexts, each deciding on its own residual, as cache-dit does.
import {
  BlockAdapter,
  ForwardPattern,
  registerAdapter,
  type AdapterTarget,
  type BlockAdapterFactory,
  type FlopsCounter,
  type PatchFunctor,
  type Undo,
} from '@ditcache/core';
import type { Tensor } from '@ditcache/cuda-runtime';
import { runtimeTensorOps } from '@ditcache/diffusion';

import type { HiDreamBlockContext } from './blocks.js';
import { patchHiDreamForCaching } from './caching-patch.js';
import type { HiDreamTransformer, HiDreamTransformerInputs } from './transformer.js';

/**
 * HiDream's PatchFunctor, the worked example for third-party adapters whose transformer loop does
 * per-block work. HiDream's loop appends each block's own Llama projection to the text tokens and
 * cuts the text back after every block, so no ForwardPattern describes its blocks as they stand.
 * `apply` moves that work into wrappers around the blocks (see caching-patch.ts): the double-stream
 * blocks then take and return (hidden, initial text) — Pattern 0 — and the single-stream blocks
 * the joint tokens — Pattern 3 — and the transformer's loop only calls them. The patched model is
 * bit-identical to the original (a test checks it), and the returned Undo restores it exactly.
 */
export class HiDreamPatchFunctor implements PatchFunctor {
  apply(transformer: object): Undo {
    return patchHiDreamForCaching(transformer as HiDreamTransformer);
  }
}

/** The BlockAdapter of a HiDream pipeline (or a bare transformer). */
export function hidreamBlockAdapter(target: { pipe?: object; transformer: HiDreamTransformer }): BlockAdapter<Tensor> {
  const { pipe, transformer } = target;
  return new BlockAdapter<Tensor>({
    pipe,
    transformer,
    blocks: ['doubleStreamBlocks', 'singleStreamBlocks'],
    forwardPattern: [ForwardPattern.Pattern_0, ForwardPattern.Pattern_3],
    patchFunctor: new HiDreamPatchFunctor(),
    // CFG is batched: one call per step carries both branches and shares one decision.
    hasSeparateCfg: false,
    ops: runtimeTensorOps,
    timestepOf: (args) => (args[0] as HiDreamTransformerInputs).timesteps.toFloat32Array()[0],
    flops: hidreamFlops(transformer),
  });
}

function hidreamFlops(transformer: HiDreamTransformer): FlopsCounter {
  const isDouble = (chain: string) => chain.endsWith('.doubleStreamBlocks');
  // Double chain arguments: (hidden, initial text, context); single chain: (joint tokens, context).
  const costs = (chain: string, args: readonly unknown[]) => {
    const hidden = args[0] as Tensor;
    const context = args[isDouble(chain) ? 2 : 1] as HiDreamBlockContext;
    const llamaTokens = context.llamaStates[0].shape[1];
    if (isDouble(chain)) {
      const initial = args[1] as Tensor;
      return transformer.flopsPerCall({ batch: hidden.shape[0], imageTokens: hidden.shape[1], t5Tokens: initial.shape[1] - llamaTokens, llamaTokens });
    }
    // A single-stream block's cost depends on the joint length only (its tokens plus the block's Llama tokens).
    return transformer.flopsPerCall({ batch: hidden.shape[0], imageTokens: hidden.shape[1] - llamaTokens, t5Tokens: 0, llamaTokens });
  };
  return {
    block: (chain, _index, args) => (isDouble(chain) ? costs(chain, args).perDoubleBlock : costs(chain, args).perSingleBlock),
    outsideBlocks(chain, args) {
      if (!isDouble(chain)) return 0;
      const f = costs(chain, args);
      return f.embedders + f.output;
    },
  };
}

/** Registers HiDream with the engine: `enableCache(hidreamPipeline)` then works with no adapter given. */
@registerAdapter({ transformerClass: 'HiDreamTransformer', pipelines: ['HiDreamPipeline'] })
export class HiDreamCacheAdapterFactory implements BlockAdapterFactory {
  createBlockAdapter({ pipe, transformer }: AdapterTarget): BlockAdapter<Tensor> {
    return hidreamBlockAdapter({ pipe, transformer: transformer as HiDreamTransformer });
  }
}
