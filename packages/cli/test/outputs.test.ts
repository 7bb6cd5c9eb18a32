// What `ditcache generate` writes: output paths checked before any work, atomic writes, refusing a run that writes nothing, one file per prompt of a batch.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';

const root = new URL('../../../', import.meta.url).pathname;
const bin = join(root, 'packages/cli/dist/cli.js');
const flux = join(root, 'testdata/goldens/flux-tiny');
const wan = join(root, 'testdata/goldens/wan-tiny');
const shapes = join(root, 'models/flux-shapes');
const dir = mkdtempSync(join(tmpdir(), 'ditcache-outputs-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function ditcache(...args: string[]) {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf-8', timeout: 120_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const fluxRun = ['generate', '--model', flux, '--inputs', join(flux, 'pipeline.safetensors'), '--height', '32', '--width', '32', '--steps', '2'];
const wanRun = ['generate', '--model', wan, '--inputs', join(wan, 'pipeline.safetensors'), '--height', '32', '--width', '48', '--frames', '9', '--steps', '2'];

/** Entries a run left in `folder` under temporary names. */
const leftovers = (folder: string) => readdirSync(folder).filter((n) => n.includes('.tmp'));

describe('output paths are checked before any work', () => {
  it('refuses with a usage error naming the flag and the path', () => {
    const folder = join(dir, 'a-folder.png');
    mkdirSync(folder);
    const file = join(dir, 'a-file');
    writeFileSync(file, 'x');
    const cases: [string[], RegExp][] = [
      [['--output', '/proc/x.png'], /^ditcache: --output \/proc\/x\.png: cannot create files in \/proc \(\w+\)$/],
      [['--output', folder], /^ditcache: --output .*a-folder\.png is a folder; give a file name$/],
      [['--output', join(file, 'x.png')], /^ditcache: --output .*a-file\/x\.png: .*a-file is not a folder$/],
      [
        ['--save-latents', join(dir, 'same'), '--stats', join(dir, 'same')],
        /^ditcache: --save-latents and --stats both name .*same; give each output its own file$/,
      ],
      [['--stats', '/proc/stats.json'], /^ditcache: --stats \/proc\/stats\.json: cannot create files in \/proc/],
    ];
    for (const [args, message] of cases) {
      const r = ditcache(...fluxRun, ...args);
      expect(r.status, r.stderr).toBe(2);
      expect(r.stderr.trim()).toMatch(message);
      expect(r.stderr).not.toMatch(/generated in/);
    }
    expect(readdirSync(dir).sort()).toEqual(['a-file', 'a-folder.png']);
    rmSync(folder, { recursive: true });
    rmSync(file);
  });

  it('creates the missing folders of an output path', () => {
    const out = join(dir, 'new', 'deeper', 'x.png');
    const r = ditcache(...fluxRun, '--output', out);
    expect(r.status, r.stderr).toBe(0);
    expect(readFileSync(out).subarray(1, 4).toString()).toBe('PNG');
    expect(leftovers(join(dir, 'new', 'deeper'))).toEqual([]);
    rmSync(join(dir, 'new'), { recursive: true });
  });
});

describe('writes are atomic', () => {
  it('a video and its frames appear under their names only when complete; a failed write leaves nothing', () => {
    const folder = join(dir, 'videos');
    mkdirSync(folder);
    const ok = ditcache(...wanRun, '--output', join(folder, 'w.webp'));
    expect(ok.status, ok.stderr).toBe(0);
    expect(readdirSync(folder).sort()).toEqual(['w.webp', 'w_frames']);
    expect(readdirSync(join(folder, 'w_frames'))).toHaveLength(9);
    // The frames' folder name is taken by a file: the write fails, and neither the video nor any temporary file is left.
    writeFileSync(join(folder, 'v_frames'), 'in the way');
    const failed = ditcache(...wanRun, '--output', join(folder, 'v.webp'));
    expect(failed.status, failed.stderr).toBe(1);
    expect(readdirSync(folder).sort()).toEqual(['v_frames', 'w.webp', 'w_frames']);
    expect(readFileSync(join(folder, 'v_frames'), 'utf-8')).toBe('in the way');
  });
});

describe('a run that writes nothing', () => {
  it('is refused before loading, naming the flags that would write something', () => {
    const r = ditcache(...fluxRun);
    expect(r.status, r.stderr).toBe(2);
    expect(r.stderr.trim()).toBe(
      'ditcache: nothing to write: give --output FILE (the image or video), --save-latents FILE (the final latents), --stats FILE (the cache statistics) or --magcache-calibration FILE (MagCache ratios)',
    );
  });
});

describe('a batch of prompts', () => {
  // demo-prompts.safetensors: four prompts, prompt_embeds (4, 16, 64).
  const batchRun = [
    'generate',
    '--model',
    shapes,
    '--inputs',
    join(shapes, 'demo-prompts.safetensors'),
    '--height',
    '32',
    '--width',
    '32',
    '--steps',
    '8',
    '--seed',
    '0',
  ];

  it('writes one numbered file per prompt and names them on stderr', async () => {
    const folder = join(dir, 'batch');
    mkdirSync(folder);
    const r = ditcache(...batchRun, '--output', join(folder, 'shape.png'));
    expect(r.status, r.stderr).toBe(0);
    const names = ['shape-0.png', 'shape-1.png', 'shape-2.png', 'shape-3.png'];
    expect(readdirSync(folder).sort()).toEqual(names);
    expect(r.stderr).toContain(`--inputs holds 4 prompts; --output writes ${names.map((n) => join(folder, n)).join(', ')}`);
    const pixels = await Promise.all(
      names.map(async (n) => {
        const { data, info } = await sharp(join(folder, n)).raw().toBuffer({ resolveWithObject: true });
        expect([info.width, info.height]).toEqual([32, 32]);
        return data;
      }),
    );
    // Four prompts, four different pictures.
    for (let i = 0; i < 4; ++i) for (let j = i + 1; j < 4; ++j) expect(pixels[i].equals(pixels[j]), `${i} vs ${j}`).toBe(false);
  });

  it('checks every numbered file against --force before any work', () => {
    const folder = join(dir, 'batch-kept');
    mkdirSync(folder);
    writeFileSync(join(folder, 'shape-2.png'), 'precious');
    const r = ditcache(...batchRun, '--output', join(folder, 'shape.png'));
    expect(r.status, r.stderr).toBe(2);
    expect(r.stderr.trim()).toMatch(/^ditcache: --output .*shape-2\.png exists; pass --force to overwrite it$/);
    expect(readdirSync(folder)).toEqual(['shape-2.png']);
    expect(readFileSync(join(folder, 'shape-2.png'), 'utf-8')).toBe('precious');
  });
});
