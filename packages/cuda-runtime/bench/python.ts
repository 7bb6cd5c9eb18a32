// Finds (or makes, from the machine's local wheels) a Python with numpy, so that benchmarks can
// time the same work in numpy side by side. Benchmarks only; the runtime never needs Python.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const cacheDir = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '.cache');

function hasNumpy(python: string): boolean {
  return spawnSync(python, ['-c', 'import numpy'], { stdio: 'ignore' }).status === 0;
}

/** A python executable that imports numpy, or null with the reason printed. */
export function numpyPython(): string | null {
  const venv = join(cacheDir, 'bench-venv');
  const candidates = [process.env.DITCACHE_BENCH_PYTHON, join(venv, 'bin', 'python'), 'python3'].filter(Boolean) as string[];
  for (const p of candidates) if (hasNumpy(p)) return p;
  if (spawnSync('python3', ['--version'], { stdio: 'ignore' }).status !== 0) {
    console.error('numpy comparison skipped: no python3');
    return null;
  }
  try {
    if (!existsSync(venv)) execFileSync('python3', ['-m', 'venv', venv], { stdio: 'ignore' });
    execFileSync(join(venv, 'bin', 'pip'), ['install', '-q', 'numpy'], { stdio: 'ignore', timeout: 300_000 });
    return hasNumpy(join(venv, 'bin', 'python')) ? join(venv, 'bin', 'python') : null;
  } catch {
    console.error(`numpy comparison skipped: could not install numpy into ${venv}`);
    return null;
  }
}

/** Runs a Python snippet that prints one JSON value, and returns it. */
export function runPython<T>(python: string, code: string): T {
  const out = execFileSync(python, ['-c', code], { encoding: 'utf-8', maxBuffer: 1 << 24 });
  return JSON.parse(out.trim().split('\n').pop()!) as T;
}
