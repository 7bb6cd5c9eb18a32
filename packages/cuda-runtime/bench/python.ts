// A Python with numpy for benchmarks to time the same work side by side: found, or made from
// the machine's local wheels. Timings interleave with ours one call at a time, so that both
// sides see the same load on a shared machine. Benchmarks only; the runtime never needs Python.
import { execFileSync, spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
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

/**
 * A Python process that defines `setup(name, **args)` and `run(name)` from `code`; each `time`
 * call runs one named job once there and returns its seconds.
 */
export class PythonTimer {
  private readonly child: ChildProcessWithoutNullStreams;
  private readonly lines: AsyncIterator<string>;

  constructor(python: string, code: string) {
    const server = `${code}
import sys, time, json
for line in sys.stdin:
    cmd, name, args = json.loads(line)
    if cmd == 'setup':
        setup(name, **args)
        print(0.0, flush=True)
    else:
        t = time.perf_counter(); run(name); print(time.perf_counter() - t, flush=True)
`;
    this.child = spawn(python, ['-c', server]);
    this.lines = createInterface({ input: this.child.stdout })[Symbol.asyncIterator]();
  }

  private async send(cmd: string, name: string, args: object = {}): Promise<number> {
    this.child.stdin.write(`${JSON.stringify([cmd, name, args])}\n`);
    const { value, done } = await this.lines.next();
    if (done) throw new Error('the Python timer exited');
    return Number(value);
  }

  setup(name: string, args: object): Promise<number> {
    return this.send('setup', name, args);
  }
  time(name: string): Promise<number> {
    return this.send('run', name);
  }
  close(): void {
    this.child.stdin.end();
  }
}
