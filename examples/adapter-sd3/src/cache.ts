// How the cache engine sees SD3: one list of joint blocks, each taking (hidden, encoder, temb)
// and returning [encoder, hidden] (ForwardPattern 1), cached as one chain with one context, as
// cache-dit's StableDiffusion3 adapter does. The last block returns no encoder stream; the
// engine then has no encoder residual to store or forecast where that block is a middle block.
import { BlockAdapter, ForwardPattern, registerAdapter, type AdapterTarget, type BlockAdapterFactory } from '@ditcache/core';
import type { Tensor } from '@ditcache/cuda-runtime';
import { runtimeTensorOps } from '@ditcache/diffusion';

import type { SD3Transformer, SD3TransformerInputs } from './transformer.js';

/** The BlockAdapter of an SD3 pipeline (or a bare transformer). */
export function sd3BlockAdapter(target: { pipe?: object; transformer: SD3Transformer }): BlockAdapter<Tensor> {
  const { pipe, transformer } = target;
  return new BlockAdapter<Tensor>({
    pipe,
    transformer,
    blocks: 'transformerBlocks',
    forwardPattern: ForwardPattern.Pattern_1,
    // CFG is batched ([uncond, cond] in one call); the pipeline announces each call as 'batched'.
    hasSeparateCfg: false,
    ops: runtimeTensorOps,
    timestepOf: (args) => (args[0] as SD3TransformerInputs).timestep.toFloat32Array()[0],
  });
}

/** Registers SD3 with the engine: importing this package makes `enableCache(sd3Pipeline)` work. */
@registerAdapter({ transformerClass: 'SD3Transformer', pipelines: ['StableDiffusion3Pipeline'] })
export class SD3CacheAdapterFactory implements BlockAdapterFactory {
  createBlockAdapter({ pipe, transformer }: AdapterTarget): BlockAdapter<Tensor> {
    return sd3BlockAdapter({ pipe, transformer: transformer as SD3Transformer });
  }
}
