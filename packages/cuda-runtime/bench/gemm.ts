// GEMM throughput (float32, square sizes) for each CPU backend next to numpy's in the same run,
// and attention timings. Run with `npm run bench -w @ditcache/cuda-runtime`.
import { performance } from 'node:perf_hooks';

import * as rt from '../src/index.js';
import { numpyPython, runPython } from './python.js';

const SIZES = [256, 512, 1024, 2048];

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** Median seconds of `fn` over enough repetitions to fill about `budget` seconds. */
function timeIt(fn: () => void, budget = 1.5): number {
  fn();
  const first = performance.now();
  fn();
  const once = (performance.now() - first) / 1000;
  const reps = Math.max(3, Math.min(50, Math.floor(budget / Math.max(once, 1e-6))));
  const times: number[] = [];
  for (let i = 0; i < reps; ++i) {
    const t0 = performance.now();
    fn();
    times.push((performance.now() - t0) / 1000);
  }
  return median(times);
}

function random(shape: number[]): rt.Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const d = new Float32Array(n);
  for (let i = 0; i < n; ++i) d[i] = Math.random() - 0.5;
  return rt.tensor(d, shape);
}

const numpyGemm = (python: string): Record<string, number> =>
  runPython(python, `
import json, time, numpy as np
out = {}
for n in ${JSON.stringify(SIZES)}:
    a = np.random.rand(n, n).astype(np.float32); b = np.random.rand(n, n).astype(np.float32)
    a @ b
    t = time.perf_counter(); a @ b; once = time.perf_counter() - t
    reps = max(3, min(50, int(1.5 / max(once, 1e-6))))
    ts = []
    for _ in range(reps):
        t = time.perf_counter(); a @ b; ts.append(time.perf_counter() - t)
    out[str(n)] = sorted(ts)[len(ts) // 2]
print(json.dumps(out))
`);

interface AttentionCase {
  name: string;
  b: number;
  h: number;
  s: number;
  d: number;
}
const ATTENTION: AttentionCase[] = [
  { name: 'FLUX-tiny-like', b: 2, h: 4, s: 320, d: 64 },
  { name: '1024 tokens', b: 1, h: 8, s: 1024, d: 64 },
  { name: '4096 tokens', b: 1, h: 4, s: 4096, d: 128 },
];

const numpyAttention = (python: string): Record<string, number> =>
  runPython(python, `
import json, time, numpy as np
out = {}
for c in ${JSON.stringify(ATTENTION)}:
    q, k, v = (np.random.rand(c['b'], c['h'], c['s'], c['d']).astype(np.float32) for _ in range(3))
    def run():
        s = (q @ k.transpose(0, 1, 3, 2)) * (1.0 / np.sqrt(c['d']))
        s = np.exp(s - s.max(-1, keepdims=True))
        return (s / s.sum(-1, keepdims=True)) @ v
    run()
    ts = []
    for _ in range(5):
        t = time.perf_counter(); run(); ts.append(time.perf_counter() - t)
    out[c['name']] = sorted(ts)[len(ts) // 2]
print(json.dumps(out))
`);

function main(): void {
  const dev = rt.devices();
  console.log(`CPU: ${dev.cpu.name}, ${dev.cpu.threads} threads, ISA ${dev.cpu.isa}; BLAS: ${dev.cpu.blas}`);
  const python = numpyPython();
  const npGemm = python ? numpyGemm(python) : null;
  const backends = dev.cpu.blas === 'none' ? (['builtin'] as const) : (['blas', 'builtin'] as const);
  const initial = rt.gemmBackend();

  console.log('\nfloat32 GEMM, C = A B (square), GFLOP/s (median):\n');
  console.log(`| n | ${backends.map((b) => `ours (${b})`).join(' | ')} | numpy | ${backends.map((b) => `${b} / numpy`).join(' | ')} |`);
  console.log(`|---|${backends.map(() => '---').join('|')}|---|${backends.map(() => '---').join('|')}|`);
  for (const n of SIZES) {
    const ours = backends.map((backend) => {
      rt.setGemmBackend(backend);
      return rt.tidy(() => {
        const a = random([n, n]), b = random([n, n]);
        return timeIt(() => rt.matmul(a, b).dispose());
      });
    });
    const gf = (s: number) => (2 * n ** 3) / s / 1e9;
    const np = npGemm?.[String(n)];
    const cells = ours.map((s) => gf(s).toFixed(1));
    const ratios = ours.map((s) => (np ? (gf(s) / gf(np)).toFixed(2) : 'n/a'));
    console.log(`| ${n} | ${cells.join(' | ')} | ${np ? gf(np).toFixed(1) : 'n/a'} | ${ratios.join(' | ')} |`);
  }
  rt.setGemmBackend(initial);

  const npAtt = python ? numpyAttention(python) : null;
  console.log(`\nAttention (batch, heads, tokens, head dim), float32, ms (median), GEMM backend ${initial}:\n`);
  console.log('| case | shape | ours | numpy (matmul + softmax) | numpy / ours |');
  console.log('|---|---|---|---|---|');
  for (const c of ATTENTION) {
    const s = rt.tidy(() => {
      const [q, k, v] = [0, 1, 2].map(() => random([c.b, c.h, c.s, c.d]));
      return timeIt(() => rt.attention(q, k, v).dispose(), 2);
    });
    const np = npAtt?.[c.name];
    console.log(`| ${c.name} | (${c.b}, ${c.h}, ${c.s}, ${c.d}) | ${(s * 1e3).toFixed(2)} | ${np ? (np * 1e3).toFixed(2) : 'n/a'} | ${np ? (np / s).toFixed(2) : 'n/a'} |`);
  }
}

main();
