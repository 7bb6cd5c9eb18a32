import { buildOnnxModel, type TensorSpec } from './onnx-builder.js';
import { Lcg } from './synthetic.js';

/**
 * Tiny stand-ins for the real networks, with the same ONNX interfaces as the exports the
 * README describes, plus float64 reference implementations of the same layers, so the whole
 * path (decode, preprocessing, runtime, combination math) is checked against numbers computed
 * independently of the runtime.
 */

export interface ConvLayer {
  weights: Float64Array; // (out, in, k, k)
  bias: Float64Array; // (out)
  out: number;
  in: number;
  kernel: number;
  stride: number;
  pad: number;
}

function randomValues(count: number, g: Lcg, scale: number): Float64Array {
  // Rounded to float32 so the ONNX initialisers hold exactly these values.
  return Float64Array.from({ length: count }, () => Math.fround(g.uniform() * scale));
}

export function randomConv(inChannels: number, outChannels: number, stride: number, seed: number): ConvLayer {
  const g = new Lcg(seed);
  return {
    weights: randomValues(outChannels * inChannels * 9, g, 1),
    bias: randomValues(outChannels, g, 0.2),
    out: outChannels,
    in: inChannels,
    kernel: 3,
    stride,
    pad: 1,
  };
}

/** Float64 convolution of a (C, H, W) input, followed by ReLU. */
export function convRelu(input: Float64Array, height: number, width: number, layer: ConvLayer): { data: Float64Array; height: number; width: number } {
  const { out, kernel, stride, pad } = layer;
  const outHeight = Math.floor((height + 2 * pad - kernel) / stride) + 1;
  const outWidth = Math.floor((width + 2 * pad - kernel) / stride) + 1;
  const data = new Float64Array(out * outHeight * outWidth);
  for (let o = 0; o < out; o++) {
    for (let y = 0; y < outHeight; y++) {
      for (let x = 0; x < outWidth; x++) {
        let sum = layer.bias[o];
        for (let i = 0; i < layer.in; i++) {
          for (let ky = 0; ky < kernel; ky++) {
            const sy = y * stride + ky - pad;
            if (sy < 0 || sy >= height) continue;
            for (let kx = 0; kx < kernel; kx++) {
              const sx = x * stride + kx - pad;
              if (sx < 0 || sx >= width) continue;
              sum += layer.weights[((o * layer.in + i) * kernel + ky) * kernel + kx] * input[(i * height + sy) * width + sx];
            }
          }
        }
        data[(o * outHeight + y) * outWidth + x] = Math.max(0, sum);
      }
    }
  }
  return { data, height: outHeight, width: outWidth };
}

function convInitializers(name: string, layer: ConvLayer): TensorSpec[] {
  return [
    { name: `${name}_w`, dims: [layer.out, layer.in, layer.kernel, layer.kernel], values: layer.weights },
    { name: `${name}_b`, dims: [layer.out], values: layer.bias },
  ];
}

function convNode(name: string, input: string, output: string, layer: ConvLayer) {
  return {
    op: 'Conv',
    inputs: [input, `${name}_w`, `${name}_b`],
    outputs: [output],
    attributes: { kernel_shape: [3, 3], pads: [1, 1, 1, 1], strides: [layer.stride, layer.stride] },
  };
}

// ------------------------------------------------------------------ LPIPS

export interface TinyLpips {
  onnx: Uint8Array;
  conv1: ConvLayer;
  conv2: ConvLayer;
  lin: Float64Array[];
}

/** Two conv+ReLU layers (4 and 5 channels, the second strided) and their linear weights. */
export function tinyLpips(): TinyLpips {
  const conv1 = randomConv(3, 4, 1, 101);
  const conv2 = randomConv(4, 5, 2, 102);
  const g = new Lcg(103);
  const lin = [4, 5].map((c) => Float64Array.from({ length: c }, () => Math.fround(0.1 + Math.abs(g.uniform()))));
  const onnx = buildOnnxModel({
    inputs: [{ name: 'images', dims: ['N', 3, 'H', 'W'] }],
    outputs: [
      { name: 'feat_0', dims: ['N', 4, 'H', 'W'] },
      { name: 'feat_1', dims: ['N', 5, 'H2', 'W2'] },
      { name: 'lin_0', dims: [4] },
      { name: 'lin_1', dims: [5] },
    ],
    initializers: [
      ...convInitializers('conv1', conv1),
      ...convInitializers('conv2', conv2),
      { name: 'lin0', dims: [4], values: lin[0] },
      { name: 'lin1', dims: [5], values: lin[1] },
    ],
    nodes: [
      convNode('conv1', 'images', 'c1', conv1),
      { op: 'Relu', inputs: ['c1'], outputs: ['feat_0'] },
      convNode('conv2', 'feat_0', 'c2', conv2),
      { op: 'Relu', inputs: ['c2'], outputs: ['feat_1'] },
      { op: 'Identity', inputs: ['lin0'], outputs: ['lin_0'] },
      { op: 'Identity', inputs: ['lin1'], outputs: ['lin_1'] },
    ],
  });
  return { onnx, conv1, conv2, lin };
}

// ------------------------------------------------------------------ FID feature extractor

export interface TinyInception {
  onnx: Uint8Array;
  conv: ConvLayer;
  projection: Float64Array; // (6, 8)
  bias: Float64Array; // (8)
}

/** Conv+ReLU (6 channels), global average pool, linear 6 -> 8: input `images`, output `features`. */
export function tinyInception(): TinyInception {
  const conv = randomConv(3, 6, 1, 201);
  const g = new Lcg(202);
  const projection = randomValues(6 * 8, g, 2);
  const bias = randomValues(8, g, 0.5);
  const onnx = buildOnnxModel({
    inputs: [{ name: 'images', dims: ['N', 3, 'H', 'W'] }],
    outputs: [{ name: 'features', dims: ['N', 8] }],
    initializers: [...convInitializers('conv', conv), { name: 'proj', dims: [6, 8], values: projection }, { name: 'proj_b', dims: [8], values: bias }],
    nodes: [
      convNode('conv', 'images', 'c', conv),
      { op: 'Relu', inputs: ['c'], outputs: ['r'] },
      { op: 'GlobalAveragePool', inputs: ['r'], outputs: ['pooled'] },
      { op: 'Flatten', inputs: ['pooled'], outputs: ['flat'], attributes: { axis: 1 } },
      { op: 'MatMul', inputs: ['flat', 'proj'], outputs: ['projected'] },
      { op: 'Add', inputs: ['projected', 'proj_b'], outputs: ['features'] },
    ],
  });
  return { onnx, conv, projection, bias };
}

/** Global average pool of a (C, H, W) map, then v·W + b. */
export function poolAndProject(map: Float64Array, channels: number, plane: number, projection: Float64Array, bias: Float64Array): Float64Array {
  const outputs = bias.length;
  const pooled = Float64Array.from({ length: channels }, (_, c) => {
    let sum = 0;
    for (let p = 0; p < plane; p++) sum += map[c * plane + p];
    return sum / plane;
  });
  return Float64Array.from({ length: outputs }, (_, o) => {
    let sum = bias[o];
    for (let c = 0; c < channels; c++) sum += pooled[c] * projection[c * outputs + o];
    return sum;
  });
}

// ------------------------------------------------------------------ CLIP towers

export interface TinyClip {
  image: Uint8Array;
  text: Uint8Array;
  conv: ConvLayer;
  imageProjection: Float64Array; // (4, 6)
  embedding: Float64Array; // (vocab, 6)
  vocabSize: number;
}

const ZERO_BIAS6 = new Float64Array(6);

/** Image tower: strided conv+ReLU, pool, 4 -> 6. Text tower: masked mean of token embeddings. */
export function tinyClip(vocabSize: number, imageSize: number): TinyClip {
  const conv = randomConv(3, 4, 2, 301);
  const g = new Lcg(302);
  const imageProjection = randomValues(4 * 6, g, 2);
  const embedding = randomValues(vocabSize * 6, g, 2);
  const image = buildOnnxModel({
    inputs: [{ name: 'pixel_values', dims: ['N', 3, imageSize, imageSize] }],
    outputs: [{ name: 'image_embeds', dims: ['N', 6] }],
    initializers: [...convInitializers('conv', conv), { name: 'proj', dims: [4, 6], values: imageProjection }],
    nodes: [
      convNode('conv', 'pixel_values', 'c', conv),
      { op: 'Relu', inputs: ['c'], outputs: ['r'] },
      { op: 'GlobalAveragePool', inputs: ['r'], outputs: ['pooled'] },
      { op: 'Flatten', inputs: ['pooled'], outputs: ['flat'], attributes: { axis: 1 } },
      { op: 'MatMul', inputs: ['flat', 'proj'], outputs: ['image_embeds'] },
    ],
  });
  const text = buildOnnxModel({
    inputs: [
      { name: 'input_ids', dims: ['N', 'L'], type: 'int64' },
      { name: 'attention_mask', dims: ['N', 'L'], type: 'int64' },
    ],
    outputs: [{ name: 'text_embeds', dims: ['N', 6] }],
    initializers: [
      { name: 'embedding', dims: [vocabSize, 6], values: embedding },
      { name: 'axis2', dims: [1], values: [2], type: 'int64' },
      { name: 'axis1', dims: [1], values: [1], type: 'int64' },
    ],
    nodes: [
      { op: 'Gather', inputs: ['embedding', 'input_ids'], outputs: ['tokens'], attributes: { axis: 0 } },
      { op: 'Cast', inputs: ['attention_mask'], outputs: ['mask'], attributes: { to: 1 } },
      { op: 'Unsqueeze', inputs: ['mask', 'axis2'], outputs: ['mask3'] },
      { op: 'Mul', inputs: ['tokens', 'mask3'], outputs: ['masked'] },
      { op: 'ReduceSum', inputs: ['masked', 'axis1'], outputs: ['summed'], attributes: { keepdims: 0 } },
      { op: 'ReduceSum', inputs: ['mask', 'axis1'], outputs: ['count'], attributes: { keepdims: 1 } },
      { op: 'Div', inputs: ['summed', 'count'], outputs: ['text_embeds'] },
    ],
  });
  return { image, text, conv, imageProjection, embedding, vocabSize };
}

/** Float64 image tower on CHW pixel values. */
export function tinyClipImageEmbedding(clip: TinyClip, pixelValues: Float64Array, size: number): Float64Array {
  const features = convRelu(pixelValues, size, size, clip.conv);
  return poolAndProject(features.data, 4, features.height * features.width, clip.imageProjection, ZERO_BIAS6);
}

/** Float64 text tower: the mean embedding of the real (unpadded) tokens. */
export function tinyClipTextEmbedding(clip: TinyClip, ids: number[]): Float64Array {
  const out = new Float64Array(6);
  for (const id of ids) for (let k = 0; k < 6; k++) out[k] += clip.embedding[id * 6 + k] / ids.length;
  return out;
}
