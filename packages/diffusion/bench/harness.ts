// What the model benchmarks share: the reference Python (diffusers + PyTorch) the user points
// at, the random-weight model folders they run on, a JSON-line client for reference.py, and
// timing, statistics and markdown helpers. The benchmarks compile this folder together with
// their own (see an adapter's tsconfig.bench.json); nothing here is part of a package.
import { spawn, spawnSync, type ChildProcessByStdio } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface, type Interface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';

import * as rt from '@ditcache/cuda-runtime';
import { AutoencoderKLDecoder, WeightReader } from '@ditcache/diffusion';

/** reference.py, next to this file in the source tree (the compiled harness lives elsewhere). */
export const REFERENCE_SCRIPT = join(sourceDir(), 'reference.py');

function sourceDir(): string {
  // Compiled to <package>/.cache/bench-build/diffusion/bench/; the script stays in packages/diffusion/bench,
  // which is found by walking up to packages/.
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 8; ++i) {
    const candidate = join(dir, 'diffusion', 'bench', 'reference.py');
    if (existsSync(candidate)) return dirname(candidate);
    dir = dirname(dir);
  }
  throw new Error('bench harness: cannot find packages/diffusion/bench/reference.py');
}

/** `<package>/.cache`: the git-ignored folder of the package whose compiled benchmark is `moduleUrl`. */
export function packageCacheDir(moduleUrl: string): string {
  let dir = dirname(fileURLToPath(moduleUrl));
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error(`packageCacheDir: no package.json above ${fileURLToPath(moduleUrl)}`);
    dir = up;
  }
  return join(dir, '.cache');
}

// ---------------------------------------------------------------------------------------------
// The reference Python

export const REFERENCE_ENV = 'DITCACHE_REFERENCE_PYTHON';

/**
 * The Python named by DITCACHE_REFERENCE_PYTHON when it imports torch, diffusers and
 * safetensors; otherwise null, after saying on stderr why the reference side is skipped.
 */
export function referencePython(): string | null {
  if (foundPython === undefined) foundPython = findReferencePython();
  return foundPython;
}

let foundPython: string | null | undefined;

function findReferencePython(): string | null {
  const python = process.env[REFERENCE_ENV];
  if (!python) {
    console.error(
      `reference side skipped: set ${REFERENCE_ENV} to a Python with torch and diffusers ` +
        '(e.g. a venv from `pip install torch diffusers safetensors`; see the package README). Timing ours only.',
    );
    return null;
  }
  const check = spawnSync(python, ['-c', 'import torch, diffusers, safetensors'], { encoding: 'utf-8' });
  if (check.status !== 0) {
    console.error(
      `reference side skipped: ${REFERENCE_ENV}=${python} cannot import torch, diffusers and safetensors:\n${(check.stderr ?? check.error?.message ?? '').trim()}`,
    );
    return null;
  }
  return python;
}

// ---------------------------------------------------------------------------------------------
// Random-weight model folders

/** A diffusers component made with random weights for a benchmark. */
export interface RandomComponent {
  /** The diffusers class, e.g. 'FluxTransformer2DModel'. */
  diffusersClass: string;
  /** Its constructor arguments, as they end up in config.json. */
  config: Record<string, unknown>;
  /** torch.manual_seed before construction (diffusers), or the seed of the runtime's generator. */
  seed: number;
  /**
   * Loads a folder with our code (used, without reference Python, to learn every weight's
   * name and shape from the loader itself: see writeRandomComponent).
   */
  load(dir: string): { dispose(): void };
}

export type ComponentSource = 'diffusers' | 'runtime';

/**
 * A two-level AutoencoderKL with the 16 latent channels, scaling and shift of FLUX.1's (and
 * HiDream's, which is the same): their pipelines need one, the benchmarks never decode.
 */
export const TINY_AUTOENCODER_KL: RandomComponent = {
  diffusersClass: 'AutoencoderKL',
  config: {
    in_channels: 3,
    out_channels: 3,
    down_block_types: ['DownEncoderBlock2D', 'DownEncoderBlock2D'],
    up_block_types: ['UpDecoderBlock2D', 'UpDecoderBlock2D'],
    block_out_channels: [8, 16],
    layers_per_block: 1,
    latent_channels: 16,
    norm_num_groups: 4,
    scaling_factor: 0.3611,
    shift_factor: 0.1159,
    use_quant_conv: false,
    use_post_quant_conv: false,
  },
  seed: 0,
  load: (dir) => AutoencoderKLDecoder.load(dir),
};

/**
 * A folder `<root>/<name>` holding the component, made once and reused: by diffusers (its own
 * initialisation, `save_pretrained`) when reference Python is given, else by the runtime.
 * The folder name carries a hash of class, config and seed, so changing them makes a new one.
 */
export function ensureComponent(root: string, name: string, component: RandomComponent, python: string | null): { dir: string; source: ComponentSource } {
  const key = createHash('sha256')
    .update(JSON.stringify([component.diffusersClass, component.config, component.seed]))
    .digest('hex')
    .slice(0, 10);
  const dir = join(root, `${name}-${key}`);
  const marker = join(dir, '.complete');
  if (existsSync(marker)) return { dir, source: readFileSync(marker, 'utf-8').trim() as ComponentSource };
  rmSync(dir, { recursive: true, force: true });
  const partial = `${dir}.partial`;
  rmSync(partial, { recursive: true, force: true });
  mkdirSync(dirname(dir), { recursive: true });
  let source: ComponentSource;
  if (python) {
    console.error(`making ${name} with diffusers (${component.diffusersClass}, seed ${component.seed}) in ${dir}...`);
    const made = spawnSync(python, [REFERENCE_SCRIPT, 'make', component.diffusersClass, JSON.stringify(component.config), String(component.seed), partial], {
      encoding: 'utf-8',
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    if (made.status !== 0) throw new Error(`reference.py make ${component.diffusersClass} failed (exit ${made.status})`);
    source = 'diffusers';
  } else {
    console.error(`making ${name} with the runtime's random generator (no reference Python) in ${dir}...`);
    writeRandomComponent(partial, component);
    source = 'runtime';
  }
  renameSync(partial, dir);
  writeFileSync(marker, `${source}\n`);
  return { dir, source };
}

/**
 * Writes config.json and random weights for `component` without Python. The weights' names and
 * shapes come from our loader: it is run on a folder with no weights while WeightReader.tensor
 * records what it asks for. Values follow torch's nn.Linear / nn.Conv default (uniform in
 * +-1/sqrt(fan in), biases with their weight's fan in); norm scales are 1.
 */
export function writeRandomComponent(dir: string, component: RandomComponent): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ _class_name: component.diffusersClass, ...component.config }, null, 2));
  const weightsPath = join(dir, 'diffusion_pytorch_model.safetensors');
  rt.saveSafetensors(weightsPath, {});
  const shapes = new Map<string, number[]>();
  const original = Object.getOwnPropertyDescriptor(WeightReader.prototype, 'tensor')!;
  WeightReader.prototype.tensor = function (this: WeightReader, name: string, shape?: readonly number[]): rt.Tensor {
    if (!shape) throw new Error(`writeRandomComponent: the loader reads '${this.prefix}${name}' without saying its shape`);
    shapes.set(this.prefix + name, [...shape]);
    return this.store.adopt(rt.zeros(shape));
  };
  try {
    component.load(dir).dispose();
  } finally {
    Object.defineProperty(WeightReader.prototype, 'tensor', original);
  }
  const random = seededUniform(component.seed);
  rt.tidy(() => {
    const tensors: Record<string, rt.Tensor> = {};
    for (const [name, shape] of shapes) {
      const size = shape.reduce((a, b) => a * b, 1);
      const values = new Float32Array(size);
      if (shape.length === 1 && /norm[^.]*\.weight$/.test(name)) {
        values.fill(1);
      } else {
        const weightShape = shape.length === 1 ? shapes.get(name.replace(/bias$/, 'weight')) : shape;
        const fanIn = weightShape && weightShape.length > 1 ? weightShape.slice(1).reduce((a, b) => a * b, 1) : shape[0];
        const bound = 1 / Math.sqrt(fanIn);
        for (let i = 0; i < size; ++i) values[i] = (2 * random() - 1) * bound;
      }
      tensors[name] = rt.tensor(values, shape);
    }
    rt.saveSafetensors(weightsPath, tensors);
  });
}

/** Uniform [0, 1) numbers from a fixed 32-bit LCG (reproducible, not torch's generator). */
function seededUniform(seed: number): () => number {
  let state = seed >>> 0 || 1;
  return () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

/** Parameter count of a component folder (every tensor of its safetensors). */
export function parameterCount(dir: string): number {
  using folder = new rt.WeightFolder(dir);
  return folder.keys().reduce((n, k) => n + folder.entry(k)!.shape.reduce((a, b) => a * b, 1), 0);
}

// ---------------------------------------------------------------------------------------------
// reference.py serve

export interface ReferenceInfo {
  torch: string;
  diffusers: string;
  threads: number;
  parameters: number;
  /** The torch_dtype the model was loaded with. */
  dtype: string;
}

/** torch.profiler's view of one forward, as reference.py's profile command returns it (seconds per call). */
export interface ReferenceProfile {
  /** Per op class (see op-profile.ts), 'other:<aten op>' for ops outside the classes. */
  classes: Record<string, number>;
  /** Wall time per call while profiling. */
  wall: number;
  /** The slowest aten ops with their input shapes. */
  ops: { cls: string; key: string; calls: number; seconds: number }[];
}

/** One reference model loaded in a Python process that answers commands one at a time. */
export class ReferenceServer {
  private constructor(
    private readonly child: ChildProcessByStdio<Writable, Readable, null>,
    private readonly lines: AsyncIterator<string>,
    private readonly reader: Interface,
    readonly info: ReferenceInfo,
  ) {}

  /** `dtype` is the torch_dtype of the model; the floating-point inputs are cast to it. */
  static async start(
    python: string,
    diffusersClass: string,
    modelDir: string,
    inputsPath: string,
    threads: number,
    dtype: rt.DType = 'float32',
  ): Promise<ReferenceServer> {
    const child = spawn(python, [REFERENCE_SCRIPT, 'serve', diffusersClass, modelDir, inputsPath, String(threads), dtype], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    const reader = createInterface({ input: child.stdout });
    const lines = reader[Symbol.asyncIterator]();
    const first = await lines.next();
    if (first.done) throw new Error(`reference.py serve ${diffusersClass} exited before it was ready`);
    const info = JSON.parse(first.value) as ReferenceInfo;
    return new ReferenceServer(child, lines, reader, info);
  }

  private async ask<T>(cmd: Record<string, unknown>): Promise<T> {
    this.child.stdin.write(JSON.stringify(cmd) + '\n');
    const next = await this.lines.next();
    if (next.done) throw new Error(`reference.py exited during ${JSON.stringify(cmd)}`);
    const reply = JSON.parse(next.value) as T & { error?: string };
    if (reply.error) throw new Error(`reference.py: ${reply.error}`);
    return reply;
  }

  /** Wall and CPU seconds of each of `reps` forward calls after `warmup` untimed ones. */
  async time(reps: number, warmup: number): Promise<CallTimes> {
    return this.ask<CallTimes>({ cmd: 'time', reps, warmup });
  }

  /** Writes one forward's output as `sample` to `out`. */
  async run(out: string): Promise<void> {
    await this.ask({ cmd: 'run', out });
  }

  /** torch.set_num_threads(threads) in the reference process. */
  async threads(threads: number): Promise<void> {
    await this.ask({ cmd: 'threads', threads });
  }

  /** torch.profiler's view of the fastest of `reps` forward calls. */
  async profile(reps: number): Promise<ReferenceProfile> {
    return this.ask<ReferenceProfile>({ cmd: 'profile', reps });
  }

  async close(): Promise<void> {
    this.child.stdin.write(JSON.stringify({ cmd: 'quit' }) + '\n');
    this.child.stdin.end();
    this.reader.close();
    await new Promise<void>((resolve) => (this.child.exitCode !== null ? resolve() : this.child.once('exit', () => resolve())));
  }
}

// ---------------------------------------------------------------------------------------------
// Timing and statistics

/** Wall and CPU seconds of a list of calls. */
export interface CallTimes {
  seconds: number[];
  /** Process CPU time (all threads, user + system): unlike wall time, not stretched while other jobs hold the cores. */
  cpu: number[];
}

/** Process CPU seconds (user + system, every thread) since `start`, from process.cpuUsage(). */
export function cpuSince(start: NodeJS.CpuUsage): number {
  const used = process.cpuUsage(start);
  return (used.user + used.system) / 1e6;
}

/** Wall and CPU seconds of each of `reps` calls of `fn` after `warmup` untimed calls. */
export function timeCalls(fn: () => void, reps: number, warmup: number): CallTimes {
  for (let i = 0; i < warmup; ++i) fn();
  const times: CallTimes = { seconds: [], cpu: [] };
  for (let i = 0; i < reps; ++i) {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    fn();
    times.seconds.push((performance.now() - t0) / 1000);
    times.cpu.push(cpuSince(c0));
  }
  return times;
}

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export function quantile(xs: readonly number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  const at = q * (s.length - 1);
  const lo = Math.floor(at);
  return s[lo] + (s[Math.min(lo + 1, s.length - 1)] - s[lo]) * (at - lo);
}

/** Benchmark settings a user can change from the environment (e.g. more rounds on a noisy machine). */
export function benchSetting(name: string, fallback: number): number {
  const raw = process.env[`DITCACHE_BENCH_${name}`];
  const value = raw === undefined ? fallback : Number(raw);
  if (!Number.isFinite(value) || value <= 0) throw new Error(`DITCACHE_BENCH_${name} must be a positive number, got ${raw}`);
  return value;
}

/** ||a - b|| / ||b|| in float64. */

export const ms = (seconds: number): string => (seconds * 1000).toFixed(1);

export function markdownTable(header: readonly string[], rows: readonly (readonly string[])[], align?: readonly ('l' | 'r')[]): string {
  const rule = header.map((_, i) => ((align?.[i] ?? (i === 0 ? 'l' : 'r')) === 'r' ? '---:' : '---'));
  return [header, rule, ...rows].map((r) => `| ${r.join(' | ')} |`).join('\n');
}

/** The 1-minute load average, e.g. '2.31': above the core count, other jobs are competing for the cores. */
export function loadAverage(): string {
  return loadavg()[0].toFixed(2);
}

/** One line naming the machine and the runtime's setup, for the tables' captions. */
export function machineLine(torchVersion?: string): string {
  const cpu = rt.devices().cpu;
  const blas = cpu.gemm === 'blas' ? cpu.blas.split(' ').slice(0, 2).join(' ') : 'built-in GEMM';
  const parts = [
    `${cpu.name} x ${cpus().length} cores (${cpu.isa})`,
    `Node ${process.versions.node}`,
    `ditcache CPU kernels with ${blas}, a pool of ${rt.numThreads()} threads`,
  ];
  // OpenMP's wait policy decides how torch's threads behave when another job holds a core.
  if (torchVersion) parts.push(`torch ${torchVersion} (OMP_WAIT_POLICY ${process.env.OMP_WAIT_POLICY ?? 'unset'})`);
  return parts.join('; ');
}
