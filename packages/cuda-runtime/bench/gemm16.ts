// 16-bit products against PyTorch's on the same machine in the same run: bfloat16 matmul at
// 1024 / 2048 / 4096, the linear layers of a FLUX.1-width transformer (1280 tokens, width
// 3072), and bfloat16 attention at FLUX.1's 24 heads x 128 against scaled_dot_product_attention;
// float16 on our side too. Interleaved, same thread count (timing.ts).
//
//   DITCACHE_REFERENCE_PYTHON=/path/to/venv/bin/python npm run bench:16bit -w @ditcache/cuda-runtime
//
// The Python needs torch; without it only our side runs.
import { spawnSync } from 'node:child_process';

import * as rt from '../src/index.js';
import { PythonTimer } from './python.js';
import { interleaved, random, timeOnce } from './timing.js';

interface ProductCase {
  name: string;
  /** matmul (m, k) x (k, n), or linear: x (m, k), weight (n, k). */
  kind: 'matmul' | 'linear';
  m: number;
  k: number;
  n: number;
}

const PRODUCTS: ProductCase[] = [
  { name: 'square 1024', kind: 'matmul', m: 1024, k: 1024, n: 1024 },
  { name: 'square 2048', kind: 'matmul', m: 2048, k: 2048, n: 2048 },
  { name: 'square 4096', kind: 'matmul', m: 4096, k: 4096, n: 4096 },
  { name: 'FLUX q/k/v, out', kind: 'linear', m: 1280, k: 3072, n: 3072 },
  { name: 'FLUX MLP up', kind: 'linear', m: 1280, k: 3072, n: 12288 },
  { name: 'FLUX MLP down', kind: 'linear', m: 1024, k: 12288, n: 3072 },
  { name: 'FLUX modulation', kind: 'linear', m: 1, k: 3072, n: 18432 },
];
const ATTENTION = { b: 1, h: 24, s: 1280, d: 128 };

const TORCH_JOBS = `
import torch, torch.nn.functional as F
jobs = {}
def setup(name, kind, threads, dtype, **a):
    torch.set_num_threads(threads)
    dt = getattr(torch, dtype)
    if kind == 'matmul':
        x = torch.rand(a['m'], a['k']).to(dt) - 0.5; y = torch.rand(a['k'], a['n']).to(dt) - 0.5
        jobs[name] = lambda: x @ y
    elif kind == 'linear':
        x = torch.rand(a['m'], a['k']).to(dt) - 0.5; w = torch.rand(a['n'], a['k']).to(dt) - 0.5
        jobs[name] = lambda: F.linear(x, w)
    else:
        q, k, v = ((torch.rand(a['b'], a['h'], a['s'], a['d']) - 0.5).to(dt) for _ in range(3))
        jobs[name] = lambda: F.scaled_dot_product_attention(q, k, v)
    jobs[name]()
def run(name):
    with torch.no_grad():
        jobs[name]()
`;

function torchPython(): string | null {
  const python = process.env.DITCACHE_REFERENCE_PYTHON;
  if (!python) {
    console.error('PyTorch side skipped: set DITCACHE_REFERENCE_PYTHON to a Python with torch.');
    return null;
  }
  const check = spawnSync(python, ['-c', 'import torch; print(torch.__version__)'], { encoding: 'utf-8' });
  if (check.status !== 0) {
    console.error(`PyTorch side skipped: ${python} cannot import torch`);
    return null;
  }
  console.log(`PyTorch ${check.stdout.trim()} (${python})`);
  return python;
}

async function main(): Promise<void> {
  const dev = rt.devices();
  const threads = dev.cpu.threads;
  console.log(
    `CPU: ${dev.cpu.name}, ${threads} threads, ISA ${dev.cpu.isa} (16-bit products: ${dev.cpu.isa === 'avx512bf16' ? 'VDPBF16PS for bfloat16' : 'widened to float32'})`,
  );
  const python = torchPython();
  const torch = python ? new PythonTimer(python, TORCH_JOBS) : null;
  try {
    console.log('\nProducts, GFLOP/s (median of interleaved calls); ratio = ours / PyTorch throughput:\n');
    const onednn = dev.cpu.onednnLoaded;
    console.log(`| case | (m, k, n) | ours bf16 | PyTorch bf16 | **bf16 ours / PyTorch** | ours fp16 |${onednn ? ' ours bf16 through oneDNN |' : ''}`);
    console.log(`|---|---|---:|---:|---:|---:|${onednn ? '---:|' : ''}`);
    const initial = rt.halfGemmBackend();
    for (const c of PRODUCTS) {
      const flops = 2 * c.m * c.k * c.n;
      const big = flops > 5e10;
      const ours = (['bfloat16', 'float16'] as const).map((dtype) => {
        const a = random([c.m, c.k], dtype);
        const b = c.kind === 'matmul' ? random([c.k, c.n], dtype) : random([c.n, c.k], dtype);
        const product = () => (c.kind === 'matmul' ? rt.matmul(a, b) : rt.linear(a, b)).dispose();
        return {
          run: () => (rt.setHalfGemmBackend('builtin'), timeOnce(product)),
          runOneDnn: () => (rt.setHalfGemmBackend('onednn'), timeOnce(product)),
          free: () => (a.dispose(), b.dispose()),
        };
      });
      await torch?.setup(c.name, { kind: c.kind, threads, dtype: 'bfloat16', m: c.m, k: c.k, n: c.n });
      const runners = [ours[0].run, ours[1].run, ...(onednn ? [ours[0].runOneDnn] : []), ...(torch ? [() => torch.time(c.name)] : [])];
      const times = await interleaved(3, big ? 2 : 5, runners);
      const [bf, fp] = times,
        dn = onednn ? times[2] : undefined,
        pt = torch ? times[times.length - 1] : undefined;
      for (const o of ours) o.free();
      const gf = (s: number) => (flops / s / 1e9).toFixed(1);
      console.log(
        `| ${c.name} | (${c.m}, ${c.k}, ${c.n}) | ${gf(bf)} | ${pt ? gf(pt) : 'n/a'} | **${pt ? (pt / bf).toFixed(2) : 'n/a'}** | ${gf(fp)} |${dn ? ` ${gf(dn)} |` : ''}`,
      );
    }
    rt.setHalfGemmBackend(initial);

    const { b, h, s, d } = ATTENTION;
    console.log(`\nAttention (${b}, ${h}, ${s}, ${d}) in bfloat16, ms (median); ratio = PyTorch time / ours:\n`);
    await torch?.setup('attention', { kind: 'attention', threads, dtype: 'bfloat16', b, h, s, d });
    const [q, k, v] = [0, 1, 2].map(() => random([b, h, s, d], 'bfloat16'));
    const runners = [() => timeOnce(() => rt.attention(q, k, v).dispose()), ...(torch ? [() => torch.time('attention')] : [])];
    const [ours, pt] = await interleaved(3, 3, runners);
    for (const t of [q, k, v]) t.dispose();
    console.log('| ours | PyTorch SDPA | **PyTorch / ours** |\n|---:|---:|---:|');
    console.log(`| ${(ours * 1e3).toFixed(1)} | ${pt ? (pt * 1e3).toFixed(1) : 'n/a'} | **${pt ? (pt / ours).toFixed(2) : 'n/a'}** |`);
  } finally {
    torch?.close();
  }
}

await main();
