// A long-running app that calls pipe.generate() in a plain loop (no await, so the event loop never
// turns) must run at flat memory: the benchmark's loop, in a fresh process, asserted.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

const BENCH = fileURLToPath(new URL('../bench/sync-loop-memory.mjs', import.meta.url));

interface LoopReport {
  growthMb: number;
  curve: { generations: number; rssMb: number; heapMb: number; liveTensors: number }[];
}

describe('synchronous generation loop', () => {
  it('200 generations from text prompts leave RSS flat and every tensor freed', () => {
    const r = spawnSync(process.execPath, [BENCH, '--generations', '200', '--steps', '4', '--every', '20', '--json'], { encoding: 'utf-8', timeout: 300_000 });
    expect(r.status, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout) as LoopReport;
    expect(report.curve).toHaveLength(11);
    // The same tensors live after every generation: the pipeline's weights and nothing else.
    expect(new Set(report.curve.map((p) => p.liveTensors)).size).toBe(1);
    // After the warm-up each generation allocates the same blocks again, served from what the
    // previous one freed. What may still grow is V8 sizing its heap (one step of about 8 MB
    // measured here) and, outside the heap, allocator bookkeeping (under 5 MB measured). Native
    // memory freed only when the event loop turns, as before this was fixed, grew this loop by
    // 600 MB.
    const first = report.curve[0],
      last = report.curve[report.curve.length - 1];
    expect(report.growthMb).toBeLessThan(40);
    expect(last.rssMb - last.heapMb - (first.rssMb - first.heapMb)).toBeLessThan(12);
  });
});
