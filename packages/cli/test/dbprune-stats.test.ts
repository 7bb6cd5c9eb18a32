// `ditcache generate` with a cache-dit DBPrune file, as users run it (the built bin, flux-tiny):
// the file loads as the dbprune policy, --stats names the blocks pruned at each step as cache-dit
// pruned them, and the printed summary lists them (tools/cache-references-dbprune made the trace).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

const root = new URL('../../../', import.meta.url).pathname;
const bin = join(root, 'packages/cli/dist/cli.js');
const flux = join(root, 'testdata/goldens/flux-tiny');
const dir = mkdtempSync(join(tmpdir(), 'ditcache-dbprune-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const meta = JSON.parse(readFileSync(join(flux, 'meta.json'), 'utf-8')) as Record<string, number>;
const traces = JSON.parse(readFileSync(join(root, 'packages/adapter-flux/test/goldens/flux-tiny/cache_traces_dbprune.json'), 'utf-8')) as {
  traces: Record<string, { config: Record<string, unknown>; pruned_blocks: { non_cfg: Record<string, number[]> } }>;
};

describe('ditcache generate with cache-dit DBPrune', () => {
  it('loads cache_type: DBPrune as the dbprune policy and writes the pruned blocks per step in --stats', () => {
    const trace = traces.traces.F1B0_W2;
    const yaml = join(dir, 'prune.yaml');
    const settings = Object.entries(trace.config).map(([key, value]) => `  ${key}: ${JSON.stringify(value)}`);
    writeFileSync(yaml, ['cache_config:', '  cache_type: DBPrune', ...settings, ''].join('\n'));
    const stats = join(dir, 'stats.json');
    const size = ['--height', String(meta.height), '--width', String(meta.width), '--steps', String(meta.num_inference_steps)];
    const r = spawnSync(
      process.execPath,
      [bin, 'generate', '--model', flux, '--inputs', join(flux, 'pipeline.safetensors'), ...size, '--cache', yaml, '--stats', stats],
      { encoding: 'utf-8', timeout: 120_000 },
    );
    expect(r.status, r.stderr).toBe(0);
    const [record] = JSON.parse(readFileSync(stats, 'utf-8')) as {
      prunedBlocks: Record<string, number[]>;
      cfgPrunedBlocks: Record<string, number[]>;
      computedBlocks: number;
    }[];
    expect(record.prunedBlocks).toEqual(trace.pruned_blocks.non_cfg);
    expect(record.cfgPrunedBlocks).toEqual({});
    const pruned = Object.values(trace.pruned_blocks.non_cfg).flat().length;
    expect(pruned).toBe(10);
    expect(record.computedBlocks).toBe(meta.num_inference_steps * 6 - pruned);
    expect(r.stderr + r.stdout).toContain(
      'Pruned blocks per step, transformer.transformerBlocks+singleTransformerBlocks cond (main): 2: 1 2 3 4 5; 5: 1 2 3 4 5',
    );
  });
});
