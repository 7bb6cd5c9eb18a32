// How the cache engine sees Wan: each transformer's blocks take (hidden, text, ...) and return
// the hidden states (ForwardPattern 2). Wan 2.2's two experts are two contexts, named as
// cache-dit names them (transformer.blocks, transformer_2.blocks); each counts only the steps
// it runs and takes its own ParamsModifier. CFG runs as two calls per step, each with its own state.
import { BlockAdapter, ForwardPattern, registerAdapter, type AdapterTarget, type BlockAdapterFactory, type FlopsCounter } from '@ditcache/core';
import type { Tensor } from '@ditcache/cuda-runtime';
import { runtimeTensorOps } from '@ditcache/diffusion';

import { WanTransformerBlock } from './blocks.js';
import type { WanTransformer, WanTransformerInputs } from './transformer.js';

/** The BlockAdapter of a Wan pipeline (both experts of Wan 2.2), or of one bare transformer. */
export function wanBlockAdapter(target: { pipe?: object; transformers: readonly WanTransformer[] }): BlockAdapter<Tensor> {
  const { pipe, transformers } = target;
  return new BlockAdapter<Tensor>({
    pipe,
    transformer: transformers,
    blocks: transformers.map(() => 'blocks'),
    forwardPattern: ForwardPattern.Pattern_2,
    hasSeparateCfg: true,
    ops: runtimeTensorOps,
    timestepOf: (args) => (args[0] as WanTransformerInputs).timestep.toFloat32Array()[0],
    flops: wanFlops(transformers),
    transformerNames: transformers.map((_, i) => (i === 0 ? 'transformer' : `transformer_${i + 1}`)),
    // diffusers' names and kinds: attn1 attends over the video tokens, attn2 to the text. A block
    // put in place of Wan's own declares nothing.
    attentionSites: (_, index) =>
      transformers[index].blocks.flatMap((b, i) =>
        b instanceof WanTransformerBlock
          ? [
              { name: `blocks.${i}.attn1`, kind: 'spatial' as const, module: b.attn1 },
              { name: `blocks.${i}.attn2`, kind: 'cross' as const, module: b.attn2 },
            ]
          : [],
      ),
  });
}

function wanFlops(transformers: readonly WanTransformer[]): FlopsCounter {
  // Both experts share one architecture, so either one prices a call.
  const costs = (args: readonly unknown[]) => {
    const [hidden, text] = args as [Tensor, Tensor];
    return transformers[0].flopsPerCall({ batch: hidden.shape[0], videoTokens: hidden.shape[1], textTokens: text.shape[1] });
  };
  return {
    block: (_chain, _index, args) => costs(args).perBlock,
    outsideBlocks(_chain, args) {
      const f = costs(args);
      return f.embedders + f.output;
    },
  };
}

interface WanPipelineLike {
  transformer: WanTransformer;
  transformer2: WanTransformer | null;
}

/** Registers Wan with the engine: `enableCache(wanPipeline)` then works with no adapter given. */
@registerAdapter({ transformerClass: 'WanTransformer', pipelines: ['WanPipeline'] })
export class WanCacheAdapterFactory implements BlockAdapterFactory {
  createBlockAdapter({ pipe, transformer }: AdapterTarget): BlockAdapter<Tensor> {
    const wan = pipe as WanPipelineLike | undefined;
    const transformers = wan ? [wan.transformer, ...(wan.transformer2 ? [wan.transformer2] : [])] : [transformer as WanTransformer];
    return wanBlockAdapter({ pipe, transformers });
  }
}
