import { MetricsError } from './errors.js';

/** Pixel storage the metrics accept: 8-bit, 16-bit, or floating point samples. */
export type PixelData = Uint8Array | Uint8ClampedArray | Uint16Array | Float32Array | Float64Array;

/**
 * An image as the metrics see it: `height` rows of `width` pixels of `channels` interleaved
 * samples (HWC, row-major), the layout sharp's raw output and most tensors already have.
 *
 * `dataRange` is the distance between the smallest and largest value the samples can take.
 * When it is omitted it follows scikit-image's rule of taking it from the sample type:
 * 255 for 8-bit, 65535 for 16-bit, and 1 for floating point (images in [0, 1]).
 */
export interface PixelImage {
  readonly width: number;
  readonly height: number;
  readonly channels: number;
  readonly data: PixelData;
  readonly dataRange?: number;
}

export type SampleType = 'uint8' | 'uint16' | 'float';

export function sampleTypeOf(data: PixelData): SampleType {
  if (data instanceof Uint8Array || data instanceof Uint8ClampedArray) return 'uint8';
  if (data instanceof Uint16Array) return 'uint16';
  return 'float';
}

/** The default data range of a sample type (scikit-image's `dtype_range` span for integers). */
export function defaultDataRange(type: SampleType): number {
  switch (type) {
    case 'uint8':
      return 255;
    case 'uint16':
      return 65535;
    case 'float':
      return 1;
  }
}

export function dataRangeOf(image: PixelImage): number {
  return image.dataRange ?? defaultDataRange(sampleTypeOf(image.data));
}

/** Wraps raw interleaved pixels (for example an RGB frame a pipeline produced in memory). */
export function pixelImage(data: PixelData, width: number, height: number, channels: number, dataRange?: number): PixelImage {
  const image: PixelImage = { data, width, height, channels, dataRange };
  validateImage(image, 'image');
  return image;
}

export function validateImage(image: PixelImage, label: string): void {
  const { width, height, channels, data } = image;
  for (const [name, value] of [
    ['width', width],
    ['height', height],
    ['channels', channels],
  ] as const) {
    if (!Number.isInteger(value) || value <= 0) {
      throw new MetricsError(`${label}: ${name} must be a positive integer, got ${value}`);
    }
  }
  if (data.length !== width * height * channels) {
    throw new MetricsError(`${label}: ${data.length} samples do not fill ${height}x${width}x${channels} (${width * height * channels} expected)`);
  }
  if (image.dataRange !== undefined && !(image.dataRange > 0 && Number.isFinite(image.dataRange))) {
    throw new MetricsError(`${label}: dataRange must be a positive finite number, got ${image.dataRange}`);
  }
}

/**
 * Checks that two images can be compared sample by sample and returns the data range to use:
 * same size, same channel count, same sample type (comparing an 8-bit with a 16-bit image is
 * almost always a mistake, and scikit-image would pick the range of the first one silently).
 */
export function checkComparable(a: PixelImage, b: PixelImage, labelA = 'image 1', labelB = 'image 2'): number {
  validateImage(a, labelA);
  validateImage(b, labelB);
  if (a.width !== b.width || a.height !== b.height) {
    throw new MetricsError(`size mismatch: ${labelA} is ${a.width}x${a.height}, ${labelB} is ${b.width}x${b.height} (width x height)`);
  }
  if (a.channels !== b.channels) {
    throw new MetricsError(`channel mismatch: ${labelA} has ${a.channels} channels, ${labelB} has ${b.channels}`);
  }
  const typeA = sampleTypeOf(a.data);
  const typeB = sampleTypeOf(b.data);
  if (typeA !== typeB) {
    throw new MetricsError(`sample type mismatch: ${labelA} is ${typeA}, ${labelB} is ${typeB}`);
  }
  const rangeA = dataRangeOf(a);
  const rangeB = dataRangeOf(b);
  if (rangeA !== rangeB) {
    throw new MetricsError(`data range mismatch: ${labelA} has ${rangeA}, ${labelB} has ${rangeB}`);
  }
  return rangeA;
}
