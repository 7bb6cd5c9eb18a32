// How the cache engine sees Qwen-Image: one list of dual-stream blocks that take (hidden, encoder,
// temb, rotary, mask) and return [encoder, hidden] (ForwardPattern 1), one cache context named as
// cache-dit names it (transformer.transformer_blocks). As in cache-dit's QwenImage adapter, true
// CFG's two calls per step keep separate state: the first call (cond) is cache-dit's non-CFG branch.
import { BlockAdapter, ForwardPattern, registerAdapter, type AdapterTarget, type BlockAdapterFactory, type FlopsCounter } from '@ditcache/core';
import type { Tensor } from '@ditcache/cuda-runtime';
import { runtimeTensorOps } from '@ditcache/diffusion';

import type { QwenImageTransformer, QwenImageTransformerInputs } from './transformer.js';

/** The BlockAdapter of a Qwen-Image pipeline, or of a bare transformer. */
export function qwenImageBlockAdapter(target: { pipe?: object; transformer: QwenImageTransformer }): BlockAdapter<Tensor> {
  const { pipe, transformer } = target;
  return new BlockAdapter<Tensor>({
    pipe,
    transformer,
    blocks: 'transformerBlocks',
    forwardPattern: ForwardPattern.Pattern_1,
    hasSeparateCfg: true,
    ops: runtimeTensorOps,
    // Only for a bare transformer call: a QwenImagePipeline tells the engine its calls, timestep included.
    timestepOf: (args) => (args[0] as QwenImageTransformerInputs).timestep.toFloat32Array()[0] * 1000,
    flops: qwenImageFlops(transformer),
  });
}

/** Counts block FLOPs from the shapes of the chain's arguments (hidden, encoder, ...). */
function qwenImageFlops(transformer: QwenImageTransformer): FlopsCounter {
  const costs = (args: readonly unknown[]) => {
    const [hidden, encoder] = args as [Tensor, Tensor];
    return transformer.flopsPerCall({ batch: hidden.shape[0], imageTokens: hidden.shape[1], textTokens: encoder.shape[1] });
  };
  return {
    block: (_chain, _index, args) => costs(args).perBlock,
    outsideBlocks(_chain, args) {
      const f = costs(args);
      return f.embedders + f.output;
    },
  };
}

/** Registers Qwen-Image with the engine: `enableCache(qwenImagePipeline)` then works with no adapter given. */
@registerAdapter({ transformerClass: 'QwenImageTransformer', pipelines: ['QwenImagePipeline'] })
export class QwenImageCacheAdapterFactory implements BlockAdapterFactory {
  createBlockAdapter({ pipe, transformer }: AdapterTarget): BlockAdapter<Tensor> {
    return qwenImageBlockAdapter({ pipe, transformer: transformer as QwenImageTransformer });
  }
}
