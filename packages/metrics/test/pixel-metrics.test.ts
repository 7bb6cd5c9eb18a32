import { describe, expect, it } from 'vitest';
import { mae, MetricsError, mse, pixelImage, psnr, ssim } from '../src/index.js';
import { Lcg } from './helpers/synthetic.js';

function randomRgb(width: number, height: number, seed: number): Uint8Array {
  const g = new Lcg(seed);
  return Uint8Array.from({ length: width * height * 3 }, () => g.next() >>> 24);
}

describe('PSNR, MSE, MAE on raw pixel buffers', () => {
  it('widens before subtracting: no uint8 wraparound', () => {
    // 3 - 5 as uint8 is 254; the error must be 2 per sample, not 254.
    const a = pixelImage(new Uint8Array([3, 3, 3, 250]), 2, 2, 1);
    const b = pixelImage(new Uint8Array([5, 5, 5, 255]), 2, 2, 1);
    expect(mse(a, b)).toBe((3 * 4 + 25) / 4);
    expect(mae(a, b)).toBe((3 * 2 + 5) / 4);
    expect(psnr(a, b)).toBeCloseTo(10 * Math.log10((255 * 255) / 9.25), 12);
  });

  it('gives Infinity for identical images', () => {
    const pixels = randomRgb(8, 8, 1);
    expect(psnr(pixelImage(pixels, 8, 8, 3), pixelImage(pixels.slice(), 8, 8, 3))).toBe(Infinity);
  });

  it('uses the data range of the sample type, or the one given', () => {
    const a8 = pixelImage(new Uint8Array([0, 10]), 2, 1, 1);
    const b8 = pixelImage(new Uint8Array([0, 20]), 2, 1, 1);
    expect(psnr(a8, b8)).toBeCloseTo(10 * Math.log10(255 ** 2 / 50), 12);
    const a16 = pixelImage(new Uint16Array([0, 10]), 2, 1, 1);
    const b16 = pixelImage(new Uint16Array([0, 20]), 2, 1, 1);
    expect(psnr(a16, b16)).toBeCloseTo(10 * Math.log10(65535 ** 2 / 50), 12);
    const af = pixelImage(new Float32Array([0, 0.5]), 2, 1, 1);
    const bf = pixelImage(new Float32Array([0, 0.25]), 2, 1, 1);
    expect(psnr(af, bf)).toBeCloseTo(10 * Math.log10(1 / (0.0625 / 2)), 12);
    expect(psnr(af, bf, { dataRange: 2 })).toBeCloseTo(10 * Math.log10(4 / (0.0625 / 2)), 12);
  });

  it('names the problem when images cannot be compared', () => {
    const rgb = pixelImage(randomRgb(4, 4, 2), 4, 4, 3);
    expect(() => mse(rgb, pixelImage(randomRgb(4, 5, 3), 4, 5, 3))).toThrow(/size mismatch: image 1 is 4x4, image 2 is 4x5/);
    expect(() => mse(rgb, pixelImage(new Uint8Array(16), 4, 4, 1))).toThrow(/channel mismatch/);
    expect(() => mse(rgb, pixelImage(new Uint16Array(48), 4, 4, 3))).toThrow(/sample type mismatch: image 1 is uint8, image 2 is uint16/);
    expect(() => pixelImage(new Uint8Array(10), 4, 4, 3)).toThrow(MetricsError);
  });
});

describe('SSIM', () => {
  it('is 1 for identical images and symmetric in its arguments', () => {
    const a = pixelImage(randomRgb(16, 12, 4), 16, 12, 3);
    const b = pixelImage(randomRgb(16, 12, 5), 16, 12, 3);
    expect(ssim(a, a)).toBe(1);
    expect(ssim(a, b)).toBeCloseTo(ssim(b, a), 14);
    expect(ssim(a, b, { window: 'gaussian' })).toBeCloseTo(ssim(b, a, { window: 'gaussian' }), 14);
  });

  it('equals a direct float64 evaluation of the formula on a 7x7 image (one window)', () => {
    const g = new Lcg(6);
    const x = Float64Array.from({ length: 49 }, () => g.next() >>> 24);
    const y = Float64Array.from({ length: 49 }, () => g.next() >>> 24);
    const mean = (v: Float64Array): number => v.reduce((s, t) => s + t, 0) / v.length;
    const mx = mean(x);
    const my = mean(y);
    let vx = 0;
    let vy = 0;
    let vxy = 0;
    for (let i = 0; i < 49; i++) {
      vx += (x[i] - mx) ** 2;
      vy += (y[i] - my) ** 2;
      vxy += (x[i] - mx) * (y[i] - my);
    }
    vx /= 48;
    vy /= 48;
    vxy /= 48;
    const c1 = (0.01 * 255) ** 2;
    const c2 = (0.03 * 255) ** 2;
    const expected = ((2 * mx * my + c1) * (2 * vxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2));
    const actual = ssim(pixelImage(Uint8Array.from(x), 7, 7, 1), pixelImage(Uint8Array.from(y), 7, 7, 1));
    expect(actual).toBeCloseTo(expected, 13);
  });

  it('refuses images smaller than the window and bad window options', () => {
    const small = pixelImage(new Uint8Array(6 * 20), 6, 20, 1);
    expect(() => ssim(small, small)).toThrow(/smaller than the 7x7 window/);
    const big = pixelImage(new Uint8Array(100), 10, 10, 1);
    expect(() => ssim(big, big, { window: 'gaussian' })).toThrow(/smaller than the 11x11 window/);
    expect(() => ssim(big, big, { windowSize: 4 })).toThrow(/odd integer/);
  });
});
