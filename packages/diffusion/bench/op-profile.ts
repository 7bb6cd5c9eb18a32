// Where a forward's time goes, per class of runtime op. Every op of @ditcache/cuda-runtime ends
// in one call of its native addon (`native.linear(...)`, `native.binary('add', ...)`, ...), so
// wrapping the addon's functions in timers measures the kernels (plus argument checks and
// handle creation) without touching the runtime. The addon object is the one the runtime
// loaded: Node's require cache hands back the same exports for the same file.
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import * as rt from '@ditcache/cuda-runtime';

/** The op classes both profiles report, in table order. */
export const OP_CLASSES = ['linear', 'attention', 'norm', 'rope', 'elementwise', 'copy', 'view', 'gather', 'create', 'other'] as const;
export type OpClass = (typeof OP_CLASSES)[number];

/** What each class means, for the tables' legends. */
export const OP_CLASS_LEGEND: Record<OpClass, string> = {
  linear: 'linear / matmul (GEMM, bias included)',
  attention: 'scaled dot-product attention',
  norm: 'layer norm, RMS norm, group norm',
  rope: 'rotary embedding applied to q / k',
  elementwise: 'binary / unary ops, softmax, reductions (modulation, gates, residuals, activations)',
  copy: 'concat, contiguous, clone, cast',
  view: 'reshape, transpose, slice, split, ... (no data moved)',
  gather: 'top-k, gathers / scatters (MoE routing)',
  create: 'tensors made from host data or constants',
  other: 'anything else',
};

const NATIVE_CLASS: Record<string, OpClass> = {
  linear: 'linear',
  matmul: 'linear',
  attention: 'attention',
  layerNorm: 'norm',
  rmsNorm: 'norm',
  groupNorm: 'norm',
  rope: 'rope',
  binary: 'elementwise',
  unary: 'elementwise',
  softmax: 'elementwise',
  reduce: 'elementwise',
  meanAbs: 'elementwise',
  relL1: 'elementwise',
  concat: 'copy',
  contiguous: 'copy',
  clone: 'copy',
  cast: 'copy',
  to: 'copy',
  reshape: 'view',
  permute: 'view',
  transpose: 'view',
  slice: 'view',
  expand: 'view',
  squeeze: 'view',
  unsqueeze: 'view',
  split: 'view',
  embedding: 'gather',
  topk: 'gather',
  fromArray: 'create',
  full: 'create',
  arange: 'create',
  fromMapping: 'create',
};

/** Seconds and calls of one native function on one list of argument shapes. */
export interface OpCallStats {
  key: string;
  cls: OpClass;
  calls: number;
  seconds: number;
}

export interface OpProfile {
  /** Wall seconds of the profiled call (timers included). */
  wall: number;
  /** Its native seconds per class. */
  classes: Record<OpClass, number>;
  /** Its native seconds per native function and argument shapes, slowest first. */
  ops: OpCallStats[];
}

type NativeFunctions = Record<string, unknown>;

function addon(): NativeFunctions {
  const runtimeEntry = fileURLToPath(import.meta.resolve('@ditcache/cuda-runtime'));
  // dist/src/index.js -> the package root, where build/Release holds the addon.
  const root = dirname(dirname(dirname(runtimeEntry)));
  return createRequire(import.meta.url)(join(root, 'build', 'Release', 'ditcache_native.node')) as NativeFunctions;
}

const shapeOf = (v: unknown): string | null => {
  if (v && typeof v === 'object' && 'shape' in v && Array.isArray((v as { shape: unknown }).shape)) return `(${(v as { shape: number[] }).shape.join('x')})`;
  if (Array.isArray(v)) {
    const inner = v.map(shapeOf).filter((s): s is string => s !== null);
    return inner.length ? `[${inner.join(', ')}]` : null;
  }
  return null;
};

/**
 * Runs `fn` `reps` times (after one untimed call) with every native function of the runtime
 * timed, and returns the fastest call's time: in all, per op class and per op and shapes.
 */
export function profileOps(fn: () => void, reps: number): OpProfile {
  fn();
  const native = addon();
  const originals = new Map<string, (...args: unknown[]) => unknown>();
  const stats = new Map<string, OpCallStats>();
  for (const [name, value] of Object.entries(native)) {
    // Functions only; NativeTensor / NativeMapping are classes.
    if (typeof value !== 'function' || /^[A-Z]/.test(name)) continue;
    const original = value as (...args: unknown[]) => unknown;
    originals.set(name, original);
    const cls = NATIVE_CLASS[name] ?? 'other';
    native[name] = function timed(this: unknown, ...args: unknown[]): unknown {
      const t0 = performance.now();
      try {
        return original.apply(this, args);
      } finally {
        const seconds = (performance.now() - t0) / 1000;
        const op = typeof args[0] === 'string' ? `${name}:${args[0]}` : name;
        const key = `${op} ${args
          .map(shapeOf)
          .filter((s) => s !== null)
          .join(' ')}`;
        const entry = stats.get(key) ?? { key, cls, calls: 0, seconds: 0 };
        entry.calls += 1;
        entry.seconds += seconds;
        stats.set(key, entry);
      }
    };
  }
  let best: { wall: number; stats: Map<string, OpCallStats> } | undefined;
  try {
    // A call that must reach the addon proves the timers are in the runtime's path.
    rt.numThreads();
    if (![...stats.values()].some((s) => s.key.startsWith('numThreads'))) {
      throw new Error('profileOps: the runtime does not go through the addon object this profiler wrapped');
    }
    // Each call is timed on its own and the fastest one is reported: on a shared machine the
    // others mostly measure who else was running.
    for (let i = 0; i < reps; ++i) {
      stats.clear();
      const t0 = performance.now();
      fn();
      const wall = (performance.now() - t0) / 1000;
      if (!best || wall < best.wall) best = { wall, stats: new Map(stats) };
    }
  } finally {
    for (const [name, original] of originals) native[name] = original;
  }
  const classes = Object.fromEntries(OP_CLASSES.map((c) => [c, 0])) as Record<OpClass, number>;
  const ops = [...best!.stats.values()];
  for (const s of ops) classes[s.cls] += s.seconds;
  ops.sort((a, b) => b.seconds - a.seconds);
  return { wall: best!.wall, classes, ops };
}

/** torch's classes (reference.py) folded into ours: its 'other:<aten op>' entries become 'other'. */
export function foldReferenceClasses(classes: Record<string, number>): { classes: Record<OpClass, number>; others: Record<string, number> } {
  const folded = Object.fromEntries(OP_CLASSES.map((c) => [c, 0])) as Record<OpClass, number>;
  const others: Record<string, number> = {};
  for (const [name, seconds] of Object.entries(classes)) {
    if ((OP_CLASSES as readonly string[]).includes(name)) folded[name as OpClass] += seconds;
    else {
      folded.other += seconds;
      others[name.replace(/^other:/, '')] = seconds;
    }
  }
  return { classes: folded, others };
}
