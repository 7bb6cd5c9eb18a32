// How the cache engine sees LTX-Video: one block list, transformer.transformer_blocks, whose
// blocks take (hidden, text, ...) and return the hidden states (ForwardPattern 2), as cache-dit's
// LTX adapter registers it. CFG is batched ([negative, prompt] in one call): one context, one
// decision per step.
import { BlockAdapter, ForwardPattern, registerAdapter, type AdapterTarget, type BlockAdapterFactory, type FlopsCounter } from '@ditcache/core';
import type { Tensor } from '@ditcache/cuda-runtime';
import { runtimeTensorOps } from '@ditcache/diffusion';

import { LtxTransformerBlock } from './blocks.js';
import type { LtxTransformerInputs, LtxVideoTransformer } from './transformer.js';

/** The BlockAdapter of an LTX-Video pipeline, or of a bare transformer. */
export function ltxBlockAdapter(target: { pipe?: object; transformer: LtxVideoTransformer }): BlockAdapter<Tensor> {
  const { pipe, transformer } = target;
  return new BlockAdapter<Tensor>({
    pipe,
    transformer,
    blocks: 'transformerBlocks',
    forwardPattern: ForwardPattern.Pattern_2,
    hasSeparateCfg: false,
    ops: runtimeTensorOps,
    timestepOf: (args) => (args[0] as LtxTransformerInputs).timestep.toFloat32Array()[0],
    flops: ltxFlops(transformer),
    transformerNames: ['transformer'],
    // diffusers' names and kinds: LTX's attention modules do not say they are cross-attention, so
    // diffusers' PAB treats attn2 (attention to the text) as spatial too. A block put in place of
    // LTX's own declares nothing.
    attentionSites: () =>
      transformer.transformerBlocks.flatMap((b, i) =>
        b instanceof LtxTransformerBlock
          ? [
              { name: `transformer_blocks.${i}.attn1`, kind: 'spatial' as const, module: b.attn1 },
              { name: `transformer_blocks.${i}.attn2`, kind: 'spatial' as const, module: b.attn2 },
            ]
          : [],
      ),
  });
}

function ltxFlops(transformer: LtxVideoTransformer): FlopsCounter {
  const costs = (args: readonly unknown[]) => {
    const [hidden, text] = args as [Tensor, Tensor];
    return transformer.flopsPerCall({ batch: hidden.shape[0], videoTokens: hidden.shape[1], textTokens: text.shape[1] });
  };
  return {
    block: (_chain, _index, args) => costs(args).perBlock,
    outsideBlocks(_chain, args) {
      const f = costs(args);
      return f.embedders + f.output;
    },
  };
}

/** Registers LTX-Video with the engine: `enableCache(ltxPipeline)` then works with no adapter given. */
@registerAdapter({ transformerClass: 'LtxVideoTransformer', pipelines: ['LtxPipeline'] })
export class LtxCacheAdapterFactory implements BlockAdapterFactory {
  createBlockAdapter({ pipe, transformer }: AdapterTarget): BlockAdapter<Tensor> {
    const owner = pipe as { transformer: LtxVideoTransformer } | undefined;
    return ltxBlockAdapter({ pipe, transformer: owner ? owner.transformer : (transformer as LtxVideoTransformer) });
  }
}
