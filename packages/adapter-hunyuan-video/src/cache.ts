// How the cache engine sees HunyuanVideo: the dual-stream and the single-stream blocks both take
// (hidden, encoder, temb, mask, rotary) and return [hidden, encoder] (ForwardPattern 0). As in
// cache-dit's HunyuanVideo adapter, the two lists are two cache contexts, each with its own Fn,
// Bn, threshold (ParamsModifiers in that order: dual, single) and decisions. The pipeline
// announces each call's branch; cache-dit's default for HunyuanVideo keeps no separate CFG state,
// so under true CFG every call is a step of one branch unless the config enables separate CFG.
import { BlockAdapter, ForwardPattern, registerAdapter, type AdapterTarget, type BlockAdapterFactory, type FlopsCounter } from '@ditcache/core';
import type { Tensor } from '@ditcache/cuda-runtime';
import { runtimeTensorOps } from '@ditcache/diffusion';

import type { HunyuanVideoTransformer, HunyuanVideoTransformerInputs } from './transformer.js';

const DUAL = 'transformerBlocks';
const SINGLE = 'singleTransformerBlocks';

/** The BlockAdapter of a HunyuanVideo pipeline (or a bare transformer). */
export function hunyuanVideoBlockAdapter(target: { pipe?: object; transformer: HunyuanVideoTransformer }): BlockAdapter<Tensor> {
  const { pipe, transformer } = target;
  return new BlockAdapter<Tensor>({
    pipe,
    transformer,
    blocks: [DUAL, SINGLE],
    forwardPattern: [ForwardPattern.Pattern_0, ForwardPattern.Pattern_0],
    hasSeparateCfg: false,
    ops: runtimeTensorOps,
    // Only for a bare transformer call: a HunyuanVideoPipeline tells the engine its calls, timestep included.
    timestepOf: (args) => (args[0] as HunyuanVideoTransformerInputs).timestep.toFloat32Array()[0],
    flops: hunyuanVideoFlops(transformer),
  });
}

/** Counts block FLOPs from the shapes of a list's arguments (hidden, encoder, ...). */
function hunyuanVideoFlops(transformer: HunyuanVideoTransformer): FlopsCounter {
  const costs = (args: readonly unknown[]) => {
    const [hidden, encoder] = args as [Tensor, Tensor];
    return transformer.flopsPerCall({ batch: hidden.shape[0], imageTokens: hidden.shape[1], textTokens: encoder.shape[1] });
  };
  const isDual = (chain: string): boolean => chain.endsWith(`.${DUAL}`);
  return {
    block: (chain, _index, args) => (isDual(chain) ? costs(args).perDualBlock : costs(args).perSingleBlock),
    outsideBlocks(chain, args) {
      // Reported once per transformer call: by the context of the dual-stream blocks.
      if (!isDual(chain)) return 0;
      const f = costs(args);
      return f.embedders + f.output;
    },
  };
}

/** Registers HunyuanVideo with the engine: `enableCache(hunyuanVideoPipeline)` then works with no adapter given. */
@registerAdapter({ transformerClass: 'HunyuanVideoTransformer', pipelines: ['HunyuanVideoPipeline'] })
export class HunyuanVideoCacheAdapterFactory implements BlockAdapterFactory {
  createBlockAdapter({ pipe, transformer }: AdapterTarget): BlockAdapter<Tensor> {
    return hunyuanVideoBlockAdapter({ pipe, transformer: transformer as HunyuanVideoTransformer });
  }
}
