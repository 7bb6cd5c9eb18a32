// FasterCache's low / high frequency split of a tensor's (H, W) planes, on the host in float64:
// the runtime has no FFT. FasterCache keeps the frequencies of the 2D DFT of each plane that lie
// within a disc of radius min(H, W) // 5 around frequency 0 (the centre of the fftshifted
// spectrum) as the low band, the rest as the high band. Only the few frequencies of the disc are
// needed, so the DFT is taken for them alone, separably (rows, then columns, and back), exactly
// for any H and W: O(H·W·r) per plane instead of a full transform.

/** The disc's radius in frequency steps for a plane of `height` x `width`. */
export function lowFrequencyRadius(height: number, width: number): number {
  return Math.floor(Math.min(height, width) / 5);
}

/**
 * cos and sin of 2π·f·j/n for the signed frequencies f = -r..r (rows) and j in [0, n): the
 * forward DFT's twiddles are (cos, -sin), the inverse's (cos, sin). The angle is reduced mod n
 * first, so large f·j lose no precision.
 */
function twiddles(n: number, r: number): { cos: Float64Array; sin: Float64Array } {
  const cos = new Float64Array((2 * r + 1) * n);
  const sin = new Float64Array((2 * r + 1) * n);
  for (let f = -r; f <= r; f++) {
    for (let j = 0; j < n; j++) {
      const k = (((f * j) % n) + n) % n;
      cos[(f + r) * n + j] = Math.cos((2 * Math.PI * k) / n);
      sin[(f + r) * n + j] = Math.sin((2 * Math.PI * k) / n);
    }
  }
  return { cos, sin };
}

/**
 * The low band of every (H, W) plane of `values` (row-major, planes contiguous, the last two
 * dims H and W): the inverse 2D DFT of the plane's spectrum restricted to the frequencies
 * (fy, fx), signed, with fy² + fx² <= r². The high band is `values` minus it.
 */
export function lowPassPlanes(values: Float64Array, height: number, width: number): Float64Array {
  const plane = height * width;
  if (plane === 0 || values.length % plane !== 0) {
    throw new RangeError(`lowPassPlanes: ${values.length} values are not whole ${height}x${width} planes`);
  }
  const r = lowFrequencyRadius(height, width);
  const freqs = 2 * r + 1; // signed frequencies -r..r along each dim (r < n / 2, so all distinct)
  const tw = twiddles(width, r);
  const th = twiddles(height, r);
  const out = new Float64Array(values.length);
  // row[y][s]: the DFT along W of row y at frequency s - r; spec[t][s]: then along H at t - r.
  const rowRe = new Float64Array(height * freqs);
  const rowIm = new Float64Array(height * freqs);
  const specRe = new Float64Array(freqs * freqs);
  const specIm = new Float64Array(freqs * freqs);
  for (let base = 0; base < values.length; base += plane) {
    for (let y = 0; y < height; y++) {
      const row = base + y * width;
      for (let s = 0; s < freqs; s++) {
        const at = s * width;
        let re = 0;
        let im = 0;
        for (let x = 0; x < width; x++) {
          const v = values[row + x];
          re += v * tw.cos[at + x];
          im -= v * tw.sin[at + x];
        }
        rowRe[y * freqs + s] = re;
        rowIm[y * freqs + s] = im;
      }
    }
    for (let t = 0; t < freqs; t++) {
      const at = t * height;
      for (let s = 0; s < freqs; s++) {
        let re = 0;
        let im = 0;
        if ((s - r) ** 2 + (t - r) ** 2 <= r * r) {
          for (let y = 0; y < height; y++) {
            const c = th.cos[at + y];
            const sn = th.sin[at + y];
            const a = rowRe[y * freqs + s];
            const b = rowIm[y * freqs + s];
            re += a * c + b * sn;
            im += b * c - a * sn;
          }
        }
        specRe[t * freqs + s] = re;
        specIm[t * freqs + s] = im;
      }
    }
    // Back: along H for each kept column frequency, then along W, keeping the real part.
    for (let y = 0; y < height; y++) {
      for (let s = 0; s < freqs; s++) {
        let re = 0;
        let im = 0;
        for (let t = 0; t < freqs; t++) {
          const c = th.cos[t * height + y];
          const sn = th.sin[t * height + y];
          const a = specRe[t * freqs + s];
          const b = specIm[t * freqs + s];
          re += a * c - b * sn;
          im += a * sn + b * c;
        }
        rowRe[y * freqs + s] = re;
        rowIm[y * freqs + s] = im;
      }
      const row = base + y * width;
      for (let x = 0; x < width; x++) out[row + x] = 0;
      for (let s = 0; s < freqs; s++) {
        const re = rowRe[y * freqs + s] / plane;
        const im = rowIm[y * freqs + s] / plane;
        const at = s * width;
        for (let x = 0; x < width; x++) out[row + x] += re * tw.cos[at + x] - im * tw.sin[at + x];
      }
    }
  }
  return out;
}
