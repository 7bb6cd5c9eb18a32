// Usage errors exit with status 2 and one line, before any model loads, as the README promises; --version.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

const root = new URL('../../../', import.meta.url).pathname;
const bin = join(root, 'packages/cli/dist/cli.js');
const goldens = join(root, 'testdata/goldens');
const flux = join(goldens, 'flux-tiny');
const dir = mkdtempSync(join(tmpdir(), 'ditcache-usage-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function ditcache(...args: string[]) {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf-8', timeout: 120_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** The lines of stderr other than commander's pointer to --help. */
const lines = (stderr: string) =>
  stderr
    .trim()
    .split('\n')
    .filter((l) => l !== '(run with --help for usage)');

describe('usage errors: status 2, one line, before loading', () => {
  const stats = join(dir, 'stats.json');
  const fluxRun = ['generate', '--model', flux, '--inputs', join(flux, 'pipeline.safetensors'), '--height', '32', '--width', '32', '--stats', stats];
  const hd = join(goldens, 'hidream-tiny');
  const w22 = join(goldens, 'wan-tiny/wan22');
  const yaml = join(dir, 'bad.yaml');
  writeFileSync(yaml, 'cache_config:\n  Fn_compute_blocks: 1\n  residual_threshold: 0.2\n');

  const cases: [string, string[], RegExp][] = [
    ['a missing flag', ['generate', '--inputs', join(flux, 'pipeline.safetensors')], /required option '--model <dir>' not specified/],
    ['--steps 0', [...fluxRun, '--steps', '0'], /--steps must be a positive integer/],
    ['a non-numeric seed', [...fluxRun, '--seed', 'abc'], /--seed must be a non-negative integer/],
    ['an empty seed', [...fluxRun, '--seed', ''], /--seed must be a non-negative integer/],
    ['a seed in exponent notation', [...fluxRun, '--seed', '1e3'], /--seed must be a non-negative integer/],
    ['an empty guidance', [...fluxRun, '--guidance', ' '], /--guidance must be a number/],
    [
      'Fn + Bn above the blocks of FLUX',
      [...fluxRun, '--cache', '{"Fn_compute_blocks": 5, "Bn_compute_blocks": 2}'],
      /^ditcache: --cache: Fn_compute_blocks \(5\) \+ Bn_compute_blocks \(2\) exceeds the 6 blocks of transformer\.transformer_blocks\+single_transformer_blocks; this model's cache contexts: transformer\.transformer_blocks\+single_transformer_blocks \(6 blocks\)$/,
    ],
    [
      "Fn + Bn above one of HiDream's two lists",
      ['generate', '--model', hd, '--inputs', join(hd, 'pipeline.safetensors'), '--stats', stats, '--cache', '{"Fn_compute_blocks": 4}'],
      /exceeds the 3 blocks of transformer\.double_stream_blocks; this model's cache contexts: transformer\.double_stream_blocks \(3 blocks\), transformer\.single_stream_blocks \(3 blocks\)/,
    ],
    [
      "a params_modifiers entry above Wan 2.2's second expert",
      [
        'generate',
        '--model',
        w22,
        '--inputs',
        join(w22, 'pipeline.safetensors'),
        '--stats',
        stats,
        '--cache',
        '{"Fn_compute_blocks": 1, "params_modifiers": [{}, {"Bn_compute_blocks": 5}]}',
      ],
      /\(with params_modifiers\[1\]\) exceeds the 4 blocks of transformer_2\.blocks/,
    ],
    [
      'params_modifiers not one per context',
      [...fluxRun, '--cache', '{"params_modifiers": [{}, {}]}'],
      /params_modifiers has 2 entries, but this model has 1 cache contexts/,
    ],
    [
      'an unknown key in JSON text, with the valid keys',
      [...fluxRun, '--cache', '{"Fn_compute_blocks": 1, "treshold": 0.2}'],
      /^ditcache: --cache: Invalid cache config: unknown key "treshold".* Valid keys .*Fn_compute_blocks.*residual_diff_threshold/,
    ],
    [
      'an unknown key in a YAML file, with the valid keys',
      [...fluxRun, '--cache', yaml],
      /^ditcache: --cache: Invalid cache config: unknown key "cache_config\.residual_threshold".* Valid keys .*residual_diff_threshold/,
    ],
  ];
  for (const [what, args, message] of cases) {
    it(what, () => {
      const r = ditcache(...args);
      expect(r.status, r.stderr).toBe(2);
      expect(lines(r.stderr), r.stderr).toHaveLength(1);
      expect(lines(r.stderr)[0]).toMatch(message);
      // Nothing ran: no progress, no output.
      expect(r.stderr).not.toMatch(/step \d+\//);
      expect(() => readFileSync(stats)).toThrow();
    });
  }
});

describe('--version', () => {
  it("prints the CLI package's version and exits 0", () => {
    const { version } = JSON.parse(readFileSync(join(root, 'packages/cli/package.json'), 'utf-8')) as { version: string };
    const r = ditcache('--version');
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toBe(`${version}\n`);
    expect(r.stderr).toBe('');
  });
});
