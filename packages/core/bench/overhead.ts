// Engine overhead: the same block stack run without the engine, and with it at threshold 0
// (nothing can be cached, so the chain runs straight through) and, for every cache policy, at a
// setting no step reaches (every residual, diff, forecast and buffer the policy keeps is
// computed and stored, nothing is reused: the "never cache" acceptance line is that
// this costs under 2%), timed in one process, interleaved round by round; the speed of a run
// that caches every step after warmup, against the ideal from the blocks it computed; and the
// engine's own time per call, measured on blocks that cost almost nothing, since a shared
// machine's noise in the end-to-end times is larger than the engine's cost; there also with each
// call run the way a pipeline runs it (runTransformerCall, telling the engine its step and
// branch). A "never cache" run that skips any block fails the bench: its time would not be
// the bookkeeping's.
//
// Blocks: FLUX's single-stream block (AdaLN modulation, fused QKV + MLP input, attention,
// GELU MLP, fused output projection, gated residual) at 256 tokens, with the hidden size
// scaled from 3072 to 1024 (8 heads of 128, FLUX's head size) so a run takes seconds on two
// cores. A block then costs ~6.7 GFLOP; the engine's own work per call grows with tokens x
// hidden, so the scaled stack overstates the engine's share about 3x against real FLUX blocks.
import * as rt from '@ditcache/cuda-runtime';

import { BlockAdapter, disableCache, enableCache, ForwardPattern, runTransformerCall, summary, type CacheConfigInput, type TensorOps } from '../src/index.js';

const TOKENS = 256;
const HIDDEN = 1024;
const HEADS = 8;
const MLP = 4 * HIDDEN;
const BLOCKS = 6;
const STEPS = 4;
// 6 rounds rather than 12 since every policy has a row: the bench stays within a few minutes on
// two cores.
const ROUNDS = 6;

const runtimeOps: TensorOps<rt.Tensor> = {
  sub: (a, b) => rt.sub(a, b),
  add: (a, b) => rt.add(a, b),
  scale: (a, s) => rt.mul(a, s),
  addScaled: (a, b, s) => rt.tidy(() => rt.add(a, rt.mul(b, s))),
  relL1: (a, b) => rt.relL1(a, b),
  shape: (a) => a.shape,
  clone: (a) => a.clone(),
  retain: (a) => a.keep(),
  release: (a) => a.dispose(),
  // DMD reads its snapshots to the host; MagCache's calibration measures per-token norms.
  toFloat64: (a) => Float64Array.from(a.toFloat32Array()),
  fromFloat64: (values, like) => rt.tensor(Float32Array.from(values), like.shape),
  rowNorms: (a) => rt.tidy(() => Float64Array.from(rt.sqrt(rt.sum(rt.square(a), -1)).toFloat32Array())),
};

let seed = 1;
function randn(shape: number[], scale: number): rt.Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
    data[i] = (seed / 2 ** 32 - 0.5) * 2 * scale;
  }
  return rt.tensor(data, shape);
}

class SingleStreamBlock {
  private readonly modulation = randn([3 * HIDDEN, HIDDEN], 0.02);
  private readonly qkvMlp = randn([3 * HIDDEN + MLP, HIDDEN], 1 / Math.sqrt(HIDDEN));
  private readonly out = randn([HIDDEN, HIDDEN + MLP], 1 / Math.sqrt(HIDDEN + MLP));

  forward(h: rt.Tensor, temb: rt.Tensor): rt.Tensor {
    return rt.tidy(() => {
      const [shift, scale, gate] = rt.linear(rt.silu(temb), this.modulation).split(3, -1);
      const x = rt.add(rt.mul(rt.layerNorm(h, null, null, 1e-6), rt.add(scale, 1)), shift);
      const [q, k, v, mlpIn] = rt.linear(x, this.qkvMlp).split([HIDDEN, HIDDEN, HIDDEN, MLP], -1);
      const heads = (t: rt.Tensor) => t.reshape(1, TOKENS, HEADS, HIDDEN / HEADS).transpose(1, 2);
      const attention = rt.attention(heads(q), heads(k), heads(v), { headsLast: true }).reshape(TOKENS, HIDDEN);
      const mixed = rt.linear(rt.concat([attention, rt.gelu(mlpIn, { approximate: 'tanh' })], -1), this.out);
      return rt.add(h, rt.mul(gate, mixed));
    });
  }
}

class Stack {
  transformerBlocks = Array.from({ length: BLOCKS }, () => new SingleStreamBlock());

  forward(h: rt.Tensor, temb: rt.Tensor): rt.Tensor {
    let x = h;
    for (const block of this.transformerBlocks) {
      const next = block.forward(x, temb);
      if (x !== h) x.dispose();
      x = next;
    }
    return x;
  }
}

const stack = new Stack();
const latents = randn([TOKENS, HIDDEN], 1);
const temb = randn([1, HIDDEN], 1);

/** One denoising-like run: the stack on latents that drift from step to step. */
function run(): number {
  const start = performance.now();
  for (let step = 0; step < STEPS; step++) {
    const x = rt.mul(latents, 1 - step / (2 * STEPS));
    stack.forward(x, temb).dispose();
    x.dispose();
  }
  return performance.now() - start;
}

// Every engine run is a run of STEPS steps (numInferenceSteps: the cheap stack's calls below
// start a new run every STEPS calls, as the end-to-end runs do), F1B0, one warmup step
// (MagCache has no warmup key: its retention ratio keeps round(0.2 x STEPS) = 1 step).
const engine = (cache: CacheConfigInput): CacheConfigInput => ({
  Fn_compute_blocks: 1,
  Bn_compute_blocks: 0,
  num_inference_steps: STEPS,
  ...(cache.policy === 'magcache' ? {} : { max_warmup_steps: 1 }),
  ...cache,
});
// Ratios whose predicted error (|1 - 0.9| per step) is above any threshold below: nothing skipped.
const magRatios = Array.from({ length: STEPS }, () => 0.9);
/** Each policy at a setting that keeps all its bookkeeping and caches nothing. */
const neverCache: [string, CacheConfigInput][] = [
  ['dbcache, threshold 1e-9 (full bookkeeping, nothing cached)', engine({ residual_diff_threshold: 1e-9 })],
  [
    'dbcache, threshold 1e-9, TaylorSeer 1',
    engine({ residual_diff_threshold: 1e-9, enable_calibrator: true, calibrator_type: 'taylorseer', taylorseer_order: 1 }),
  ],
  ['dbcache, threshold 1e-9, FoCa', engine({ residual_diff_threshold: 1e-9, enable_calibrator: true, calibrator_type: 'foca' })],
  ['dbcache, threshold 1e-9, DMD', engine({ residual_diff_threshold: 1e-9, enable_calibrator: true, calibrator_type: 'dmd' })],
  [
    'scm medium dynamic, threshold 1e-9, TaylorSeer 1',
    engine({ policy: 'scm', mask_policy: 'medium', steps_computation_policy: 'dynamic', residual_diff_threshold: 1e-9, taylorseer_order: 1 }),
  ],
  ['magcache, threshold 1e-9, given ratios', engine({ policy: 'magcache', Fn_compute_blocks: 0, threshold: 1e-9, mag_ratios: magRatios })],
  ['magcache, calibrate', engine({ policy: 'magcache', Fn_compute_blocks: 0, calibrate: true })],
  ['dbprune, threshold 1e-9', engine({ policy: 'dbprune', residual_diff_threshold: 1e-9 })],
];
const NEVER = new Set(neverCache.map(([name]) => name));

const configs: [string, CacheConfigInput | null][] = [
  ['no engine', null],
  ['engine, threshold 0', engine({ residual_diff_threshold: 0 })],
  ...neverCache,
  ['engine, caching every step after warmup', engine({ residual_diff_threshold: 1 })],
];

/** A "never cache" run that skipped a block measured something else: stop rather than report it. */
function checkNothingCached(name: string, computedFraction: number): void {
  if (NEVER.has(name) && computedFraction !== 1) {
    throw new Error(`bench: '${name}' is meant to cache nothing, yet computed ${(computedFraction * 100).toFixed(1)}% of its blocks`);
  }
}

function timed(config: CacheConfigInput | null): { ms: number; computedFraction: number } {
  if (!config) return { ms: run(), computedFraction: 1 };
  enableCache(new BlockAdapter({ transformer: stack, blocks: 'transformerBlocks', forwardPattern: ForwardPattern.Pattern_3, ops: runtimeOps }), config);
  const ms = run();
  const stats = summary(stack, { print: false });
  disableCache(stack);
  return { ms, computedFraction: stats.computedBlocks / stats.totalBlocks };
}

const median = (xs: number[]) => {
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = sorted.length / 2;
  return Number.isInteger(mid) ? (sorted[mid - 1] + sorted[mid]) / 2 : sorted[Math.floor(mid)];
};

const baseline = rt.memoryStats().liveTensors;
configs.forEach(([, config]) => timed(config)); // warm up allocations and JIT
const times = configs.map(() => [] as number[]);
const fractions = configs.map(() => 1);
for (let round = 0; round < ROUNDS; round++) {
  // The machine may be shared: alternate the order and compare runs of the same round.
  const order = configs.map((_, i) => i);
  if (round % 2 === 1) order.reverse();
  for (const i of order) {
    const r = timed(configs[i][1]);
    times[i].push(r.ms);
    fractions[i] = r.computedFraction;
    checkNothingCached(configs[i][0], r.computedFraction);
  }
}

console.log(
  `Engine overhead: ${BLOCKS} FLUX single-stream blocks (hidden ${HIDDEN}, ${HEADS} heads, ${TOKENS} tokens), ${STEPS} steps per run, ${ROUNDS} rounds`,
);
console.log(`CPU threads: ${rt.numThreads()}, GEMM: ${rt.gemmBackend()}`);
console.log('');
console.log('| Run | Median ms | Median of per-round ratios | Ratio of fastest runs | Blocks computed (ideal ratio) |');
console.log('|---|---|---|---|---|');
configs.forEach(([name], i) => {
  const ratios = times[i].map((ms, round) => ms / times[0][round]);
  const fastest = Math.min(...times[i]) / Math.min(...times[0]);
  console.log(
    `| ${name} | ${median(times[i]).toFixed(1)} | ${median(ratios).toFixed(4)} | ${fastest.toFixed(4)} | ${(fractions[i] * 100).toFixed(1)}% (${fractions[i].toFixed(4)}) |`,
  );
});

// The engine's own time per call, apart from the blocks: the same configurations on a stack of
// blocks that cost almost nothing (one elementwise op each), over many calls, interleaved.
class CheapStack {
  transformerBlocks = Array.from({ length: BLOCKS }, () => ({ forward: (h: rt.Tensor) => rt.mul(h, 1.0001) }));

  forward(h: rt.Tensor): rt.Tensor {
    let x = h;
    for (const block of this.transformerBlocks) {
      const next = block.forward(x);
      if (x !== h) x.dispose();
      x = next;
    }
    return x;
  }
}
const cheap = new CheapStack();
const CHEAP_CALLS = 400;
function cheapRun(name: string, config: CacheConfigInput | null, announced: boolean): number {
  if (config)
    enableCache(new BlockAdapter({ transformer: cheap, blocks: 'transformerBlocks', forwardPattern: ForwardPattern.Pattern_3, ops: runtimeOps }), config);
  const start = performance.now();
  for (let call = 0; call < CHEAP_CALLS; call++) {
    const x = rt.mul(latents, 1 - (call % STEPS) / (2 * STEPS));
    const step = call % STEPS;
    const out = announced ? runTransformerCall(cheap, { step, numSteps: STEPS, branch: 'cond' }, () => cheap.forward(x)) : cheap.forward(x);
    out.dispose();
    x.dispose();
  }
  const ms = performance.now() - start;
  if (config) {
    const stats = summary(cheap, { print: false });
    checkNothingCached(name, stats.computedBlocks / stats.totalBlocks);
    disableCache(cheap);
  }
  return ms / CHEAP_CALLS;
}
const cheapConfigs: [string, CacheConfigInput | null, boolean][] = [
  ...configs.slice(0, -1).map(([name, config]): [string, CacheConfigInput | null, boolean] => [name, config, false]),
  ['engine, threshold 0, each call run as a pipeline runs it', configs[1][1], true],
];
const perCall = cheapConfigs.map(() => [] as number[]);
for (let round = 0; round < ROUNDS; round++) cheapConfigs.forEach(([name, config, announced], i) => perCall[i].push(cheapRun(name, config, announced)));
const stackPerCall = median(times[0]) / STEPS;
console.log('');
console.log(`The engine's own time per call, against ${stackPerCall.toFixed(1)} ms per call of the stack above:`);
console.log('');
console.log('| Run | ms per call, cheap blocks | Engine ms per call | Share of a stack call |');
console.log('|---|---|---|---|');
cheapConfigs.forEach(([name], i) => {
  const own = median(perCall[i]) - median(perCall[0]);
  console.log(`| ${name} | ${median(perCall[i]).toFixed(3)} | ${own.toFixed(3)} | ${((own / stackPerCall) * 100).toFixed(3)}% |`);
});

const leaked = rt.memoryStats().liveTensors - baseline;
console.log('');
console.log(`Tensors left alive by the engine after disableCache: ${leaked}`);
for (const t of [latents, temb]) t.dispose();
