// How the cache engine sees FLUX: the double- and single-stream blocks both take (hidden,
// encoder, temb, rotary) and return [encoder, hidden] (ForwardPattern 1). By default they form
// ONE chain with one cache context, as cache-dit does for FLUX with diffusers >= 0.35, so Fn
// counts from the first double block and Bn back from the last single block.
import { BlockAdapter, ForwardPattern, registerAdapter, type AdapterTarget, type BlockAdapterFactory, type FlopsCounter } from '@ditcache/core';
import type { Tensor } from '@ditcache/cuda-runtime';
import { runtimeTensorOps, timesThousandInDtype } from '@ditcache/diffusion';

import { FluxSingleTransformerBlock, FluxTransformerBlock } from './blocks.js';
import type { FluxFlops, FluxTransformer, FluxTransformerInputs } from './transformer.js';

export type FluxCacheLayout = 'one-chain' | 'two-lists';

const DOUBLE = 'transformerBlocks';
const SINGLE = 'singleTransformerBlocks';

/**
 * The BlockAdapter of a FLUX pipeline (or a bare transformer). `layout: 'two-lists'` caches the
 * double and the single blocks as two chains, each with its own context, Fn and Bn.
 */
export function fluxBlockAdapter(target: { pipe?: object; transformer: FluxTransformer }, opts: { layout?: FluxCacheLayout } = {}): BlockAdapter<Tensor> {
  const { pipe, transformer } = target;
  return new BlockAdapter<Tensor>({
    pipe,
    transformer,
    blocks: (opts.layout ?? 'one-chain') === 'one-chain' ? { chain: [DOUBLE, SINGLE] } : [DOUBLE, SINGLE],
    forwardPattern: ForwardPattern.Pattern_1,
    // FLUX pipelines announce each call's branch; unannounced calls are all 'cond'.
    hasSeparateCfg: false,
    ops: runtimeTensorOps,
    // Only for a bare transformer call: a FluxPipeline tells the engine its calls, timestep included.
    timestepOf: (args) => timesThousandInDtype((args[0] as FluxTransformerInputs).timestep, transformer.dtype)[0],
    flops: fluxFlops(transformer),
    // diffusers' names; no FLUX attention module is a cross-attention, so diffusers' PAB and
    // FasterCache treat all as spatial. A block put in place of FLUX's own declares nothing.
    attentionSites: () => [
      ...transformer.transformerBlocks.flatMap((b, i) =>
        b instanceof FluxTransformerBlock ? [{ name: `transformer_blocks.${i}.attn`, kind: 'spatial' as const, module: b.attn }] : [],
      ),
      ...transformer.singleTransformerBlocks.flatMap((b, i) =>
        b instanceof FluxSingleTransformerBlock ? [{ name: `single_transformer_blocks.${i}.attn`, kind: 'spatial' as const, module: b.attn }] : [],
      ),
    ],
  });
}

/**
 * Counts block FLOPs from the shapes of the chain's arguments (hidden, encoder, ...). The engine
 * asks for every block of every call; the costs of the last shape are kept, since the shapes of
 * a run's calls do not change.
 */
function fluxFlops(transformer: FluxTransformer): FlopsCounter {
  let lastShape: [batch: number, imageTokens: number, textTokens: number] = [-1, -1, -1];
  let lastCosts: FluxFlops | undefined;
  const costs = (args: readonly unknown[]): FluxFlops => {
    const [hidden, encoder] = args as [Tensor, Tensor];
    const [batch, imageTokens] = hidden.shape;
    const textTokens = encoder.shape[1];
    if (!lastCosts || lastShape[0] !== batch || lastShape[1] !== imageTokens || lastShape[2] !== textTokens) {
      lastShape = [batch, imageTokens, textTokens];
      lastCosts = transformer.flopsPerCall({ batch, imageTokens, textTokens });
    }
    return lastCosts;
  };
  return {
    block(chain, index, args) {
      // The chain's name ends with its lists, e.g. 'transformer.transformerBlocks+singleTransformerBlocks'.
      const lists = chain.slice(chain.lastIndexOf('.') + 1).split('+');
      const doubles = lists[0] === DOUBLE ? transformer.config.num_layers : 0;
      const f = costs(args);
      return index < doubles ? f.perDoubleBlock : f.perSingleBlock;
    },
    outsideBlocks(chain, args) {
      // Reported once per transformer call: by the chain holding the double blocks.
      if (!chain.slice(chain.lastIndexOf('.') + 1).startsWith(DOUBLE)) return 0;
      const f = costs(args);
      return f.embedders + f.output;
    },
  };
}

/** Registers FLUX with the engine: `enableCache(fluxPipeline)` then works with no adapter given. */
@registerAdapter({ transformerClass: 'FluxTransformer', pipelines: ['FluxPipeline'] })
export class FluxCacheAdapterFactory implements BlockAdapterFactory {
  createBlockAdapter({ pipe, transformer }: AdapterTarget): BlockAdapter<Tensor> {
    return fluxBlockAdapter({ pipe, transformer: transformer as FluxTransformer });
  }
}
