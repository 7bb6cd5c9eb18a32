import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

const addon = join(dirname(fileURLToPath(import.meta.url)), '..', 'build', 'Release', 'ditcache_native.node');

// Calls every native function with combinations of hostile arguments, in a child process so
// that a crash (segfault, abort) fails the test instead of the test runner.
const script = `
const n = require(${JSON.stringify(addon)});
const { writeFileSync } = require('node:fs');
const t = (shape, dtype = 'float32') => n.full(shape, 1.5, dtype, 'cpu');
const disposed = t([2]); disposed.dispose();
const path = require('node:os').tmpdir() + '/ditcache-robust-' + process.pid;
writeFileSync(path, Buffer.alloc(64, 7));
const mapping = n.mapFile(path);
const pool = [undefined, null, 0, -1, 2, 1e20, NaN, Infinity, -0.5, 'float32', 'cuda:0', 'x', true,
  [], [2, 3], [-1], [1e12, 1e12], [0], [2.5], ['a'], {}, { shape: [2] }, new Float32Array(3), new Int32Array(2),
  new Uint16Array(2), Buffer.alloc(4), t([2, 3]), t([3]), t([1, 2, 3, 4]), t([0, 5]), t([2, 3], 'int32'),
  t([4], 'float16'), t([2, 2, 2, 2], 'bfloat16'), disposed, mapping, n.transpose(t([3, 4]), 0, 1),
  n.expand(t([1, 4]), [5, 4]), () => 1, Symbol('s')];
let calls = 0, errors = 0, returns = 0;
const fns = Object.entries(n).filter(([k, v]) => typeof v === 'function' && !/^(Native|setNumThreads|setCpuIsa|setGemmBackend|setHalfGemmBackend|setAllowTf32)/.test(k));
let seed = 12345;
const rand = (k) => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed % k; };
for (const [name, fn] of fns) {
  for (let trial = 0; trial < 400; ++trial) {
    const args = Array.from({ length: rand(8) }, () => pool[rand(pool.length)]);
    calls++;
    try {
      const r = fn(...args);
      returns++;
      if (r && typeof r.dispose === 'function' && r !== mapping && !pool.includes(r)) r.dispose();
    } catch (e) {
      if (!(e instanceof Error)) throw new Error(name + ' threw a non-Error: ' + String(e));
      if (!e.message) throw new Error(name + ' threw an Error without a message');
      errors++;
    }
  }
}
// Methods of the handle classes too.
for (const obj of [t([2]), disposed, mapping]) {
  for (const m of ['toFloat32Array', 'toInt32Array', 'toBytes', 'dispose', 'read', 'close']) {
    if (typeof obj[m] !== 'function') continue;
    for (const a of pool.slice(0, 12)) { try { obj[m](a, a); } catch (e) { if (!(e instanceof Error)) throw e; } }
  }
}
// Getters and methods of the tensor prototype called on anything but a tensor handle.
const proto = n.NativeTensor.prototype;
for (const key of Object.getOwnPropertyNames(proto)) {
  if (key === 'constructor') continue;
  const d = Object.getOwnPropertyDescriptor(proto, key);
  for (const self of [{}, mapping, disposed, proto, 1]) {
    try { d.get ? d.get.call(self) : d.value.call(self); } catch (e) { if (!(e instanceof Error)) throw e; }
  }
}
try { new n.NativeTensor(); } catch (e) { if (!(e instanceof TypeError)) throw e; }
try { new n.NativeMapping({}); } catch (e) { if (!(e instanceof TypeError)) throw e; }
require('node:fs').unlinkSync(path);
console.log(JSON.stringify({ calls, errors, returns }));
`;

describe('robustness', () => {
  it('no argument from JS crashes the process; every failure is an Error with a message', () => {
    const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf-8', timeout: 120_000 });
    expect(r.signal, r.stderr).toBeNull();
    expect(r.status, r.stderr).toBe(0);
    const counts = JSON.parse(r.stdout.trim().split('\n').pop()!) as { calls: number; errors: number; returns: number };
    expect(counts.calls).toBeGreaterThan(10_000);
    // Most random argument lists are wrong; some happen to be right.
    expect(counts.errors).toBeGreaterThan(counts.calls / 2);
    expect(counts.returns).toBeGreaterThan(0);
  });
});
