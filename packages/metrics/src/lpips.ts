import { loadImage } from './decode.js';
import { MetricsError } from './errors.js';
import { checkComparable, type PixelImage } from './image.js';
import { OnnxNetwork, type FloatTensorData, type NetworkOptions } from './onnx-network.js';
import type { ImagePair } from './pairs.js';
import { imageBatch } from './preprocess.js';
import { summarize, type MetricSummary } from './summary.js';

/**
 * LPIPS (Zhang et al. 2018, the `lpips` package, version 0.1): deep features of both images
 * at several layers, each unit-normalised along channels, squared differences weighted per
 * channel by the learned linear layer, averaged over space, summed over layers:
 *
 *   d(x, y) = Σ_l mean_{h,w} Σ_c w_lc (x̂_lchw − ŷ_lchw)²,   x̂ = x / (‖x‖_c + 1e-10)
 *
 * The combination is done here in float64. The network (AlexNet or VGG16 up to the five
 * ReLU outputs lpips uses, behind its ScalingLayer) comes from an ONNX export with input
 * `images` (N, 3, H, W) in [-1, 1] and outputs `feat_0..feat_{L-1}` (N, C_l, H_l, W_l) and
 * `lin_0..lin_{L-1}` (the C_l weights of each linear layer): see tools/export_lpips.py.
 */

/** lpips' `normalize_tensor` epsilon. */
export const LPIPS_EPSILON = 1e-10;

/** One layer's features of one image, channel-major (C, H, W). */
export interface FeatureMap {
  data: ArrayLike<number>;
  channels: number;
  height: number;
  width: number;
}

/** LPIPS distance from per-layer features of two images and the per-layer channel weights. */
export function lpipsFromFeatures(first: readonly FeatureMap[], second: readonly FeatureMap[], weights: readonly ArrayLike<number>[]): number {
  if (first.length !== second.length || first.length !== weights.length) {
    throw new MetricsError(`lpips: ${first.length} and ${second.length} feature layers for ${weights.length} weight sets`);
  }
  let total = 0;
  first.forEach((x, layer) => {
    const y = second[layer];
    const w = weights[layer];
    const { channels, height, width } = x;
    if (y.channels !== channels || y.height !== height || y.width !== width || w.length !== channels) {
      throw new MetricsError(`lpips: layer ${layer} shapes disagree`);
    }
    const plane = height * width;
    let layerSum = 0;
    for (let p = 0; p < plane; p++) {
      let normX = 0;
      let normY = 0;
      for (let c = 0; c < channels; c++) {
        const xv = x.data[c * plane + p];
        const yv = y.data[c * plane + p];
        normX += xv * xv;
        normY += yv * yv;
      }
      const scaleX = 1 / (Math.sqrt(normX) + LPIPS_EPSILON);
      const scaleY = 1 / (Math.sqrt(normY) + LPIPS_EPSILON);
      let weighted = 0;
      for (let c = 0; c < channels; c++) {
        const d = x.data[c * plane + p] * scaleX - y.data[c * plane + p] * scaleY;
        weighted += w[c] * d * d;
      }
      layerSum += weighted;
    }
    total += layerSum / plane;
  });
  return total;
}

/** Splits batch item `index` of an (N, C, H, W) output into a feature map. */
function featureMapOf(tensor: FloatTensorData, index: number): FeatureMap {
  const [, channels, height, width] = tensor.dims;
  const size = channels * height * width;
  return { data: tensor.data.subarray(index * size, (index + 1) * size), channels, height, width };
}

/** An LPIPS network (AlexNet or VGG backbone plus its linear layers) loaded from ONNX. */
export class LpipsNetwork {
  private constructor(
    private readonly network: OnnxNetwork,
    readonly layers: number,
  ) {}

  static async load(path: string, options: NetworkOptions = {}): Promise<LpipsNetwork> {
    const network = await OnnxNetwork.load(path, 'LPIPS', options);
    let layers = 0;
    while (network.outputNames.includes(`feat_${layers}`)) layers++;
    if (layers === 0) network.expectNames(['images'], ['feat_0', 'lin_0']);
    network.expectNames(['images'], Array.from({ length: layers }, (_, l) => [`feat_${l}`, `lin_${l}`]).flat());
    return new LpipsNetwork(network, layers);
  }

  get runtime(): 'node' | 'web' {
    return this.network.runtime;
  }

  /** LPIPS between two images of the same size (any size the backbone accepts). */
  async distance(a: PixelImage, b: PixelImage, labels: [string, string] = ['image 1', 'image 2']): Promise<number> {
    checkComparable(a, b, labels[0], labels[1]);
    // Inputs in [-1, 1], as lpips.LPIPS expects with normalize=False.
    const batch = imageBatch([a, b], (v) => 2 * v - 1);
    const outputs = await this.network.run({ images: batch });
    const first: FeatureMap[] = [];
    const second: FeatureMap[] = [];
    const weights: Float32Array[] = [];
    for (let l = 0; l < this.layers; l++) {
      const features = outputs[`feat_${l}`];
      first.push(featureMapOf(features, 0));
      second.push(featureMapOf(features, 1));
      weights.push(outputs[`lin_${l}`].data);
    }
    return lpipsFromFeatures(first, second, weights);
  }

  async dispose(): Promise<void> {
    await this.network.dispose();
  }
}

/** LPIPS of every pair (decoded one pair at a time; the network uses every core itself). */
export async function evaluateLpips(
  pairs: readonly ImagePair[],
  network: LpipsNetwork,
  onProgress?: (done: number, total: number) => void,
): Promise<MetricSummary> {
  const perImage: Record<string, number> = {};
  let done = 0;
  for (const pair of pairs) {
    const [a, b] = await Promise.all([loadImage(pair.path1), loadImage(pair.path2)]);
    perImage[pair.name] = await network.distance(a, b, [pair.path1, pair.path2]);
    onProgress?.(++done, pairs.length);
  }
  return summarize(perImage);
}
