// One transformer forward, ours against diffusers + PyTorch on the same weights and inputs, in
// one run: check that both compute the same thing, time both in alternating rounds at each
// thread count, and show where each spends its time per class of op; in each compute dtype
// asked for (float32, bfloat16, float16: diffusers' torch_dtype), with each side's 16-bit error
// against the float32 output. An adapter describes its model in a ForwardBenchmark (a diffusers
// class and config, inputs, how to run ours) and calls runForwardBenchmark; adding a model
// family is that description.
import { rmSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';

import * as rt from '@ditcache/cuda-runtime';
import type { ComputeDtype } from '@ditcache/diffusion';

import {
  benchSetting,
  ensureComponent,
  loadAverage,
  machineLine,
  markdownTable,
  median,
  ms,
  parameterCount,
  quantile,
  referencePython,
  ReferenceServer,
  timeCalls,
  type CallTimes,
  type ComponentSource,
  type RandomComponent,
  type ReferenceProfile,
} from './harness.js';
import { foldReferenceClasses, OP_CLASSES, OP_CLASS_LEGEND, profileOps, type OpProfile } from './op-profile.js';

/** float32 outputs closer than this (relative L2) count as the same computation. */
export const AGREEMENT_LIMIT = 1e-4;

/**
 * 16-bit outputs closer than this many units of roundoff of the dtype count as the same
 * computation: both sides round the same ops, their float32 accumulations in another order tip
 * single roundings (the FLUX tests measure 0.05-1.6 units); a missed rounding step is tens.
 */
export const AGREEMENT_ROUNDOFFS_16BIT = 5;

/** The issue's accuracy bound: our 16-bit error against float32 at most this times diffusers'. */
export const ACCURACY_RATIO = 1.5;

/** Unit roundoff of each compute dtype. */
const ROUNDOFF: Record<ComputeDtype, number> = { float32: 2 ** -24, bfloat16: 2 ** -8, float16: 2 ** -11 };

/** The agreement limit of a dtype. */
export function agreementLimit(dtype: ComputeDtype): number {
  return dtype === 'float32' ? AGREEMENT_LIMIT : AGREEMENT_ROUNDOFFS_16BIT * ROUNDOFF[dtype];
}

export interface ForwardModel {
  /** Our forward on the inputs of makeInputs(), returning the diffusers model's first output. */
  forward(inputs: Record<string, rt.Tensor>): rt.Tensor;
  dispose(): void;
  /** Matrix-product FLOPs of one call (multiply-add = 2), for the GFLOP/s column. */
  flops?: number;
}

export interface ForwardBenchmark {
  /** e.g. 'FLUX.1 transformer forward'. */
  title: string;
  /** Folder name of the random-weight model under the cache directory. */
  name: string;
  component: RandomComponent;
  /** The inputs, named as the keyword arguments of the diffusers model's forward. */
  makeInputs(): Record<string, rt.Tensor>;
  /** Loads our model from the component folder, computing in `dtype` (the inputs stay float32; the model rounds them). */
  open(dir: string, dtype: ComputeDtype): ForwardModel;
  /** The sizes of a call in words, e.g. 'batch 1, 256 image tokens + 64 text tokens'. */
  shape: string;
}

export interface TimingSummary {
  median: number;
  p25: number;
  p75: number;
  min: number;
  /** Median process CPU time per call (all threads). */
  cpuMedian: number;
  samples: CallTimes;
  roundMedians: number[];
}

/** Both sides at one thread count. */
export interface ThreadResult {
  threads: number;
  ours: TimingSummary;
  reference?: TimingSummary;
  /** Median over rounds of ours / torch in the same round, and its range. */
  ratio?: { median: number; min: number; max: number };
  /** Absent when profiling was turned off. */
  profile?: { ours: OpProfile; reference?: ReferenceProfile };
}

/** Both sides in one compute dtype. */
export interface DtypeResult {
  dtype: ComputeDtype;
  /** Relative L2 of our output against diffusers' in the same dtype. */
  agreement?: number;
  byThreads: ThreadResult[];
}

/** A 16-bit dtype's outputs against the float32 output (diffusers', else ours). */
export interface AccuracyResult {
  dtype: ComputeDtype;
  /** Relative L2 of our output in `dtype` against the float32 reference. */
  ours: number;
  /** The same for diffusers' output in `dtype`. */
  reference?: number;
  /** What the float32 reference is. */
  against: 'diffusers float32' | 'ours float32';
}

export interface ForwardResult {
  title: string;
  parameters: number;
  source: ComponentSource;
  flops?: number;
  reference?: { torch: string; diffusers: string };
  byDtype: DtypeResult[];
  accuracy: AccuracyResult[];
  /** The 1-minute load average before and after the timing. */
  load: string[];
  markdown: string;
}

/** How runForwardBenchmark measures; every field has a default. */
export interface ForwardBenchmarkOptions {
  /** Compute dtypes, measured one after the other (default ['float32']). With float32 among them, each 16-bit dtype's error against the float32 output is reported. */
  dtypes?: readonly ComputeDtype[];
  /** Thread counts when DITCACHE_BENCH_THREADS is not set (default: all cores, then 1). */
  threads?: readonly number[];
  /** Per-op-class profiles after the timing (default true). */
  profile?: boolean;
  /** Rounds and timed calls per side and round when DITCACHE_BENCH_ROUNDS / _REPS are not set (default 6 and 5). */
  rounds?: number;
  reps?: number;
}

function summarize(samples: CallTimes, roundMedians: number[]): TimingSummary {
  const wall = samples.seconds;
  return {
    median: median(wall),
    p25: quantile(wall, 0.25),
    p75: quantile(wall, 0.75),
    min: Math.min(...wall),
    cpuMedian: median(samples.cpu),
    samples,
    roundMedians,
  };
}

/** The thread counts to measure: DITCACHE_BENCH_THREADS (e.g. "2,1"), else `fallback` (all cores and 1). */
function threadCounts(fallback: readonly number[] = [cpus().length, 1]): number[] {
  const raw = process.env.DITCACHE_BENCH_THREADS;
  const counts = raw ? raw.split(',').map(Number) : [...fallback];
  if (counts.some((n) => !Number.isInteger(n) || n < 1)) throw new Error(`DITCACHE_BENCH_THREADS must list positive integers, got ${raw}`);
  return [...new Set(counts)];
}

/**
 * Runs the benchmark and prints its markdown. The reference side runs only when
 * DITCACHE_REFERENCE_PYTHON names a Python with torch and diffusers; ours runs always.
 * Settings: DITCACHE_BENCH_THREADS (all cores and 1), DITCACHE_BENCH_ROUNDS (6),
 * DITCACHE_BENCH_REPS (timed calls per side and round, 5), DITCACHE_BENCH_PROFILE_REPS (5);
 * `options` changes the defaults and picks the dtypes.
 */
export async function runForwardBenchmark(bench: ForwardBenchmark, cacheDir: string, options: ForwardBenchmarkOptions = {}): Promise<ForwardResult> {
  const rounds = benchSetting('ROUNDS', options.rounds ?? 6);
  const reps = benchSetting('REPS', options.reps ?? 5);
  const profileReps = options.profile === false ? 0 : benchSetting('PROFILE_REPS', 5);
  const dtypes = options.dtypes ?? ['float32'];
  if (dtypes.length === 0) throw new Error(`${bench.title}: no dtype to measure`);
  const python = referencePython();
  const { dir, source } = ensureComponent(join(cacheDir, 'bench-models'), bench.name, bench.component, python);
  const parameters = parameterCount(dir);
  const inputs = rt.tidy(() => bench.makeInputs());
  const inputsPath = join(cacheDir, 'bench-models', `${bench.name}.inputs.safetensors`);
  rt.saveSafetensors(inputsPath, inputs);
  const load = [loadAverage()];
  // Each dtype's outputs, ours and diffusers', for the accuracy table.
  const outputs = new Map<string, rt.Tensor>();
  const byDtype: DtypeResult[] = [];
  let flops: number | undefined;
  let reference: ForwardResult['reference'];
  try {
    for (const dtype of dtypes) {
      const model = bench.open(dir, dtype);
      flops ??= model.flops;
      const forward = (): void => rt.tidy(() => void model.forward(inputs));
      let server: ReferenceServer | undefined;
      try {
        outputs.set(`ours ${dtype}`, model.forward(inputs).keep());
        let agreement: number | undefined;
        if (python) {
          console.error(`${bench.title}: starting the reference (${bench.component.diffusersClass}, ${dtype})...`);
          server = await ReferenceServer.start(python, bench.component.diffusersClass, dir, inputsPath, rt.numThreads(), dtype);
          reference ??= { torch: server.info.torch, diffusers: server.info.diffusers };
          const sample = await referenceSample(server, join(cacheDir, 'bench-models', `${bench.name}.reference-sample.safetensors`));
          outputs.set(`diffusers ${dtype}`, sample);
          agreement = checkAgreement(`${bench.title} (${dtype})`, outputs.get(`ours ${dtype}`)!, sample, agreementLimit(dtype));
        }
        const byThreads: ThreadResult[] = [];
        for (const threads of threadCounts(options.threads)) {
          rt.setNumThreads(threads);
          await server?.threads(threads);
          byThreads.push(await timeAndProfile(`${bench.title} (${dtype})`, threads, forward, server, { rounds, reps, profileReps }));
        }
        rt.setNumThreads(0);
        byDtype.push({ dtype, agreement, byThreads });
      } finally {
        rt.setNumThreads(0);
        await server?.close();
        model.dispose();
      }
    }
    load.push(loadAverage());
    const accuracy = accuracyAgainstFloat32(dtypes, outputs);
    const result: Omit<ForwardResult, 'markdown'> = { title: bench.title, parameters, source, flops, reference, byDtype, accuracy, load };
    const markdown = forwardMarkdown(bench, result, { rounds, reps, profileReps });
    console.log(markdown);
    return { ...result, markdown };
  } finally {
    for (const t of [...Object.values(inputs), ...outputs.values()]) t.dispose();
  }
}

/** diffusers' output of one forward, read back from the file the reference wrote. */
async function referenceSample(server: ReferenceServer, samplePath: string): Promise<rt.Tensor> {
  await server.run(samplePath);
  try {
    return rt.loadSafetensors(samplePath).sample.keep();
  } finally {
    rmSync(samplePath, { force: true });
  }
}

/** Relative L2 in float64 of two outputs of any float dtypes. */
function distance(a: rt.Tensor, b: rt.Tensor): number {
  return rt.tidy(() => rt.relativeL2(a.cast('float32'), b.cast('float32')));
}

/** Relative L2 of our output against diffusers'; throws when they are not the same computation. */
function checkAgreement(title: string, ours: rt.Tensor, reference: rt.Tensor, limit: number): number {
  if (ours.shape.join() !== reference.shape.join()) {
    throw new Error(`${title}: our output (${ours.shape.join(', ')}) and diffusers' (${reference.shape.join(', ')}) differ in shape`);
  }
  const agreement = distance(ours, reference);
  if (!(agreement < limit)) {
    throw new Error(
      `${title}: outputs differ from diffusers' by ${agreement.toExponential(2)} relative L2 (limit ${limit.toExponential(1)}): not the same computation`,
    );
  }
  return agreement;
}

/** Each 16-bit dtype's error against the float32 output: diffusers' float32 when it ran, else ours. */
function accuracyAgainstFloat32(dtypes: readonly ComputeDtype[], outputs: Map<string, rt.Tensor>): AccuracyResult[] {
  const diffusers32 = outputs.get('diffusers float32');
  const against = diffusers32 ? 'diffusers float32' : 'ours float32';
  const float32 = diffusers32 ?? outputs.get('ours float32');
  if (!float32) return [];
  return dtypes
    .filter((d) => d !== 'float32')
    .map((dtype) => {
      const ref16 = outputs.get(`diffusers ${dtype}`);
      return { dtype, ours: distance(outputs.get(`ours ${dtype}`)!, float32), reference: ref16 && distance(ref16, float32), against };
    });
}

async function timeAndProfile(
  title: string,
  threads: number,
  forward: () => void,
  server: ReferenceServer | undefined,
  s: { rounds: number; reps: number; profileReps: number },
): Promise<ThreadResult> {
  // Rounds alternate which side goes first, so drift in the machine's load hits both alike.
  const oursSamples: CallTimes = { seconds: [], cpu: [] };
  const oursRounds: number[] = [];
  const refSamples: CallTimes = { seconds: [], cpu: [] };
  const refRounds: number[] = [];
  const collect = (into: CallTimes, rounds: number[], t: CallTimes): void => {
    into.seconds.push(...t.seconds);
    into.cpu.push(...t.cpu);
    rounds.push(median(t.seconds));
  };
  const runOurs = (): void => collect(oursSamples, oursRounds, timeCalls(forward, s.reps, 1));
  const runReference = async (): Promise<void> => {
    if (server) collect(refSamples, refRounds, await server.time(s.reps, 1));
  };
  for (let round = 0; round < s.rounds; ++round) {
    console.error(`${title}, ${threads} thread(s): round ${round + 1} of ${s.rounds}`);
    if (round % 2 === 0) {
      runOurs();
      await runReference();
    } else {
      await runReference();
      runOurs();
    }
  }
  let profile: ThreadResult['profile'];
  if (s.profileReps > 0) {
    console.error(`${title}, ${threads} thread(s): profiling...`);
    const oursProfile = profileOps(forward, s.profileReps);
    profile = { ours: oursProfile, reference: server ? await server.profile(s.profileReps) : undefined };
  }
  const perRound = server ? oursRounds.map((o, i) => o / refRounds[i]) : [];
  return {
    threads,
    ours: summarize(oursSamples, oursRounds),
    reference: server && summarize(refSamples, refRounds),
    ratio: server ? { median: median(perRound), min: Math.min(...perRound), max: Math.max(...perRound) } : undefined,
    profile,
  };
}

function forwardMarkdown(bench: ForwardBenchmark, r: Omit<ForwardResult, 'markdown'>, s: { rounds: number; reps: number; profileReps: number }): string {
  const lines: string[] = [];
  const millions = (r.parameters / 1e6).toFixed(1);
  const dtypes = r.byDtype.map((d) => d.dtype);
  lines.push(`### ${r.title}: ${millions}M parameters, ${bench.shape}`, '');
  lines.push(
    `${bench.component.diffusersClass} \`${JSON.stringify(bench.component.config)}\`, random weights made by ${r.source === 'diffusers' ? `diffusers (torch.manual_seed(${bench.component.seed}))` : "the runtime's generator (no reference Python)"}; ` +
      `${dtypes.join(', ')} on the CPU (each side loads the float32 folder in the dtype: diffusers' torch_dtype, our dtype; the float32 inputs are rounded to it)` +
      `${r.reference ? `; reference: diffusers ${r.reference.diffusers}, torch ${r.reference.torch}` : ''}.`,
    '',
    `Machine: ${machineLine(r.reference?.torch)}; load average ${r.load.join(' -> ')}.`,
    '',
    `Per dtype and thread count, ${s.rounds} rounds; in each, each side makes 1 untimed and ${s.reps} timed calls, the sides taking turns to go first. ` +
      "Times: median of all timed calls (25th-75th percentile) and the fastest call. Ratio: ours / torch of each round's medians, median over rounds (range), " +
      'and of the fastest calls, the best estimate of an unloaded machine. CPU: median process CPU time per call (user + system, ' +
      'all threads), which other jobs on the machine do not stretch; with more than one thread it also counts workers waiting for work.',
  );
  const agreements = r.byDtype.filter((d) => d.agreement !== undefined);
  if (agreements.length) {
    const each = agreements.map((d) => `${d.dtype} ${d.agreement!.toExponential(1)} (limit ${agreementLimit(d.dtype).toExponential(1)})`);
    lines.push('', `Same computation: relative L2 of our output against diffusers' in the same dtype: ${each.join(', ')}.`);
  }
  lines.push('');
  const gflops = (t: number): string => (r.flops ? (r.flops / t / 1e9).toFixed(1) : '-');
  const time = (t: TimingSummary): string => `${ms(t.median)} (${ms(t.p25)}-${ms(t.p75)})`;
  const header = ['dtype', 'threads', 'ours ms, median (p25-p75)', 'ours fastest ms'];
  if (r.reference)
    header.push(
      'torch ms, median (p25-p75)',
      'torch fastest ms',
      '**ours / torch**, median over rounds (range)',
      'ours / torch, fastest',
      'CPU ms ours / torch (ratio)',
    );
  else header.push('ours CPU ms');
  header.push('ours GFLOP/s (fastest)');
  const rows = r.byDtype.flatMap((d) =>
    d.byThreads.map((t) => {
      const row = [d.dtype, String(t.threads), time(t.ours), ms(t.ours.min)];
      if (t.reference && t.ratio) {
        row.push(
          time(t.reference),
          ms(t.reference.min),
          `**${t.ratio.median.toFixed(2)}** (${t.ratio.min.toFixed(2)}-${t.ratio.max.toFixed(2)})`,
          (t.ours.min / t.reference.min).toFixed(2),
          `${ms(t.ours.cpuMedian)} / ${ms(t.reference.cpuMedian)} (${(t.ours.cpuMedian / t.reference.cpuMedian).toFixed(2)})`,
        );
      } else {
        row.push(ms(t.ours.cpuMedian));
      }
      row.push(gflops(t.ours.min));
      return row;
    }),
  );
  lines.push(markdownTable(header, rows));
  if (!r.reference) lines.push('', 'Reference side skipped (no DITCACHE_REFERENCE_PYTHON).');
  if (r.accuracy.length) {
    lines.push(
      '',
      `Accuracy: relative L2 of each 16-bit output against the ${r.accuracy[0].against} output (the issue asks ours <= ${ACCURACY_RATIO}x diffusers').`,
      '',
    );
    const accHeader = ['dtype', 'ours vs float32', ...(r.reference ? ['diffusers vs float32', 'ours / diffusers'] : [])];
    const accRows = r.accuracy.map((a) => [
      a.dtype,
      a.ours.toExponential(2),
      ...(a.reference === undefined ? (r.reference ? ['-', '-'] : []) : [a.reference.toExponential(2), `**${(a.ours / a.reference).toFixed(2)}**`]),
    ]);
    lines.push(markdownTable(accHeader, accRows));
  }
  for (const d of r.byDtype) {
    for (const t of d.byThreads)
      if (t.profile) lines.push('', profileMarkdown(t.profile.ours, t.profile.reference, s.profileReps, `${d.dtype}, ${t.threads} thread(s)`));
  }
  return lines.join('\n');
}

/** Per-class table of both profiles, and the slowest ops of each. */
export function profileMarkdown(ours: OpProfile, reference: ReferenceProfile | undefined, reps: number, label: string): string {
  const lines: string[] = [];
  lines.push(
    `#### Time per op class, ${label}: the fastest of ${reps} profiled calls`,
    '',
    'Ours: every native op of the runtime timed by a wrapper (kernel + argument checks + handle creation); torch: ' +
      'torch.profiler, each outermost aten op counted once for its class (linear / norm / attention / rope by the ' +
      'module or function it ran in). "Framework" is the rest of the wall time: JavaScript (tensor handles, scopes, ' +
      'disposal) for ours, Python and dispatch for torch.',
    '',
  );
  const ref = reference ? foldReferenceClasses(reference.classes) : undefined;
  const rows: string[][] = [];
  const cells = (o: number, t: number | undefined): string[] =>
    t === undefined ? [ms(o)] : [ms(o), ms(t), (o >= t ? '+' : '') + ms(o - t), t > 0 ? (o / t).toFixed(2) : '-'];
  for (const c of OP_CLASSES) {
    const o = ours.classes[c];
    const t = ref?.classes[c];
    if (o < 5e-5 && (t ?? 0) < 5e-5) continue;
    rows.push([`${c}: ${OP_CLASS_LEGEND[c]}`, ...cells(o, t)]);
  }
  const sum = (x: Record<string, number>): number => Object.values(x).reduce((a, b) => a + b, 0);
  rows.push(['framework (wall minus ops)', ...cells(ours.wall - sum(ours.classes), reference && ref ? reference.wall - sum(ref.classes) : undefined)]);
  rows.push(['**wall of the call (timers on)**', ...cells(ours.wall, reference?.wall)]);
  lines.push(markdownTable(reference ? ['op class', 'ours ms', 'torch ms', 'ours - torch ms', 'ours / torch'] : ['op class', 'ours ms'], rows));
  if (ref && Object.keys(ref.others).length) {
    lines.push(
      '',
      `torch's "other": ${Object.entries(ref.others)
        .sort((a, b) => b[1] - a[1])
        .map(([k, v]) => `${k} ${ms(v)} ms`)
        .join(', ')}.`,
    );
  }
  const top = (title: string, ops: { cls: string; key: string; calls: number; seconds: number }[]): void => {
    lines.push('', `${title}, ${label}: slowest ops of that call`, '');
    lines.push(
      markdownTable(
        ['op and input shapes', 'class', 'calls', 'ms'],
        ops.slice(0, 15).map((o) => [`\`${o.key.trim()}\``, o.cls, String(o.calls), ms(o.seconds)]),
      ),
    );
  };
  top('Ours', ours.ops);
  if (reference) top('torch', reference.ops);
  return lines.join('\n');
}
