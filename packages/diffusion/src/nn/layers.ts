// The torch.nn layers diffusers models are built from, holding runtime tensors loaded by name.
import { conv2d, conv3d, groupNorm, layerNorm, linear, rmsNorm, type Tensor } from '@ditcache/cuda-runtime';

import type { WeightReader } from '../io/weights.js';

/** nn.Linear: x W^T + b over the last dimension. */
export class Linear {
  constructor(
    readonly weight: Tensor,
    readonly bias: Tensor | null,
  ) {}

  /** Reads `weight` (out, in) and, unless `bias` is false, `bias` (out). */
  static load(w: WeightReader, inFeatures: number, outFeatures: number, opts: { bias?: boolean } = {}): Linear {
    return new Linear(w.tensor('weight', [outFeatures, inFeatures]), opts.bias === false ? null : w.tensor('bias', [outFeatures]));
  }

  get inFeatures(): number {
    return this.weight.shape[1];
  }
  get outFeatures(): number {
    return this.weight.shape[0];
  }

  forward(x: Tensor): Tensor {
    return linear(x, this.weight, this.bias);
  }
}

/** nn.LayerNorm over the last dimension; without weights when `elementwise_affine` is false. */
export class LayerNorm {
  constructor(
    readonly eps: number,
    readonly weight: Tensor | null = null,
    readonly bias: Tensor | null = null,
  ) {}

  static load(w: WeightReader, dim: number, eps: number): LayerNorm {
    return new LayerNorm(eps, w.tensor('weight', [dim]), w.tensor('bias', [dim]));
  }

  forward(x: Tensor): Tensor {
    return layerNorm(x, this.weight, this.bias, this.eps);
  }
}

/** nn.RMSNorm over the last dimension with a learned scale. */
export class RMSNorm {
  constructor(
    readonly eps: number,
    readonly weight: Tensor | null,
  ) {}

  static load(w: WeightReader, dim: number, eps: number): RMSNorm {
    return new RMSNorm(eps, w.tensor('weight', [dim]));
  }

  forward(x: Tensor): Tensor {
    return rmsNorm(x, this.weight, this.eps);
  }
}

/** nn.GroupNorm of (N, C, ...) input with per-channel affine weights. */
export class GroupNorm {
  constructor(
    readonly groups: number,
    readonly eps: number,
    readonly weight: Tensor,
    readonly bias: Tensor,
  ) {}

  static load(w: WeightReader, groups: number, channels: number, eps: number): GroupNorm {
    if (channels % groups !== 0) {
      throw new TypeError(`${w.folder.dir}: ${w.prefix}: ${groups} groups do not divide ${channels} channels`);
    }
    return new GroupNorm(groups, eps, w.tensor('weight', [channels]), w.tensor('bias', [channels]));
  }

  forward(x: Tensor): Tensor {
    return groupNorm(x, this.groups, this.weight, this.bias, this.eps);
  }
}

export interface Conv2dGeometry {
  kernel: number;
  stride?: number;
  padding?: number;
}

/** nn.Conv2d with square kernels, zero padding and a bias. */
export class Conv2d {
  constructor(
    readonly weight: Tensor,
    readonly bias: Tensor | null,
    readonly stride: number,
    readonly padding: number,
  ) {}

  static load(w: WeightReader, inChannels: number, outChannels: number, geometry: Conv2dGeometry): Conv2d {
    const { kernel, stride = 1, padding = 0 } = geometry;
    return new Conv2d(w.tensor('weight', [outChannels, inChannels, kernel, kernel]), w.tensor('bias', [outChannels]), stride, padding);
  }

  forward(x: Tensor): Tensor {
    return conv2d(x, this.weight, this.bias, { stride: this.stride, padding: this.padding });
  }
}

/** Per-axis sizes of a 3-D convolution: (frames, height, width), or one number for all three. */
export type Triple = number | readonly [number, number, number];

export interface Conv3dGeometry {
  kernel: Triple;
  stride?: Triple;
  padding?: Triple;
}

const triple = (v: Triple): [number, number, number] => (typeof v === 'number' ? [v, v, v] : [v[0], v[1], v[2]]);

/** nn.Conv3d of (N, C, D, H, W) input, zero padding and a bias. */
export class Conv3d {
  constructor(
    readonly weight: Tensor,
    readonly bias: Tensor | null,
    readonly stride: [number, number, number],
    readonly padding: [number, number, number],
  ) {}

  static load(w: WeightReader, inChannels: number, outChannels: number, geometry: Conv3dGeometry): Conv3d {
    const kernel = triple(geometry.kernel);
    return new Conv3d(
      w.tensor('weight', [outChannels, inChannels, ...kernel]),
      w.tensor('bias', [outChannels]),
      triple(geometry.stride ?? 1),
      triple(geometry.padding ?? 0),
    );
  }

  get kernel(): [number, number, number] {
    const [, , d, h, w] = this.weight.shape;
    return [d, h, w];
  }

  forward(x: Tensor): Tensor {
    return conv3d(x, this.weight, this.bias, { stride: this.stride, padding: this.padding });
  }
}
