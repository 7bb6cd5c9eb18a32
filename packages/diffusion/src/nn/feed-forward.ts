// diffusers' FeedForward (the MLP of most DiT blocks): net.0.proj widens the tokens, the
// activation (GELU, or SiLU for HunyuanVideo's token refiner), net.2 projects back; net.1 is
// dropout, which inference skips.
import { gelu, silu, tidy, type Tensor } from '@ditcache/cuda-runtime';

import { Linear } from './layers.js';
import type { WeightReader } from '../io/weights.js';

/**
 * diffusers' activation_fn names: "gelu-approximate" is the tanh form, "gelu" the exact erf form,
 * "linear-silu" SiLU after the widening projection (LinearActivation).
 */
export type FeedForwardActivation = 'gelu-approximate' | 'gelu' | 'linear-silu';

export class FeedForward {
  constructor(
    readonly proj: Linear,
    readonly out: Linear,
    readonly activation: FeedForwardActivation,
  ) {}

  /** dim -> innerDim -> dimOut (diffusers' dim_out, by default dim). */
  static load(w: WeightReader, dim: number, innerDim: number, activation: FeedForwardActivation, dimOut = dim): FeedForward {
    return new FeedForward(Linear.load(w.at('net.0.proj'), dim, innerDim), Linear.load(w.at('net.2'), innerDim, dimOut), activation);
  }

  get innerDim(): number {
    return this.proj.outFeatures;
  }

  forward(x: Tensor): Tensor {
    return tidy(() => {
      const h = this.proj.forward(x);
      if (this.activation === 'linear-silu') return this.out.forward(silu(h));
      return this.out.forward(gelu(h, { approximate: this.activation === 'gelu-approximate' ? 'tanh' : 'none' }));
    });
  }
}
