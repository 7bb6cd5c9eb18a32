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

/** cos and sin of 2πk/n for k in [0, n): a twiddle for frequency f at index j is entry (f·j mod n). */
function twiddles(n: number): { cos: Float64Array; sin: Float64Array } {
  const cos = new Float64Array(n);
  const sin = new Float64Array(n);
  for (let k = 0; k < n; k++) {
    cos[k] = Math.cos((2 * Math.PI * k) / n);
    sin[k] = Math.sin((2 * Math.PI * k) / n);
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
  const tw = twiddles(width);
  const th = twiddles(height);
  const out = new Float64Array(values.length);
  // rows[y][s]: the DFT along W of row y at frequency s - r; spec[t][s]: then along H at t - r.
  const rowRe = new Float64Array(height * freqs);
  const rowIm = new Float64Array(height * freqs);
  const specRe = new Float64Array(freqs * freqs);
  const specIm = new Float64Array(freqs * freqs);
  const mod = (a: number, n: number) => ((a % n) + n) % n;
  for (let base = 0; base < values.length; base += plane) {
    for (let y = 0; y < height; y++) {
      for (let s = 0; s < freqs; s++) {
        const f = s - r;
        let re = 0;
        let im = 0;
        for (let x = 0; x < width; x++) {
          const v = values[base + y * width + x];
          const k = mod(f * x, width);
          re += v * tw.cos[k];
          im -= v * tw.sin[k];
        }
        rowRe[y * freqs + s] = re;
        rowIm[y * freqs + s] = im;
      }
    }
    for (let t = 0; t < freqs; t++) {
      const g = t - r;
      for (let s = 0; s < freqs; s++) {
        const f = s - r;
        let re = 0;
        let im = 0;
        if (f * f + g * g <= r * r) {
          for (let y = 0; y < height; y++) {
            const k = mod(g * y, height);
            const c = th.cos[k];
            const sn = th.sin[k];
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
          const k = mod((t - r) * y, height);
          const c = th.cos[k];
          const sn = th.sin[k];
          const a = specRe[t * freqs + s];
          const b = specIm[t * freqs + s];
          re += a * c - b * sn;
          im += a * sn + b * c;
        }
        rowRe[y * freqs + s] = re;
        rowIm[y * freqs + s] = im;
      }
      for (let x = 0; x < width; x++) {
        let re = 0;
        for (let s = 0; s < freqs; s++) {
          const k = mod((s - r) * x, width);
          re += rowRe[y * freqs + s] * tw.cos[k] - rowIm[y * freqs + s] * tw.sin[k];
        }
        out[base + y * width + x] = re / plane;
      }
    }
  }
  return out;
}
