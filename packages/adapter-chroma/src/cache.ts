// How the cache engine sees Chroma, as cache-dit's Chroma adapter does: after ChromaPatchFunctor
// moves the per-block row cutting into the blocks, the double-stream blocks take (hidden,
// encoder, table, context) and return [encoder, hidden] (ForwardPattern 1) and the single-stream
// blocks take and return the joint tokens (Pattern 3). The two lists are two cache contexts, each
// deciding on its own residual. ChromaPipeline tells the engine each call's true step and CFG
// branch, as every pipeline does.
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
import { runtimeTensorOps, timesThousandInDtype } from '@ditcache/diffusion';

import type { ChromaBlockContext } from './blocks.js';
import { patchChromaForCaching } from './caching-patch.js';
import type { ChromaTransformer, ChromaTransformerInputs } from './transformer.js';

/** cache-dit's ChromaPatchFunctor: the blocks cut their own modulation rows (see caching-patch.ts); the Undo restores the model exactly. */
export class ChromaPatchFunctor implements PatchFunctor {
  apply(transformer: object): Undo {
    return patchChromaForCaching(transformer as ChromaTransformer);
  }
}

/** The BlockAdapter of a Chroma pipeline (or a bare transformer). */
export function chromaBlockAdapter(target: { pipe?: object; transformer: ChromaTransformer }): BlockAdapter<Tensor> {
  const { pipe, transformer } = target;
  return new BlockAdapter<Tensor>({
    pipe,
    transformer,
    blocks: ['transformerBlocks', 'singleTransformerBlocks'],
    forwardPattern: [ForwardPattern.Pattern_1, ForwardPattern.Pattern_3],
    patchFunctor: new ChromaPatchFunctor(),
    // CFG runs as separate cond and uncond calls: cache-dit's default enable_separate_cfg for Chroma.
    hasSeparateCfg: true,
    ops: runtimeTensorOps,
    timestepOf: (args) => timesThousandInDtype((args[0] as ChromaTransformerInputs).timestep, transformer.dtype)[0],
    flops: chromaFlops(transformer),
  });
}

function chromaFlops(transformer: ChromaTransformer): FlopsCounter {
  const isDouble = (chain: string) => chain.endsWith('.transformerBlocks');
  // Double chain arguments: (hidden, encoder, table, context); single chain: (joint, table, context).
  const costs = (chain: string, args: readonly unknown[]) => {
    const hidden = args[0] as Tensor;
    if (isDouble(chain)) return transformer.flopsPerCall({ batch: hidden.shape[0], imageTokens: hidden.shape[1], textTokens: (args[1] as Tensor).shape[1] });
    // A single-stream block's cost depends on the joint length only.
    const context = args[2] as ChromaBlockContext;
    return transformer.flopsPerCall({ batch: hidden.shape[0], imageTokens: context.rotary.cos.shape[0], textTokens: 0 });
  };
  return {
    block: (chain, _index, args) => (isDouble(chain) ? costs(chain, args).perDoubleBlock : costs(chain, args).perSingleBlock),
    outsideBlocks(chain, args) {
      // Reported once per transformer call: by the double-stream chain.
      if (!isDouble(chain)) return 0;
      const f = costs(chain, args);
      return f.embedders + f.output;
    },
  };
}

/** Registers Chroma with the engine: `enableCache(chromaPipeline)` then works with no adapter given. */
@registerAdapter({ transformerClass: 'ChromaTransformer', pipelines: ['ChromaPipeline'] })
export class ChromaCacheAdapterFactory implements BlockAdapterFactory {
  createBlockAdapter({ pipe, transformer }: AdapterTarget): BlockAdapter<Tensor> {
    return chromaBlockAdapter({ pipe, transformer: transformer as ChromaTransformer });
  }
}
