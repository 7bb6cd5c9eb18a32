// Single ops at the shapes a model's forward runs them, ours against torch's, for the kernel
// work the forward profile points at. An op takes tens of microseconds to milliseconds, so the
// fastest of many calls is a steady figure even on a machine other jobs are using, where whole
// forwards are not.
import { spawnSync } from 'node:child_process';
import { cpus } from 'node:os';

import * as rt from '@ditcache/cuda-runtime';
import { randnTensor } from '@ditcache/diffusion';

import { benchSetting, loadAverage, machineLine, markdownTable, median, REFERENCE_SCRIPT } from './harness.js';

export interface OpCase {
  /** e.g. 'linear 320x256 -> 1024, bias'. */
  name: string;
  /** Input shapes by name; both sides fill them with standard normal values. */
  inputs: Record<string, number[]>;
  ours(x: Record<string, rt.Tensor>): rt.Tensor | rt.Tensor[];
  /** The same op in Python over the inputs, `torch` and `F` (torch.nn.functional). */
  torch: string;
  /** How many calls of this op one forward makes (for the "ms per forward" column). */
  perForward?: number;
}

/** Seconds of each call of fn (after 3 untimed ones), until `budget` seconds or `maxReps` calls. */
function timeOp(fn: () => void, budget: number, maxReps: number): number[] {
  for (let i = 0; i < 3; ++i) fn();
  const seconds: number[] = [];
  const start = performance.now();
  while (seconds.length < maxReps && (seconds.length < 10 || performance.now() - start < budget * 1000)) {
    const t0 = performance.now();
    fn();
    seconds.push((performance.now() - t0) / 1000);
  }
  return seconds;
}

/**
 * Times every case on both sides at each thread count (all cores and 1 unless
 * DITCACHE_BENCH_THREADS says otherwise), in DITCACHE_BENCH_OP_ROUNDS rounds (3) that alternate
 * which side goes first, and prints a table per thread count.
 */
export function runOpBenchmark(title: string, cases: readonly OpCase[], python: string | null): string {
  const threadsList = process.env.DITCACHE_BENCH_THREADS ? process.env.DITCACHE_BENCH_THREADS.split(',').map(Number) : [cpus().length, 1];
  const rounds = benchSetting('OP_ROUNDS', 3);
  const budget = 0.2;
  const maxReps = 100;
  type Samples = Record<string, Record<string, number[]>>;
  const reference: Samples = {};
  const ours: Samples = {};
  const add = (into: Samples, threads: string, name: string, seconds: number[]): void => {
    const byName = into[threads] ?? {};
    into[threads] = byName;
    byName[name] = [...(byName[name] ?? []), ...seconds];
  };
  let torchVersion: string | undefined;
  const timeTorch = (): void => {
    if (!python) return;
    const spec = { threads: threadsList, budget, max_reps: maxReps, cases: cases.map((c) => ({ name: c.name, inputs: c.inputs, expr: c.torch })) };
    const run = spawnSync(python, [REFERENCE_SCRIPT, 'ops'], {
      input: JSON.stringify(spec),
      encoding: 'utf-8',
      stdio: ['pipe', 'pipe', 'inherit'],
      maxBuffer: 1 << 26,
    });
    if (run.status !== 0) throw new Error(`reference.py ops failed (exit ${run.status})`);
    const out = JSON.parse(run.stdout) as { torch: string; threads: Samples };
    torchVersion = out.torch;
    for (const [threads, byCase] of Object.entries(out.threads)) for (const [name, seconds] of Object.entries(byCase)) add(reference, threads, name, seconds);
  };
  const timeOurs = (): void => {
    for (const threads of threadsList) {
      rt.setNumThreads(threads);
      for (const c of cases) {
        const inputs = rt.tidy(() => Object.fromEntries(Object.entries(c.inputs).map(([k, shape], i) => [k, randnTensor(shape, i + 1)])));
        try {
          add(
            ours,
            String(threads),
            c.name,
            timeOp(() => rt.tidy(() => void c.ours(inputs)), budget, maxReps),
          );
        } finally {
          for (const t of Object.values(inputs)) t.dispose();
        }
      }
    }
    rt.setNumThreads(0);
  };
  const load = [loadAverage()];
  for (let round = 0; round < rounds; ++round) {
    console.error(`${title}: round ${round + 1} of ${rounds}`);
    if (round % 2 === 0) {
      timeOurs();
      timeTorch();
    } else {
      timeTorch();
      timeOurs();
    }
  }
  load.push(loadAverage());

  const us = (s: number): string => (s * 1e6).toFixed(0);
  const lines = [
    `### ${title}: single ops, ours vs torch`,
    '',
    `Machine: ${machineLine(torchVersion)}; load average ${load.join(' -> ')}. Each op on random inputs, in ${rounds} round(s) alternating ` +
      `which side goes first, each round calling it until ${budget} s or ${maxReps} calls; fastest and median call in microseconds. ` +
      '"per forward": the difference of the fastest calls times the calls one forward makes.',
  ];
  for (const threads of threadsList) {
    lines.push('', `${threads} thread(s):`, '');
    const header = ['op', 'ours fastest µs', 'ours median µs'];
    if (python) header.push('torch fastest µs', 'torch median µs', '**ours / torch** (fastest)', 'ours - torch per forward, ms');
    const rows = cases.map((c) => {
      const o = ours[threads][c.name];
      const row = [c.name, us(Math.min(...o)), us(median(o))];
      const t = reference[String(threads)]?.[c.name];
      if (t) {
        const perForward =
          c.perForward === undefined
            ? '-'
            : ((Math.min(...o) - Math.min(...t)) * c.perForward * 1000 >= 0 ? '+' : '') + ((Math.min(...o) - Math.min(...t)) * c.perForward * 1000).toFixed(2);
        row.push(us(Math.min(...t)), us(median(t)), `**${(Math.min(...o) / Math.min(...t)).toFixed(2)}**`, perForward);
      }
      return row;
    });
    lines.push(markdownTable(header, rows));
  }
  const markdown = lines.join('\n');
  console.log(markdown);
  return markdown;
}
