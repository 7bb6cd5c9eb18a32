import { MetricsError } from './errors.js';
import type { PixelData, PixelImage } from './image.js';

/**
 * NumPy `.npy` files (format versions 1-3, C order, little-endian), the usual way to hand a
 * float image or a decoded frame from Python to the metrics without quantising it to 8 bits.
 * Shapes (H, W) and (H, W, C) are images; float samples are taken to lie in [0, 1].
 */

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // "\x93NUMPY"

type NpyDescr = '|u1' | '<u2' | '<f4' | '<f8';

const DESCR_ALIASES: Record<string, NpyDescr> = {
  '|u1': '|u1',
  '<u1': '|u1',
  '=u1': '|u1',
  '<u2': '<u2',
  '=u2': '<u2',
  '<f4': '<f4',
  '=f4': '<f4',
  '<f8': '<f8',
  '=f8': '<f8',
};

export interface NpyArray {
  shape: number[];
  data: PixelData;
}

export function parseNpy(bytes: Uint8Array, label = 'npy'): NpyArray {
  if (bytes.length < 10 || MAGIC.some((m, i) => bytes[i] !== m)) {
    throw new MetricsError(`${label}: not a .npy file (bad magic bytes)`);
  }
  const major = bytes[6];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let headerLength: number;
  let headerStart: number;
  if (major === 1) {
    headerLength = view.getUint16(8, true);
    headerStart = 10;
  } else if (major === 2 || major === 3) {
    headerLength = view.getUint32(8, true);
    headerStart = 12;
  } else {
    throw new MetricsError(`${label}: unsupported .npy format version ${major}`);
  }
  const header = new TextDecoder(major === 3 ? 'utf-8' : 'latin1').decode(bytes.subarray(headerStart, headerStart + headerLength));
  const descrMatch = /'descr'\s*:\s*'([^']+)'/.exec(header);
  const fortranMatch = /'fortran_order'\s*:\s*(True|False)/.exec(header);
  const shapeMatch = /'shape'\s*:\s*\(([^)]*)\)/.exec(header);
  if (!descrMatch || !fortranMatch || !shapeMatch) {
    throw new MetricsError(`${label}: malformed .npy header ${JSON.stringify(header.trim())}`);
  }
  const descr = DESCR_ALIASES[descrMatch[1]];
  if (!descr) {
    throw new MetricsError(`${label}: unsupported .npy dtype ${descrMatch[1]} (supported: uint8, little-endian uint16, float32, float64)`);
  }
  if (fortranMatch[1] === 'True') {
    throw new MetricsError(`${label}: Fortran-ordered .npy arrays are not supported (save with np.ascontiguousarray)`);
  }
  const shape = shapeMatch[1]
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0)
    .map((s) => Number.parseInt(s, 10));
  const count = shape.reduce((p, d) => p * d, 1);
  const dataStart = headerStart + headerLength;
  const itemSize = descr === '|u1' ? 1 : descr === '<u2' ? 2 : descr === '<f4' ? 4 : 8;
  if (bytes.length - dataStart < count * itemSize) {
    throw new MetricsError(
      `${label}: truncated .npy file: shape (${shape.join(', ')}) needs ${count * itemSize} data bytes, found ${bytes.length - dataStart}`,
    );
  }
  // Copy into a fresh, aligned buffer: the header length only guarantees alignment relative
  // to the file start, not to the Node buffer pool the file was read into. (Buffer#slice
  // would return a view, hence the explicit copy.)
  const raw = new Uint8Array(count * itemSize);
  raw.set(bytes.subarray(dataStart, dataStart + count * itemSize));
  const data: PixelData =
    descr === '|u1'
      ? raw
      : descr === '<u2'
        ? new Uint16Array(raw.buffer, 0, count)
        : descr === '<f4'
          ? new Float32Array(raw.buffer, 0, count)
          : new Float64Array(raw.buffer, 0, count);
  return { shape, data };
}

export function npyToImage(array: NpyArray, label = 'npy'): PixelImage {
  const { shape, data } = array;
  if (shape.length === 2) return { height: shape[0], width: shape[1], channels: 1, data };
  if (shape.length === 3) return { height: shape[0], width: shape[1], channels: shape[2], data };
  throw new MetricsError(`${label}: a .npy image must have shape (H, W) or (H, W, C), got (${shape.join(', ')})`);
}

/** Serialises an image as a version-1 `.npy` file of shape (H, W, C) (or (H, W) for one channel). */
export function encodeNpy(image: PixelImage): Uint8Array {
  const { data } = image;
  const descr =
    data instanceof Uint8Array || data instanceof Uint8ClampedArray
      ? '|u1'
      : data instanceof Uint16Array
        ? '<u2'
        : data instanceof Float32Array
          ? '<f4'
          : '<f8';
  const shape = image.channels === 1 ? `(${image.height}, ${image.width})` : `(${image.height}, ${image.width}, ${image.channels})`;
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shape}, }`;
  // Pad with spaces so that magic + version + length + header + '\n' is a multiple of 64.
  const unpadded = 10 + header.length + 1;
  header += ' '.repeat((64 - (unpadded % 64)) % 64) + '\n';
  const body = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const out = new Uint8Array(10 + header.length + body.length);
  out.set(MAGIC, 0);
  out[6] = 1;
  out[7] = 0;
  new DataView(out.buffer).setUint16(8, header.length, true);
  for (let i = 0; i < header.length; i++) out[10 + i] = header.charCodeAt(i);
  out.set(body, 10 + header.length);
  return out;
}
