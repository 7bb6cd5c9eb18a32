// Engine overhead: the same block stack run without the engine, and with it at threshold 0
// (nothing can be cached, so the chain runs straight through) and, for every cache policy, at a
// setting no step reaches (every residual, diff, forecast and buffer the policy keeps is
// computed and stored, nothing is reused: the "never cache" acceptance line is that
// this costs under 2%), timed in one process, interleaved round by round; the speed of a run
// that caches every step after warmup, against the ideal from the blocks it computed; and the
// engine's own time per call, measured on blocks that cost almost nothing, since a shared
// machine's noise in the end-to-end times is larger than the engine's cost; there also with each
// call run the way a pipeline runs it (runTransformerCall, telling the engine its step and
// branch). A "never cache" run that skips any block, reuses or forecasts any attention call or
// rebuilds any uncond call fails the bench: its time would not be the bookkeeping's.
//
// The policies that act on single attention calls (PAB, FasterCache) need the attention modules
// declared as sites, as the model adapters declare them: each block's attention is a module of
// its own, declared 'spatial' (diffusers' kind for FLUX's attention) in both stacks, so every
// row's engine wraps them as it would on FLUX. Their rows run each call as a pipeline runs it
// (they need the step and timestep), FasterCache's CFG rows with a cond and an uncond call per
// step, against a run without the engine that makes the same calls.
//
// Blocks: FLUX's single-stream block (AdaLN modulation, fused QKV + MLP input, attention,
// GELU MLP, fused output projection, gated residual) at 256 tokens, with the hidden size
// scaled from 3072 to 1024 (8 heads of 128, FLUX's head size) so a run takes seconds on two
// cores. A block then costs ~6.7 GFLOP; the engine's own work per call grows with tokens x
// hidden, so the scaled stack overstates the engine's share about 3x against real FLUX blocks.
import * as rt from '@ditcache/cuda-runtime';

import {
  BlockAdapter,
  disableCache,
  enableCache,
  ForwardPattern,
  runTransformerCall,
  summary,
  type AttentionSite,
  type CacheConfigInput,
  type CacheSummary,
  type CfgBranch,
  type TensorOps,
} from '../src/index.js';

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

/** The block's attention over its projected q, k, v: a module of its own, so adapters can declare it as a site. */
class Attention {
  forward(q: rt.Tensor, k: rt.Tensor, v: rt.Tensor): rt.Tensor {
    const heads = (t: rt.Tensor) => t.reshape(1, TOKENS, HEADS, HIDDEN / HEADS).transpose(1, 2);
    return rt.attention(heads(q), heads(k), heads(v), { headsLast: true }).reshape(TOKENS, HIDDEN);
  }
}

class SingleStreamBlock {
  readonly attn = new Attention();
  private readonly modulation = randn([3 * HIDDEN, HIDDEN], 0.02);
  private readonly qkvMlp = randn([3 * HIDDEN + MLP, HIDDEN], 1 / Math.sqrt(HIDDEN));
  private readonly out = randn([HIDDEN, HIDDEN + MLP], 1 / Math.sqrt(HIDDEN + MLP));

  forward(h: rt.Tensor, temb: rt.Tensor): rt.Tensor {
    return rt.tidy(() => {
      const [shift, scale, gate] = rt.linear(rt.silu(temb), this.modulation).split(3, -1);
      const x = rt.add(rt.mul(rt.layerNorm(h, null, null, 1e-6), rt.add(scale, 1)), shift);
      const [q, k, v, mlpIn] = rt.linear(x, this.qkvMlp).split([HIDDEN, HIDDEN, HIDDEN, MLP], -1);
      const attention = this.attn.forward(q, k, v);
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

/**
 * How a run makes its transformer calls: bare (the transformer called directly), each announced
 * as a pipeline's cond call (runTransformerCall with the step and timestep), or a cond and an
 * uncond call announced per step (a pipeline with separate CFG calls).
 */
type Calls = 'bare' | 'announced' | 'cfg';
const BRANCHES: Readonly<Record<Exclude<Calls, 'bare'>, readonly CfgBranch[]>> = { announced: ['cond'], cfg: ['cond', 'uncond'] };
const callsPerStep = (calls: Calls) => (calls === 'cfg' ? 2 : 1);
/** The timestep a pipeline announces at `step`: 1000, 750, 500, 250. */
const timestepAt = (step: number) => 1000 * (1 - step / STEPS);
// FasterCache splits uncond − cond into frequency bands over the last two dims of a (B, C, H, W)
// output, read to the host: a CFG call returns what a transformer returns, its tokens projected
// to FLUX's 64 latent channels (16 channels x a 2 x 2 patch: FLUX's proj_out), laid out as 64 planes of
// 16 x 16 tokens, 16K values, rather than the 256K of the hidden states.
const OUT_CHANNELS = 64;
const PLANE = Math.sqrt(TOKENS);
const projOut = randn([OUT_CHANNELS, HIDDEN], 1 / Math.sqrt(HIDDEN));

/** One step's transformer calls of `transformer`, made as `calls` says; their outputs disposed. */
function runStep(transformer: object, calls: Calls, step: number, forward: () => rt.Tensor): void {
  if (calls === 'bare') {
    forward().dispose();
    return;
  }
  const call = calls === 'cfg' ? () => asPlanes(forward()) : forward;
  for (const branch of BRANCHES[calls]) runTransformerCall(transformer, { step, numSteps: STEPS, branch, timestep: timestepAt(step) }, call).dispose();
}

function asPlanes(tokens: rt.Tensor): rt.Tensor {
  const planes = rt.tidy(() => rt.linear(tokens, projOut).transpose(0, 1).contiguous().reshape(1, OUT_CHANNELS, PLANE, PLANE));
  tokens.dispose();
  return planes;
}

/** One denoising-like run: the stack on latents that drift from step to step. */
function run(calls: Calls): number {
  const start = performance.now();
  for (let step = 0; step < STEPS; step++) {
    const x = rt.mul(latents, 1 - step / (2 * STEPS));
    runStep(stack, calls, step, () => stack.forward(x, temb));
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
// The attention policies take no block keys (their blocks always run; Fn 0 by default) and no
// warmup. A timestep range (-1, 0) holds none of the announced timesteps (1000 to 250), so every
// call is computed while everything a reuse would need is still kept.
const NO_TIMESTEP = [-1, 0];
const attentionEngine = (cache: CacheConfigInput): CacheConfigInput => ({ num_inference_steps: STEPS, ...cache });

interface Row {
  readonly name: string;
  readonly config: CacheConfigInput | null;
  readonly calls: Calls;
}
const bare = (name: string, config: CacheConfigInput | null): Row => ({ name, config, calls: 'bare' });

/** Each policy at a setting that keeps all its bookkeeping and caches nothing. */
const neverCache: Row[] = [
  bare('dbcache, threshold 1e-9 (full bookkeeping, nothing cached)', engine({ residual_diff_threshold: 1e-9 })),
  bare(
    'dbcache, threshold 1e-9, TaylorSeer 1',
    engine({ residual_diff_threshold: 1e-9, enable_calibrator: true, calibrator_type: 'taylorseer', taylorseer_order: 1 }),
  ),
  bare('dbcache, threshold 1e-9, FoCa', engine({ residual_diff_threshold: 1e-9, enable_calibrator: true, calibrator_type: 'foca' })),
  bare('dbcache, threshold 1e-9, DMD', engine({ residual_diff_threshold: 1e-9, enable_calibrator: true, calibrator_type: 'dmd' })),
  bare(
    'scm medium dynamic, threshold 1e-9, TaylorSeer 1',
    engine({ policy: 'scm', mask_policy: 'medium', steps_computation_policy: 'dynamic', residual_diff_threshold: 1e-9, taylorseer_order: 1 }),
  ),
  bare('magcache, threshold 1e-9, given ratios', engine({ policy: 'magcache', Fn_compute_blocks: 0, threshold: 1e-9, mag_ratios: magRatios })),
  bare('magcache, calibrate', engine({ policy: 'magcache', Fn_compute_blocks: 0, calibrate: true })),
  bare('dbprune, threshold 1e-9', engine({ policy: 'dbprune', residual_diff_threshold: 1e-9 })),
  {
    // A skip range of 1 computes every call, and PAB then keeps nothing: the sites' wrapper alone.
    name: 'pab, spatial skip range 1',
    config: attentionEngine({ policy: 'pab', spatial_attention_block_skip_range: 1 }),
    calls: 'announced',
  },
  {
    // Every output kept (a copy per call) for a reuse that the timestep range never allows.
    name: 'pab, spatial skip range 2, timestep range (-1, 0)',
    config: attentionEngine({ policy: 'pab', spatial_attention_block_skip_range: 2, spatial_attention_timestep_skip_range: NO_TIMESTEP }),
    calls: 'announced',
  },
  {
    // Every attention output kept as the newest of two for a forecast that skip range 1 never makes.
    name: 'fastercache, guidance-distilled, spatial skip range 1',
    config: attentionEngine({ policy: 'fastercache', is_guidance_distilled: true, spatial_attention_block_skip_range: 1 }),
    calls: 'announced',
  },
  {
    // No uncond call can be rebuilt, so nothing is kept: no cond copy, no deltas, no attention outputs.
    name: 'fastercache, CFG, uncond skip range 1',
    config: attentionEngine({ policy: 'fastercache', unconditional_batch_skip_range: 1 }),
    calls: 'cfg',
  },
  {
    // Each step's cond output copied, both outputs read to the host for the frequency deltas, and
    // every cond attention output kept, for a rebuild that the timestep range never allows.
    name: 'fastercache, CFG, uncond skip range 2, uncond timestep range (-1, 0)',
    config: attentionEngine({
      policy: 'fastercache',
      unconditional_batch_skip_range: 2,
      unconditional_batch_timestep_skip_range: NO_TIMESTEP,
      tensor_format: 'BCHW',
    }),
    calls: 'cfg',
  },
];
const NEVER = new Set(neverCache.map(({ name }) => name));
const ATTENTION_POLICIES = new Set(['pab', 'fastercache']);

const thresholdZero = bare('engine, threshold 0', engine({ residual_diff_threshold: 0 }));
const rows: Row[] = [
  bare('no engine', null),
  { name: 'no engine, a cond and an uncond call per step', config: null, calls: 'cfg' },
  thresholdZero,
  ...neverCache,
  bare('engine, caching every step after warmup', engine({ residual_diff_threshold: 1 })),
];
/** The row of `among` without the engine that makes the same calls, each row's time is compared with. */
const baselineOf = (row: Row, among: readonly Row[]) => among.findIndex((r) => r.config === null && callsPerStep(r.calls) === callsPerStep(row.calls));

/**
 * A "never cache" run that skipped a block, reused or forecast an attention call, or rebuilt an
 * uncond call measured something else; an attention policy's run whose sites saw fewer calls
 * than its blocks made measured less than its bookkeeping. Stop rather than report either.
 */
function checkNothingCached(row: Row, stats: CacheSummary): void {
  if (!NEVER.has(row.name)) return;
  const fail = (what: string): never => {
    throw new Error(`bench: '${row.name}' is meant to cache nothing, yet ${what}`);
  };
  if (stats.computedBlocks !== stats.totalBlocks) fail(`computed ${((stats.computedBlocks / stats.totalBlocks) * 100).toFixed(1)}% of its blocks`);
  const sitesCalled = BLOCKS * STEPS * callsPerStep(row.calls);
  for (const c of stats.contexts) {
    for (const [kind, k] of Object.entries(c.attention?.kinds ?? {})) if (k.skipped > 0) fail(`skipped ${k.skipped} of ${k.calls} ${kind} attention calls`);
    const rebuilt = c.callReport?.uncondSkippedSteps;
    if (Array.isArray(rebuilt) && rebuilt.length > 0) fail(`rebuilt the uncond call of steps ${rebuilt.join(', ')}`);
    const called = c.attention?.kinds.spatial?.calls ?? 0;
    if (ATTENTION_POLICIES.has(c.config.policy) && called !== sitesCalled) fail(`its attention sites saw ${called} calls of the run's ${sitesCalled}`);
  }
}

/** `transformer`'s BlockAdapter, each block's attention declared as a spatial site as FLUX's adapter declares it. */
function adapterOf(transformer: { transformerBlocks: readonly { attn: AttentionSite['module'] }[] }): BlockAdapter<rt.Tensor> {
  return new BlockAdapter({
    transformer,
    blocks: 'transformerBlocks',
    forwardPattern: ForwardPattern.Pattern_3,
    ops: runtimeOps,
    attentionSites: () =>
      transformer.transformerBlocks.map((b, i) => ({ name: `single_transformer_blocks.${i}.attn`, kind: 'spatial' as const, module: b.attn })),
  });
}

function timed(row: Row): { ms: number; computedFraction: number } {
  if (!row.config) return { ms: run(row.calls), computedFraction: 1 };
  enableCache(adapterOf(stack), row.config);
  const ms = run(row.calls);
  const stats = summary(stack, { print: false });
  disableCache(stack);
  checkNothingCached(row, stats);
  return { ms, computedFraction: stats.computedBlocks / stats.totalBlocks };
}

const median = (xs: number[]) => {
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = sorted.length / 2;
  return Number.isInteger(mid) ? (sorted[mid - 1] + sorted[mid]) / 2 : sorted[Math.floor(mid)];
};

const baseline = rt.memoryStats().liveTensors;
rows.forEach((row) => timed(row)); // warm up allocations and JIT
const times = rows.map(() => [] as number[]);
const fractions = rows.map(() => 1);
for (let round = 0; round < ROUNDS; round++) {
  // The machine may be shared: alternate the order and compare runs of the same round.
  const order = rows.map((_, i) => i);
  if (round % 2 === 1) order.reverse();
  for (const i of order) {
    const r = timed(rows[i]);
    times[i].push(r.ms);
    fractions[i] = r.computedFraction;
  }
}

console.log(
  `Engine overhead: ${BLOCKS} FLUX single-stream blocks (hidden ${HIDDEN}, ${HEADS} heads, ${TOKENS} tokens), ${STEPS} steps per run, ${ROUNDS} rounds`,
);
console.log(`CPU threads: ${rt.numThreads()}, GEMM: ${rt.gemmBackend()}`);
console.log('');
console.log('| Run | Median ms | Median of per-round ratios | Ratio of fastest runs | Blocks computed (ideal ratio) |');
console.log('|---|---|---|---|---|');
rows.forEach((row, i) => {
  const base = times[baselineOf(row, rows)];
  const ratios = times[i].map((ms, round) => ms / base[round]);
  const fastest = Math.min(...times[i]) / Math.min(...base);
  console.log(
    `| ${row.name} | ${median(times[i]).toFixed(1)} | ${median(ratios).toFixed(4)} | ${fastest.toFixed(4)} | ${(fractions[i] * 100).toFixed(1)}% (${fractions[i].toFixed(4)}) |`,
  );
});

// The engine's own time per call, apart from the blocks: the same configurations on a stack of
// blocks that cost almost nothing (one elementwise op each, in an attention site of its own so
// that the sites' wrapper costs what it costs on the real stack), over many calls, interleaved.
class CheapBlock {
  readonly attn = { forward: (h: rt.Tensor) => rt.mul(h, 1.0001) };

  forward(h: rt.Tensor): rt.Tensor {
    return this.attn.forward(h);
  }
}
class CheapStack {
  transformerBlocks = Array.from({ length: BLOCKS }, () => new CheapBlock());

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
function cheapRun(row: Row): number {
  if (row.config) enableCache(adapterOf(cheap), row.config);
  const start = performance.now();
  for (let s = 0; s < CHEAP_CALLS / callsPerStep(row.calls); s++) {
    const step = s % STEPS;
    const x = rt.mul(latents, 1 - step / (2 * STEPS));
    runStep(cheap, row.calls, step, () => cheap.forward(x));
    x.dispose();
  }
  const ms = performance.now() - start;
  if (row.config) {
    checkNothingCached(row, summary(cheap, { print: false }));
    disableCache(cheap);
  }
  return ms / CHEAP_CALLS;
}
const cheapRows: Row[] = [...rows.slice(0, -1), { ...thresholdZero, name: 'engine, threshold 0, each call run as a pipeline runs it', calls: 'announced' }];
const perCall = cheapRows.map(() => [] as number[]);
for (let round = 0; round < ROUNDS; round++) cheapRows.forEach((row, i) => perCall[i].push(cheapRun(row)));
const stackPerCall = median(times[0]) / STEPS;
console.log('');
console.log(`The engine's own time per call, against ${stackPerCall.toFixed(1)} ms per call of the stack above:`);
console.log('');
console.log('| Run | ms per call, cheap blocks | Engine ms per call | Share of a stack call |');
console.log('|---|---|---|---|');
cheapRows.forEach((row, i) => {
  const own = median(perCall[i]) - median(perCall[baselineOf(row, cheapRows)]);
  console.log(`| ${row.name} | ${median(perCall[i]).toFixed(3)} | ${own.toFixed(3)} | ${((own / stackPerCall) * 100).toFixed(3)}% |`);
});

const leaked = rt.memoryStats().liveTensors - baseline;
console.log('');
console.log(`Tensors left alive by the engine after disableCache: ${leaked}`);
for (const t of [latents, temb, projOut]) t.dispose();
