// GEMM throughput (float32, square sizes) for each CPU backend next to numpy's, and attention
// timings next to numpy's matmul + softmax, interleaved (timing.ts).
// Run with `npm run bench -w @ditcache/cuda-runtime`.
import * as rt from '../src/index.js';
import { PythonTimer, numpyPython } from './python.js';
import { interleaved, random, timeOnce } from './timing.js';

const SIZES = [256, 512, 1024, 2048];

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

const NUMPY_JOBS = `
import numpy as np
jobs = {}
def setup(name, kind, **a):
    if kind == 'gemm':
        n = a['n']
        x = np.random.rand(n, n).astype(np.float32); y = np.random.rand(n, n).astype(np.float32)
        jobs[name] = lambda: x @ y
    else:
        q, k, v = (np.random.rand(a['b'], a['h'], a['s'], a['d']).astype(np.float32) for _ in range(3))
        scale = 1.0 / np.sqrt(a['d'])
        def attend():
            s = (q @ k.transpose(0, 1, 3, 2)) * scale
            s = np.exp(s - s.max(-1, keepdims=True))
            return (s / s.sum(-1, keepdims=True)) @ v
        jobs[name] = attend
    jobs[name]()
def run(name):
    jobs[name]()
`;

async function main(): Promise<void> {
  const dev = rt.devices();
  console.log(`CPU: ${dev.cpu.name}, ${dev.cpu.threads} threads, ISA ${dev.cpu.isa}; BLAS: ${dev.cpu.blas}`);
  const python = numpyPython();
  const numpy = python ? new PythonTimer(python, NUMPY_JOBS) : null;
  const backends = dev.cpu.blasLoaded ? (['blas', 'builtin'] as const) : (['builtin'] as const);
  const initial = rt.gemmBackend();
  try {
    console.log('\nfloat32 GEMM, C = A B (square), GFLOP/s (median of interleaved calls):\n');
    console.log(`| n | ${backends.map((b) => `ours (${b})`).join(' | ')} | numpy | ${backends.map((b) => `${b} / numpy`).join(' | ')} |`);
    console.log(`|---|${backends.map(() => '---').join('|')}|---|${backends.map(() => '---').join('|')}|`);
    for (const n of SIZES) {
      await numpy?.setup(`gemm${n}`, { kind: 'gemm', n });
      using scope = new rt.TensorScope();
      const a = random([n, n]),
        b = random([n, n]);
      const ours = backends.map((backend) => () => {
        rt.setGemmBackend(backend);
        return timeOnce(() => rt.matmul(a, b).dispose());
      });
      const seconds = await interleaved(3, n >= 2048 ? 3 : n >= 1024 ? 6 : 20, [...ours, ...(numpy ? [() => numpy.time(`gemm${n}`)] : [])]);
      scope.close();
      const gf = (s: number) => (2 * n ** 3) / s / 1e9;
      const np = numpy ? seconds[backends.length] : undefined;
      const mine = seconds.slice(0, backends.length);
      const ratios = mine.map((s) => (np ? (np / s).toFixed(2) : 'n/a'));
      console.log(`| ${n} | ${mine.map((s) => gf(s).toFixed(1)).join(' | ')} | ${np ? gf(np).toFixed(1) : 'n/a'} | ${ratios.join(' | ')} |`);
    }
    rt.setGemmBackend(initial);

    console.log(`\nAttention (batch, heads, tokens, head dim), float32, ms (median), GEMM backend ${initial}:\n`);
    console.log('| case | shape | ours | numpy (matmul + softmax) | numpy / ours |');
    console.log('|---|---|---|---|---|');
    for (const c of ATTENTION) {
      await numpy?.setup(c.name, { kind: 'attention', b: c.b, h: c.h, s: c.s, d: c.d });
      using scope = new rt.TensorScope();
      const [q, k, v] = [0, 1, 2].map(() => random([c.b, c.h, c.s, c.d]));
      const runners: (() => Promise<number> | number)[] = [() => timeOnce(() => rt.attention(q, k, v).dispose())];
      if (numpy) runners.push(() => numpy.time(c.name));
      const [ours, np] = await interleaved(3, c.s >= 4096 ? 1 : 3, runners);
      scope.close();
      console.log(
        `| ${c.name} | (${c.b}, ${c.h}, ${c.s}, ${c.d}) | ${(ours * 1e3).toFixed(2)} | ${np ? (np * 1e3).toFixed(2) : 'n/a'} | ${np ? (np / ours).toFixed(2) : 'n/a'} |`,
      );
    }
  } finally {
    numpy?.close();
  }
}

await main();
