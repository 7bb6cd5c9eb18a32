// Gaussian noise that reproduces torch.randn on a CPU generator seeded with manual_seed(seed),
// so that a seed here gives the initial latents a diffusers pipeline gets from
// torch.Generator('cpu').manual_seed(seed).
import { tensor, type Device, type DType, type Tensor } from '@ditcache/cuda-runtime';

const N = 624;
const M = 397;

/** The 32-bit Mersenne Twister (MT19937) with the reference init_genrand seeding, as torch's CPU generator. */
export class Mt19937 {
  private readonly state = new Uint32Array(N);
  private index = N;

  constructor(seed: number) {
    this.state[0] = seed >>> 0;
    for (let i = 1; i < N; ++i) {
      const prev = this.state[i - 1] ^ (this.state[i - 1] >>> 30);
      // 1812433253 * prev + i modulo 2^32, split in halves to stay exact in doubles.
      this.state[i] = ((((prev & 0xffff0000) >>> 16) * 1812433253) << 16) + (prev & 0x0000ffff) * 1812433253 + i;
    }
  }

  nextUint32(): number {
    if (this.index >= N) this.twist();
    let y = this.state[this.index++];
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }

  private twist(): void {
    const s = this.state;
    for (let k = 0; k < N; ++k) {
      const y = (s[k] & 0x80000000) | (s[(k + 1) % N] & 0x7fffffff);
      s[k] = s[(k + M) % N] ^ (y >>> 1) ^ (y & 1 ? 0x9908b0df : 0);
    }
    this.index = 0;
  }
}

const f32 = Math.fround;
const TWO_PI_F32 = f32(2 * Math.PI);

/** torch.Generator('cpu').manual_seed(seed)'s state: its MT19937 seeded with the low 32 bits of the seed. */
export function torchGenerator(seed: number): Mt19937 {
  if (!Number.isSafeInteger(seed) || seed < 0) throw new RangeError(`torchRandn: seed must be a non-negative integer, got ${seed}`);
  return new Mt19937(Number(BigInt(seed) & 0xffffffffn));
}

/**
 * `count` standard normal float32 values in the order torch.randn fills a contiguous float32
 * tensor of that many elements from a fresh generator seeded with `seed`.
 *
 * torch draws 24-bit uniforms for every element first, then turns each run of 16 into normals
 * by Box-Muller (elements j and j + 8 share a pair); a tail shorter than 16 redraws the last 16.
 * Tensors of fewer than 16 elements use another path, which this does not reproduce.
 */
export function torchRandn(count: number, seed: number): Float32Array {
  checkCount(count);
  return torchRandnFrom(torchGenerator(seed), count);
}

/**
 * The next `count` values torch.randn draws from `generator`, which advances as torch's does: two
 * calls give what two torch.randn calls on one generator give (diffusers draws the initial
 * latents and, later, other noise from one generator).
 */
export function torchRandnFrom(generator: Mt19937, count: number): Float32Array {
  checkCount(count);
  const uniform = (): number => (generator.nextUint32() & 0xffffff) / 0x1000000;
  const data = new Float32Array(count);
  for (let i = 0; i < count; ++i) data[i] = uniform();
  for (let i = 0; i + 16 <= count; i += 16) boxMuller16(data, i);
  if (count % 16 !== 0) {
    const start = count - 16;
    for (let i = 0; i < 16; ++i) data[start + i] = uniform();
    boxMuller16(data, start);
  }
  return data;
}

function checkCount(count: number): void {
  if (!Number.isInteger(count) || count < 16) {
    throw new RangeError(`torchRandn: needs at least 16 elements (torch draws smaller tensors differently), got ${count}`);
  }
}

function boxMuller16(data: Float32Array, at: number): void {
  for (let j = 0; j < 8; ++j) {
    const u1 = f32(1 - data[at + j]);
    const u2 = data[at + j + 8];
    const radius = f32(Math.sqrt(f32(-2 * f32(Math.log(u1)))));
    const theta = f32(TWO_PI_F32 * u2);
    data[at + j] = radius * f32(Math.cos(theta));
    data[at + j + 8] = radius * f32(Math.sin(theta));
  }
}

/**
 * A tensor of `shape` filled like torch.randn(shape, generator=manual_seed(seed), dtype=dtype):
 * float32 by default; in bfloat16 / float16 torch draws the float32 values and rounds them,
 * and so does this.
 */
export function randnTensor(shape: readonly number[], seed: number, opts: { device?: Device; dtype?: DType } = {}): Tensor {
  const count = shape.reduce((a, b) => a * b, 1);
  return tensor(torchRandn(count, seed), shape, { device: opts.device, dtype: opts.dtype });
}
