// T5's relative position buckets: exact buckets for near positions, logarithmic ones up to
// max_distance, keys after the query in the upper half (bidirectional, as in the encoder). The
// logarithm runs in float32 step by step, as torch computes it, so that positions at bucket
// boundaries land where transformers puts them.

/** Bucket of the relative position `keyPos - queryPos`. */
export function relativePositionBucket(relative: number, numBuckets: number, maxDistance: number): number {
  const half = Math.floor(numBuckets / 2);
  let bucket = relative > 0 ? half : 0;
  const distance = Math.abs(relative);
  const maxExact = Math.floor(half / 2);
  if (distance < maxExact) return bucket + distance;
  const f = Math.fround;
  const scaled = f(f(f(Math.log(f(distance / maxExact))) / f(Math.log(maxDistance / maxExact))) * (half - maxExact));
  bucket += Math.min(maxExact + Math.trunc(scaled), half - 1);
  return bucket;
}

/** (queries, keys) bucket indices, row-major, for a sequence of `length` tokens. */
export function positionBuckets(length: number, numBuckets: number, maxDistance: number): Int32Array {
  const byOffset = new Int32Array(2 * length - 1);
  for (let r = -(length - 1); r < length; r++) byOffset[r + length - 1] = relativePositionBucket(r, numBuckets, maxDistance);
  const out = new Int32Array(length * length);
  for (let q = 0; q < length; q++) for (let k = 0; k < length; k++) out[q * length + k] = byOffset[k - q + length - 1];
  return out;
}
