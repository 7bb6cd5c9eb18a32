// One transformer forward, ours against diffusers + PyTorch on the same weights and inputs, in
// one run: check that both compute the same thing, time both in alternating rounds at each
// thread count, and show where each spends its time per class of op. An adapter describes its
// model in a ForwardBenchmark (a diffusers class and config, inputs, how to run ours) and calls
// runForwardBenchmark; adding a model family is that description.
import { rmSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';

import * as rt from '@ditcache/cuda-runtime';

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

/** Outputs closer than this (relative L2) count as the same computation. */
export const AGREEMENT_LIMIT = 1e-4;

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
  /** Loads our model from the component folder. */
  open(dir: string): ForwardModel;
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
  profile: { ours: OpProfile; reference?: ReferenceProfile };
}

export interface ForwardResult {
  title: string;
  parameters: number;
  source: ComponentSource;
  flops?: number;
  reference?: { torch: string; diffusers: string };
  agreement?: number;
  byThreads: ThreadResult[];
  /** The 1-minute load average before and after the timing. */
  load: string[];
  markdown: string;
}

function summarize(samples: CallTimes, roundMedians: number[]): TimingSummary {
  const wall = samples.seconds;
  return { median: median(wall), p25: quantile(wall, 0.25), p75: quantile(wall, 0.75), min: Math.min(...wall), cpuMedian: median(samples.cpu), samples, roundMedians };
}

/** The thread counts to measure: DITCACHE_BENCH_THREADS (e.g. "2,1"), else all cores and 1. */
function threadCounts(): number[] {
  const raw = process.env.DITCACHE_BENCH_THREADS;
  const counts = raw ? raw.split(',').map(Number) : [cpus().length, 1];
  if (counts.some((n) => !Number.isInteger(n) || n < 1)) throw new Error(`DITCACHE_BENCH_THREADS must list positive integers, got ${raw}`);
  return [...new Set(counts)];
}

/**
 * Runs the benchmark and prints its markdown. The reference side runs only when
 * DITCACHE_REFERENCE_PYTHON names a Python with torch and diffusers; ours runs always.
 * Settings: DITCACHE_BENCH_THREADS (all cores and 1), DITCACHE_BENCH_ROUNDS (6),
 * DITCACHE_BENCH_REPS (timed calls per side and round, 5), DITCACHE_BENCH_PROFILE_REPS (5).
 */
export async function runForwardBenchmark(bench: ForwardBenchmark, cacheDir: string): Promise<ForwardResult> {
  const rounds = benchSetting('ROUNDS', 6);
  const reps = benchSetting('REPS', 5);
  const profileReps = benchSetting('PROFILE_REPS', 5);
  const python = referencePython();
  const { dir, source } = ensureComponent(join(cacheDir, 'bench-models'), bench.name, bench.component, python);
  const parameters = parameterCount(dir);
  const inputs = rt.tidy(() => bench.makeInputs());
  const inputsPath = join(cacheDir, 'bench-models', `${bench.name}.inputs.safetensors`);
  rt.saveSafetensors(inputsPath, inputs);
  const model = bench.open(dir);
  const forward = (): void => rt.tidy(() => void model.forward(inputs));
  const load = [loadAverage()];

  let server: ReferenceServer | undefined;
  try {
    let agreement: number | undefined;
    if (python) {
      console.error(`${bench.title}: starting the reference (${bench.component.diffusersClass})...`);
      server = await ReferenceServer.start(python, bench.component.diffusersClass, dir, inputsPath, rt.numThreads());
      agreement = await checkAgreement(bench.title, server, model, inputs, join(cacheDir, 'bench-models', `${bench.name}.reference-sample.safetensors`));
    }
    const byThreads: ThreadResult[] = [];
    for (const threads of threadCounts()) {
      rt.setNumThreads(threads);
      await server?.threads(threads);
      byThreads.push(await timeAndProfile(bench.title, threads, forward, server, { rounds, reps, profileReps }));
    }
    rt.setNumThreads(0);
    load.push(loadAverage());
    const result: Omit<ForwardResult, 'markdown'> = {
      title: bench.title,
      parameters,
      source,
      flops: model.flops,
      reference: server && { torch: server.info.torch, diffusers: server.info.diffusers },
      agreement,
      byThreads,
      load,
    };
    const markdown = forwardMarkdown(bench, result, { rounds, reps, profileReps });
    console.log(markdown);
    return { ...result, markdown };
  } finally {
    rt.setNumThreads(0);
    await server?.close();
    model.dispose();
    for (const t of Object.values(inputs)) t.dispose();
  }
}

/** Relative L2 of our output against diffusers'; throws when they are not the same computation. */
async function checkAgreement(title: string, server: ReferenceServer, model: ForwardModel, inputs: Record<string, rt.Tensor>, samplePath: string): Promise<number> {
  await server.run(samplePath);
  const reference = rt.loadSafetensors(samplePath);
  const ours = model.forward(inputs);
  let agreement: number;
  try {
    if (ours.shape.join() !== reference.sample.shape.join()) {
      throw new Error(`${title}: our output (${ours.shape.join(', ')}) and diffusers' (${reference.sample.shape.join(', ')}) differ in shape`);
    }
    agreement = rt.relativeL2(ours, reference.sample);
  } finally {
    ours.dispose();
    reference.sample.dispose();
    rmSync(samplePath, { force: true });
  }
  if (!(agreement < AGREEMENT_LIMIT)) {
    throw new Error(`${title}: outputs differ from diffusers' by ${agreement.toExponential(2)} relative L2 (limit ${AGREEMENT_LIMIT}): not the same computation`);
  }
  return agreement;
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
  console.error(`${title}, ${threads} thread(s): profiling...`);
  const oursProfile = profileOps(forward, s.profileReps);
  const referenceProfile = server ? await server.profile(s.profileReps) : undefined;
  const perRound = server ? oursRounds.map((o, i) => o / refRounds[i]) : [];
  return {
    threads,
    ours: summarize(oursSamples, oursRounds),
    reference: server && summarize(refSamples, refRounds),
    ratio: server ? { median: median(perRound), min: Math.min(...perRound), max: Math.max(...perRound) } : undefined,
    profile: { ours: oursProfile, reference: referenceProfile },
  };
}

function forwardMarkdown(bench: ForwardBenchmark, r: Omit<ForwardResult, 'markdown'>, s: { rounds: number; reps: number; profileReps: number }): string {
  const lines: string[] = [];
  const millions = (r.parameters / 1e6).toFixed(1);
  lines.push(`### ${r.title}: ${millions}M parameters, ${bench.shape}`, '');
  lines.push(
    `${bench.component.diffusersClass} \`${JSON.stringify(bench.component.config)}\`, random weights made by ${r.source === 'diffusers' ? `diffusers (torch.manual_seed(${bench.component.seed}))` : "the runtime's generator (no reference Python)"}; float32 on the CPU` +
      `${r.reference ? `; reference: diffusers ${r.reference.diffusers}, torch ${r.reference.torch}` : ''}.`,
    '',
    `Machine: ${machineLine(r.reference?.torch)}; load average ${r.load.join(' -> ')}.`,
    '',
    `Per thread count, ${s.rounds} rounds; in each, each side makes 1 untimed and ${s.reps} timed calls, the sides taking turns to go first. ` +
      "Times: median of all timed calls (25th-75th percentile) and the fastest call. Ratio: ours / torch of each round's medians, median over rounds (range), " +
      'and of the fastest calls, the best estimate of an unloaded machine. CPU: median process CPU time per call (user + system, ' +
      'all threads), which other jobs on the machine do not stretch; with more than one thread it also counts workers waiting for work.',
  );
  if (r.agreement !== undefined) lines.push('', `Same computation: relative L2 of our output against diffusers' ${r.agreement.toExponential(1)} (limit ${AGREEMENT_LIMIT}).`);
  lines.push('');
  const gflops = (t: number): string => (r.flops ? (r.flops / t / 1e9).toFixed(1) : '-');
  const time = (t: TimingSummary): string => `${ms(t.median)} (${ms(t.p25)}-${ms(t.p75)})`;
  const header = ['threads', 'ours ms, median (p25-p75)', 'ours fastest ms'];
  if (r.reference) header.push('torch ms, median (p25-p75)', 'torch fastest ms', '**ours / torch**, median over rounds (range)', 'ours / torch, fastest', 'CPU ms ours / torch (ratio)');
  else header.push('ours CPU ms');
  header.push('ours GFLOP/s (fastest)');
  const rows = r.byThreads.map((t) => {
    const row = [String(t.threads), time(t.ours), ms(t.ours.min)];
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
  });
  lines.push(markdownTable(header, rows));
  if (!r.reference) lines.push('', 'Reference side skipped (no DITCACHE_REFERENCE_PYTHON).');
  for (const t of r.byThreads) lines.push('', profileMarkdown(t.profile.ours, t.profile.reference, s.profileReps, `${t.threads} thread(s)`));
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
    lines.push('', `torch's "other": ${Object.entries(ref.others).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${ms(v)} ms`).join(', ')}.`);
  }
  const top = (title: string, ops: { cls: string; key: string; calls: number; seconds: number }[]): void => {
    lines.push('', `${title}, ${label}: slowest ops of that call`, '');
    lines.push(markdownTable(['op and input shapes', 'class', 'calls', 'ms'], ops.slice(0, 15).map((o) => [`\`${o.key.trim()}\``, o.cls, String(o.calls), ms(o.seconds)])));
  };
  top('Ours', ours.ops);
  if (reference) top('torch', reference.ops);
  return lines.join('\n');
}
