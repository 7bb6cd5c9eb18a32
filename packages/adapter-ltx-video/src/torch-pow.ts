// torch's float32 `10000 ** x` on the CPU, as diffusers' LTX rotary embedding computes its
// frequencies: ATen's pow kernel runs SLEEF's powf (Sleef_powf16_u10, accurate to 1 ulp, not
// correctly rounded) on whole vectors, two AVX-512 vectors (32 floats) at a time, and the scalar
// powf on the rest. A one-ulp difference in a frequency moves angles of thousands of radians by
// far more than float32 parity allows, so the vector part is SLEEF's algorithm step for step here:
// exp of the double-float product of SLEEF's log(10000) and x, with its fused multiply-adds
// emulated exactly. The scalar part is the correctly rounded power (glibc's powf, within 0.82 ulp,
// agrees with it but for rare near-ties).

const f32 = Math.fround;

/** Floats torch's vectorised loop takes at a time on AVX-512 (two 16-float vectors). */
export const TORCH_VECTOR_CHUNK = 32;

/** SLEEF's logkf(10000) as its double-float pair (hi, lo): computed once with SLEEF's algorithm. */
const LOG_10000: readonly [number, number] = [0x126bb1c * 2 ** -21, -0x112aad * 2 ** -43];
// SLEEF's float constants (misc.h, expkf), as the float64 literals that round to them.
const L2U = f32(0.693145751953125);
const L2L = f32(0.000001428606765330187);
const R_LN2 = f32(1.4426950408889634);
const EXP_POLY = [0.00836596917361021, 0.04167108237743378, 0.16666552424430847, 0.49999985098838806].map(f32);
const EXP_POLY_0 = f32(0.0013632464688271284);

const bits = new Float32Array(1);
const intBits = new Int32Array(bits.buffer);

/** The next float32 after f towards +inf (up) or -inf. */
function nextFloat(f: number, up: boolean): number {
  bits[0] = f;
  if (f === 0) return up ? 2 ** -149 : -(2 ** -149);
  intBits[0] += f > 0 === up ? 1 : -1;
  return bits[0];
}

/** The exact value s + err (err a float64 remainder of s) rounded once to float32, ties to even. */
function roundSum(s: number, err: number): number {
  const f = f32(s);
  if (err === 0 || f === s) return f;
  const other = nextFloat(f, s > f);
  // s lies strictly between f and other; only a tie at their midpoint depends on err.
  if (s !== (f + other) / 2) return f;
  return err > 0 === other > f ? other : f;
}

/** fma(a, b, c) in float32: a * b + c rounded once (a * b is exact in float64; the sum's remainder by TwoSum). */
export function fmaf(a: number, b: number, c: number): number {
  const p = a * b;
  const s = p + c;
  const bb = s - p;
  return roundSum(s, p - (s - bb) + (c - bb));
}

const add = (a: number, b: number): number => f32(a + b);
const sub = (a: number, b: number): number => f32(a - b);
const mul = (a: number, b: number): number => f32(a * b);
type DF = [number, number];

/** SLEEF's double-float helpers (df.h, the FMA forms). */
const dfmulF = (x: DF, y: number): DF => {
  const s = mul(x[0], y);
  return [s, fmaf(x[1], y, fmaf(x[0], y, -s))];
};
const dfsqu = (x: DF): DF => {
  const s = mul(x[0], x[0]);
  return [s, fmaf(add(x[0], x[0]), x[1], fmaf(x[0], x[0], -s))];
};
const dfadd2F = (x: DF, y: number): DF => {
  const s = add(x[0], y);
  const v = sub(s, x[0]);
  return [s, add(add(sub(x[0], sub(s, v)), sub(y, v)), x[1])];
};
const dfadd = (x: DF, y: DF): DF => {
  const s = add(x[0], y[0]);
  return [s, add(add(add(sub(x[0], s), y[0]), x[1]), y[1])];
};
const dfaddScalar = (x: number, y: DF): DF => {
  const s = add(x, y[0]);
  return [s, add(add(sub(x, s), y[0]), y[1])];
};
const dfnormalize = (t: DF): DF => {
  const s = add(t[0], t[1]);
  return [s, add(sub(t[0], s), t[1])];
};

/** Round half to even, as the vector conversion does. */
function rint(u: number): number {
  const r = Math.round(u);
  return r - u === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** SLEEF's expkf of a double-float. */
function expkf(d: DF): number {
  const q = rint(mul(add(d[0], d[1]), R_LN2));
  let s = dfadd2F(d, mul(q, -L2U));
  s = dfadd2F(s, mul(q, -L2L));
  s = dfnormalize(s);
  let u = EXP_POLY_0;
  for (const c of EXP_POLY) u = fmaf(u, s[0], c);
  let t = dfadd(s, dfmulF(dfsqu(s), u));
  t = dfaddScalar(1, t);
  return f32(add(t[0], t[1]) * 2 ** q);
}

/** Sleef_powf_u10(10000, x) for a float32 x in [0, 1]. */
export function sleefPow10000(x: number): number {
  return expkf(dfmulF([LOG_10000[0], LOG_10000[1]], f32(x)));
}

/** torch's `10000 ** exponents` on a float32 CPU tensor: SLEEF on the vectorised chunks, the correctly rounded power on the rest. */
export function torchPow10000(exponents: Float32Array): Float32Array {
  const vectorised = Math.floor(exponents.length / TORCH_VECTOR_CHUNK) * TORCH_VECTOR_CHUNK;
  return exponents.map((x, i) => (i < vectorised ? sleefPow10000(x) : f32(10000 ** x)));
}
