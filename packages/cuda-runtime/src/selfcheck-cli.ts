#!/usr/bin/env node
// `npm run selfcheck`: what this machine offers, whether every kernel path computes correctly
// here, and how fast the two hot kernels run; then where to go next.
import { performance } from 'node:perf_hooks';

import * as ops from './ops.js';
import { devices, nativeAddon } from './runtime.js';
import { tidy } from './scope.js';
import { buildSummary, selfCheck } from './selfcheck.js';

function bestOf(reps: number, fn: () => void): number {
  fn();
  let best = Infinity;
  for (let i = 0; i < reps; ++i) {
    const t0 = performance.now();
    fn();
    best = Math.min(best, performance.now() - t0);
  }
  return best;
}

function main(): number {
  const dev = devices();
  console.log('ditcache runtime self-check\n');
  console.log(
    `CPU   ${dev.cpu.name}: ${dev.cpu.threads} threads, ${dev.cpu.isa} kernels, GEMM via ${dev.cpu.gemm === 'blas' ? dev.cpu.blas : 'the built-in kernel'}`,
  );
  console.log(
    `CUDA  ${dev.cuda.available ? dev.cuda.devices.map((d) => `${d.device} ${d.name} (sm ${d.computeCapability})`).join(', ') : `not available: ${dev.cuda.reason}`}`,
  );
  const addon = nativeAddon();
  console.log(`addon ${addon.path} (${addon.source === 'local-build' ? 'local build' : 'prebuilt'})`);
  console.log(`build ${buildSummary()}\n`);

  const results = selfCheck();
  console.log('| check | max error | tolerance | |');
  console.log('|---|---|---|---|');
  for (const r of results) console.log(`| ${r.name} | ${r.error.toExponential(2)} | ${r.tolerance.toExponential(0)} | ${r.ok ? 'ok' : 'FAILED'} |`);

  console.log('\nspeed (best of 5):');
  tidy(() => {
    for (const n of [512, 1024]) {
      const a = ops.full([n, n], 0.5),
        b = ops.full([n, n], 0.25);
      const ms = bestOf(5, () => ops.matmul(a, b).dispose());
      console.log(`  GEMM ${n}x${n}x${n}: ${((2 * n ** 3) / (ms / 1e3) / 1e9).toFixed(1)} GFLOP/s`);
    }
    const q = ops.full([1, 8, 1024, 64], 0.1);
    console.log(`  attention (1, 8, 1024, 64): ${bestOf(5, () => ops.attention(q, q, q).dispose()).toFixed(1)} ms`);
  });
  console.log('\nNext, at the repository root: `npm run demo` generates with the embedded reference model (models/flux-shapes),');
  console.log('uncached and under cache presets; `npm run bench -w @ditcache/cuda-runtime` benchmarks the GEMM against BLAS.');
  const failed = results.filter((r) => !r.ok);
  if (failed.length) console.error(`\n${failed.length} check(s) FAILED: ${failed.map((r) => r.name).join(', ')}`);
  return failed.length ? 1 : 0;
}

process.exitCode = main();
