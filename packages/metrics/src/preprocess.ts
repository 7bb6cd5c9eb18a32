import { MetricsError } from './errors.js';
import { dataRangeOf, type PixelImage } from './image.js';

/**
 * Turning decoded images into network inputs: RGB planes (NCHW), and the resize and crop of
 * the CLIP image processor, reproduced bit for bit from Pillow's bicubic resampling.
 */

/** A pixel value in [0, 1] per sample type; grey is replicated to RGB and alpha dropped. */
export function rgbPlanes(image: PixelImage, target: Float32Array = new Float32Array(3 * image.width * image.height), offset = 0): Float32Array {
  const { width, height, channels, data } = image;
  const range = dataRangeOf(image);
  const plane = width * height;
  // Grey (1), grey + alpha (2), RGB (3), RGBA (4): which source channel feeds R, G and B.
  const sources = channels <= 2 ? [0, 0, 0] : [0, 1, 2];
  for (let i = 0; i < plane; i++) {
    const base = i * channels;
    target[offset + i] = data[base + sources[0]] / range;
    target[offset + plane + i] = data[base + sources[1]] / range;
    target[offset + 2 * plane + i] = data[base + sources[2]] / range;
  }
  return target;
}

/** A batch of equally sized images as one NCHW float32 tensor, values mapped by `map`. */
export function imageBatch(images: readonly PixelImage[], map?: (value: number) => number): { data: Float32Array; dims: number[] } {
  if (images.length === 0) throw new MetricsError('imageBatch: no images');
  const { width, height } = images[0];
  const size = 3 * width * height;
  const data = new Float32Array(images.length * size);
  images.forEach((image, index) => {
    if (image.width !== width || image.height !== height) {
      throw new MetricsError(`imageBatch: image ${index} is ${image.width}x${image.height}, expected ${width}x${height}`);
    }
    rgbPlanes(image, data, index * size);
  });
  if (map) for (let i = 0; i < data.length; i++) data[i] = map(data[i]);
  return { data, dims: [images.length, 3, height, width] };
}

/** 8-bit interleaved RGB (what Pillow's RGB mode holds). Other sample types are rounded. */
export function toRgb8(image: PixelImage): Uint8Array {
  const { width, height, channels, data } = image;
  const out = new Uint8Array(width * height * 3);
  const isUint8 = data instanceof Uint8Array || data instanceof Uint8ClampedArray;
  const scale = isUint8 ? 1 : 255 / dataRangeOf(image);
  const sources = channels <= 2 ? [0, 0, 0] : [0, 1, 2];
  for (let i = 0; i < width * height; i++) {
    for (let c = 0; c < 3; c++) {
      const value = data[i * channels + sources[c]];
      out[i * 3 + c] = isUint8 ? value : Math.max(0, Math.min(255, Math.round(value * scale)));
    }
  }
  return out;
}

/* Pillow's resampling (libImaging/Resample.c): separable, antialiased (the kernel widens by
 * the downscale factor), coefficients in 22-bit fixed point for 8-bit images, rounding to
 * 8 bits after each pass. Reproduced exactly so CLIP sees the pixels the Hugging Face
 * CLIPImageProcessor (PIL backend) gives it. */

const PRECISION_BITS = 32 - 8 - 2;

function bicubicFilter(x: number): number {
  const a = -0.5;
  const t = Math.abs(x);
  if (t < 1) return ((a + 2) * t - (a + 3)) * t * t + 1;
  if (t < 2) return (((t - 5) * t + 8) * t - 4) * a;
  return 0;
}

interface Coefficients {
  kernelSize: number;
  /** Per output position: first input index and count. */
  bounds: Int32Array;
  /** Fixed-point weights, kernelSize per output position. */
  weights: Float64Array;
}

function precomputeCoefficients(inSize: number, outSize: number): Coefficients {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = 2 * filterScale; // bicubic support is 2
  const kernelSize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2);
  const weights = new Float64Array(outSize * kernelSize);
  const raw = new Float64Array(kernelSize);
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const ss = 1 / filterScale;
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const xmax = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
    let total = 0;
    for (let x = 0; x < xmax; x++) {
      const w = bicubicFilter((x + xmin - center + 0.5) * ss);
      raw[x] = w;
      total += w;
    }
    for (let x = 0; x < xmax; x++) {
      const w = total !== 0 ? raw[x] / total : raw[x];
      // C's (int) cast truncates toward zero after adding ±0.5: round half away from zero.
      weights[xx * kernelSize + x] = w < 0 ? Math.trunc(-0.5 + w * (1 << PRECISION_BITS)) : Math.trunc(0.5 + w * (1 << PRECISION_BITS));
    }
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  return { kernelSize, bounds, weights };
}

function clip8(accumulator: number): number {
  const value = Math.floor(accumulator / (1 << PRECISION_BITS));
  return value < 0 ? 0 : value > 255 ? 255 : value;
}

/**
 * Resizes 8-bit interleaved RGB like Pillow's `Image.resize(size, Image.BICUBIC)`:
 * horizontal pass first (over the rows the vertical pass needs), then vertical.
 */
export function resizeBicubicLikePillow(pixels: Uint8Array, width: number, height: number, outWidth: number, outHeight: number): Uint8Array {
  const horizontal = precomputeCoefficients(width, outWidth);
  const vertical = precomputeCoefficients(height, outHeight);
  const needHorizontal = outWidth !== width;
  const needVertical = outHeight !== height;
  let source = pixels;
  let sourceWidth = width;
  let firstRow = 0;
  let rows = height;
  if (needHorizontal) {
    firstRow = needVertical ? vertical.bounds[0] : 0;
    const lastRow = needVertical ? vertical.bounds[outHeight * 2 - 2] + vertical.bounds[outHeight * 2 - 1] : height;
    rows = lastRow - firstRow;
    const temp = new Uint8Array(outWidth * rows * 3);
    const { kernelSize, bounds, weights } = horizontal;
    for (let y = 0; y < rows; y++) {
      const rowIn = (y + firstRow) * width * 3;
      for (let xx = 0; xx < outWidth; xx++) {
        const xmin = bounds[xx * 2];
        const count = bounds[xx * 2 + 1];
        let r = 1 << (PRECISION_BITS - 1);
        let g = r;
        let b = r;
        for (let x = 0; x < count; x++) {
          const w = weights[xx * kernelSize + x];
          const p = rowIn + (x + xmin) * 3;
          r += pixels[p] * w;
          g += pixels[p + 1] * w;
          b += pixels[p + 2] * w;
        }
        const q = (y * outWidth + xx) * 3;
        temp[q] = clip8(r);
        temp[q + 1] = clip8(g);
        temp[q + 2] = clip8(b);
      }
    }
    source = temp;
    sourceWidth = outWidth;
  }
  if (!needVertical) return source === pixels ? pixels.slice() : source;
  const out = new Uint8Array(outWidth * outHeight * 3);
  const { kernelSize, bounds, weights } = vertical;
  for (let yy = 0; yy < outHeight; yy++) {
    const ymin = bounds[yy * 2] - firstRow;
    const count = bounds[yy * 2 + 1];
    for (let x = 0; x < sourceWidth; x++) {
      let r = 1 << (PRECISION_BITS - 1);
      let g = r;
      let b = r;
      for (let y = 0; y < count; y++) {
        const w = weights[yy * kernelSize + y];
        const p = ((y + ymin) * sourceWidth + x) * 3;
        r += source[p] * w;
        g += source[p + 1] * w;
        b += source[p + 2] * w;
      }
      const q = (yy * outWidth + x) * 3;
      out[q] = clip8(r);
      out[q + 1] = clip8(g);
      out[q + 2] = clip8(b);
    }
  }
  return out;
}

export interface ClipPreprocessing {
  /** Side of the square network input (224 for the public CLIP models). */
  imageSize: number;
  mean: readonly [number, number, number];
  std: readonly [number, number, number];
}

/** OpenAI CLIP's image processor settings (all public CLIP ViT checkpoints use them). */
export const OPENAI_CLIP_PREPROCESSING: ClipPreprocessing = {
  imageSize: 224,
  mean: [0.48145466, 0.4578275, 0.40821073],
  std: [0.26862954, 0.26130258, 0.27577711],
};

/**
 * CLIPImageProcessor: shortest edge to `imageSize` (the other edge `trunc(size * long /
 * short)`), Pillow bicubic, centre crop (offsets floored), then (x / 255 − mean) / std, as
 * one CHW float32 plane set written into `target` at `offset`.
 */
export function clipPixelValues(
  image: PixelImage,
  settings: ClipPreprocessing = OPENAI_CLIP_PREPROCESSING,
  target: Float32Array = new Float32Array(3 * settings.imageSize * settings.imageSize),
  offset = 0,
): Float32Array {
  const size = settings.imageSize;
  const rgb = toRgb8(image);
  const { width, height } = image;
  const [outWidth, outHeight] = width <= height ? [size, Math.trunc((size * height) / width)] : [Math.trunc((size * width) / height), size];
  const resized = resizeBicubicLikePillow(rgb, width, height, outWidth, outHeight);
  const top = Math.floor((outHeight - size) / 2);
  const left = Math.floor((outWidth - size) / 2);
  const plane = size * size;
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const p = ((y + top) * outWidth + (x + left)) * 3;
      for (let c = 0; c < 3; c++) {
        target[offset + c * plane + y * size + x] = (resized[p + c] / 255 - settings.mean[c]) / settings.std[c];
      }
    }
  }
  return target;
}
