// `npm run demo`: runs the demo and prints its table. Options: --model DIR, --out DIR,
// --dtype float32|bfloat16|float16 (what the pipeline computes in).
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import { resolve } from 'node:path';

import { benchProgress, computeDtype, type ComputeDtype } from '@ditcache/cli/bench';
import { buildInfo, cpuIsa, gemmBackend, numThreads } from '@ditcache/cuda-runtime';

import { REFERENCE_MODEL, runDemo } from './demo.js';

const t0 = performance.now();
const { values } = parseArgs({ options: { model: { type: 'string' }, out: { type: 'string' }, dtype: { type: 'string' } } });
let dtype: ComputeDtype;
try {
  dtype = computeDtype(values.dtype, '--dtype');
} catch (e) {
  process.stderr.write(`demo: ${(e as Error).message}\n`);
  process.exit(2);
}
// npm runs workspace scripts in the package's folder; INIT_CWD is where the user typed the command.
const base = process.env.INIT_CWD ?? process.cwd();
const model = values.model === undefined ? REFERENCE_MODEL : resolve(base, values.model);
const out = resolve(base, values.out ?? 'demo-output');
const info = buildInfo();
process.stdout.write(
  `ditcache demo: ${model} in ${dtype}\nruntime: CPU, ${numThreads()} threads, ${cpuIsa()} kernels, GEMM ${gemmBackend() === 'blas' ? info.blas : 'built-in'} ` +
    '(`npm run selfcheck` checks every kernel path on this machine)\n\n',
);
const progress = benchProgress('demo');
let demo: Awaited<ReturnType<typeof runDemo>>;
try {
  demo = await runDemo({ model, out, dtype, onProgress: (p) => progress.update(p) });
} finally {
  progress.stop();
}
process.stdout.write(
  `${demo.prompts.length} prompts x (uncached + ${demo.results.length - 1} cache configs: presets, then SCM, FoCa, DBPrune, PAB, FasterCache and MagCache), ${demo.steps} steps each; wall time summed over the prompts; ` +
    'PSNR / SSIM of the 8-bit images against the uncached ones, mean over the prompts\n\n' +
    `${demo.table}\n\nwrote ${demo.files.grid}\n      ${demo.files.plot}\n      ${demo.files.table}\n` +
    `demo finished in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`,
);
