import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { CLI, DATA_DIR, GOLDENS_DIR } from './helpers/paths.js';
import { relativeError } from './helpers/synthetic.js';
import { tinyClip, tinyInception, tinyLpips } from './helpers/tiny-networks.js';
import { tinyMergesFile, tinyVocab } from './helpers/tiny-vocab.js';
import { scratchDir } from '../../../scripts/testing/scratch-dir.js';

/** Runs the built CLI (turbo builds before testing) with no terminal attached. */
function run(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { ...process.env, DITCACHE_METRICS_MODELS: '' } });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

const expected = JSON.parse(readFileSync(join(GOLDENS_DIR, 'expected.json'), 'utf8')) as {
  pairs: { file: string; psnr: number; mse: number; ssim: number }[];
};
const REF = join(GOLDENS_DIR, 'ref');
const TEST = join(GOLDENS_DIR, 'test');

function copyDir(from: string, to: string, names?: string[]): void {
  mkdirSync(to, { recursive: true });
  for (const name of names ?? readdirSync(from)) copyFileSync(join(from, name), join(to, name));
}

beforeAll(() => {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: build the package first (npm run build)`);
});

describe('ditcache-metrics on directories', () => {
  it('prints scikit-image-equal PSNR, SSIM, MSE per image as JSON', () => {
    const { code, stdout } = run('psnr', 'ssim', 'mse', 'mae', '-i1', REF, '-i2', TEST, '--json');
    expect(code).toBe(0);
    const json = JSON.parse(stdout);
    expect(Object.keys(json)).toEqual(['psnr', 'ssim', 'mse', 'mae']);
    expect(json.psnr.count).toBe(expected.pairs.length);
    for (const pair of expected.pairs) {
      expect(relativeError(json.psnr.perImage[pair.file], pair.psnr)).toBeLessThan(1e-6);
      expect(relativeError(json.ssim.perImage[pair.file], pair.ssim)).toBeLessThan(1e-6);
      expect(relativeError(json.mse.perImage[pair.file], pair.mse)).toBeLessThan(1e-6);
    }
    const meanPsnr = expected.pairs.reduce((s, p) => s + p.psnr, 0) / expected.pairs.length;
    expect(relativeError(json.psnr.mean, meanPsnr)).toBeLessThan(1e-12);
  });

  it('reports identical pairs as null PSNR, left out of the mean and counted', () => {
    const dir = scratchDir('metrics-cli-');
    copyDir(TEST, join(dir, 'same'), ['img_00.png', 'img_01.png']);
    copyDir(REF, join(dir, 'same'), ['img_02.png']);
    copyDir(REF, join(dir, 'ref'), ['img_00.png', 'img_01.png', 'img_02.png']);
    const { code, stdout } = run('psnr', '-i1', join(dir, 'ref'), '-i2', join(dir, 'same'), '--json');
    expect(code).toBe(0);
    const psnr = JSON.parse(stdout).psnr;
    expect(psnr.perImage['img_02.png']).toBeNull();
    expect(psnr.infiniteCount).toBe(1);
    expect(psnr.count).toBe(2);
    expect(relativeError(psnr.mean, (expected.pairs[0].psnr + expected.pairs[1].psnr) / 2)).toBeLessThan(1e-12);
    const text = run('psnr', '-i1', join(dir, 'ref'), '-i2', join(dir, 'same'));
    expect(text.stdout).toMatch(/psnr: \d+\.\d{4} dB \(mean of 2\); 1 identical pair at Infinity, left out of the mean/);
  });

  it('compares a reference with every sibling directory, one table row each', () => {
    const dir = scratchDir('metrics-grid-');
    copyDir(REF, join(dir, 'baseline'));
    copyDir(TEST, join(dir, 'F1B0_R0.08'));
    copyDir(REF, join(dir, 'F8B0_R0.02'));
    const table = run('psnr', 'ssim', '--ref-dir', join(dir, 'baseline'), '--table');
    expect(table.code).toBe(0);
    const lines = table.stdout.trim().split('\n');
    expect(lines[0]).toBe('| compared | psnr (dB) | ssim | images |');
    expect(lines[2]).toMatch(/^\| F1B0_R0\.08 \| 34\.7719 \| 0\.687307 \| 6 \|$/);
    expect(lines[3]).toBe('| F8B0_R0.02 | inf | 1.000000 | 6 |');
    const json = JSON.parse(run('ssim', '-r', join(dir, 'baseline'), '--json').stdout);
    expect(Object.keys(json.results)).toEqual(['F1B0_R0.08', 'F8B0_R0.02']);
    expect(json.results['F8B0_R0.02'].ssim.mean).toBe(1);
  });

  it('single files and the Gaussian window', () => {
    const { code, stdout } = run('ssim', '-i1', join(REF, 'img_03.png'), '-i2', join(TEST, 'img_03.png'), '--ssim-window', 'gaussian', '--json');
    expect(code).toBe(0);
    const reference = JSON.parse(readFileSync(join(DATA_DIR, 'reference-values.json'), 'utf8'));
    expect(relativeError(JSON.parse(stdout).ssim.perImage['img_03.png'], reference.goldens['img_03.png'].ssim_gaussian)).toBeLessThan(1e-6);
  });
});

describe('ditcache-metrics errors: one line naming the files, exit code 1', () => {
  const dir = scratchDir('metrics-errors-');

  function expectError(args: string[], pattern: RegExp): void {
    const { code, stdout, stderr } = run(...args);
    expect(code).toBe(1);
    expect(stdout).toBe('');
    expect(stderr.trim().split('\n')).toHaveLength(1);
    expect(stderr).toMatch(pattern);
  }

  it('missing partner files', () => {
    copyDir(TEST, join(dir, 'partial'), ['img_00.png', 'img_01.png']);
    expectError(
      ['psnr', '-i1', REF, '-i2', join(dir, 'partial')],
      /missing partner files: .*ref\/img_02\.png, .*ref\/img_05\.png have no partner in .*partial/,
    );
  });

  it('size mismatch', async () => {
    mkdirSync(join(dir, 'small'));
    for (const name of readdirSync(REF)) {
      await sharp({ create: { width: 10, height: 10, channels: 3, background: '#808080' } })
        .png()
        .toFile(join(dir, 'small', name));
    }
    expectError(['ssim', '-i1', REF, '-i2', join(dir, 'small')], /size mismatch: .*ref\/(img_\d\d\.png) is \d+x\d+, .*small\/\1 is 10x10/);
  });

  it('unsupported and unreadable files, empty directories, unknown metrics', () => {
    writeFileSync(join(dir, 'a.gif'), 'GIF89a');
    writeFileSync(join(dir, 'b.png'), 'not a png');
    mkdirSync(join(dir, 'empty'));
    writeFileSync(join(dir, 'empty', 'notes.txt'), 'no images here');
    expectError(['psnr', '-i1', join(dir, 'a.gif'), '-i2', join(dir, 'a.gif')], /unsupported image format "\.gif": .*a\.gif/);
    expectError(['psnr', '-i1', join(dir, 'b.png'), '-i2', join(REF, 'img_00.png')], /unreadable or unsupported image .*b\.png/);
    expectError(['psnr', '-i1', join(dir, 'empty'), '-i2', REF], /no image files in directory .*empty/);
    expectError(['psnr', '-i1', join(dir, 'nowhere'), '-i2', REF], /no such file or directory: .*nowhere/);
    expectError(['psnrr', '-i1', REF, '-i2', TEST], /unknown metric "psnrr"/);
    expectError(['psnr', '-i1', REF, '-i2', join(REF, 'img_00.png')], /must both be files or both be directories/);
    expectError(['lpips', '-i1', REF, '-i2', TEST, '--models', join(dir, 'no-models')], /LPIPS model not found: .*lpips-alex\.onnx/);
  });
});

describe('ditcache-metrics with learned metrics (tiny networks in --models)', () => {
  const models = scratchDir('metrics-models-');
  const vocab = tinyVocab();

  beforeAll(() => {
    writeFileSync(join(models, 'lpips-alex.onnx'), tinyLpips().onnx);
    writeFileSync(join(models, 'fid-inception-v3.onnx'), tinyInception().onnx);
    const clip = tinyClip(Object.keys(vocab).length, 16);
    writeFileSync(join(models, 'clip-image.onnx'), clip.image);
    writeFileSync(join(models, 'clip-text.onnx'), clip.text);
    writeFileSync(join(models, 'clip-config.json'), JSON.stringify({ imageSize: 16, contextLength: 12 }));
    mkdirSync(join(models, 'clip-tokenizer'));
    writeFileSync(join(models, 'clip-tokenizer', 'vocab.json'), JSON.stringify(vocab));
    writeFileSync(join(models, 'clip-tokenizer', 'merges.txt'), tinyMergesFile());
    writeFileSync(join(models, 'prompts.txt'), ['a cat', 'a dog', 'red', 'cat dog', 'a red dog', 'dog'].join('\n'));
  });

  it('"all" runs every metric whose files are present, in one JSON object', () => {
    const { code, stdout, stderr } = run(
      'all',
      '-i1',
      REF,
      '-i2',
      TEST,
      '--models',
      models,
      '--prompts',
      join(models, 'prompts.txt'),
      '--runtime',
      'web',
      '--json',
    );
    expect(stderr).toBe('');
    expect(code).toBe(0);
    const json = JSON.parse(stdout);
    expect(Object.keys(json)).toEqual(['psnr', 'ssim', 'mse', 'mae', 'lpips', 'fid', 'clip_score']);
    expect(json.lpips.count).toBe(6);
    expect(json.lpips.perImage['img_05.png']).toBeLessThan(1e-6);
    expect(json.fid.count).toBe(6);
    expect(json.fid.referenceCount).toBe(6);
    expect(json.fid.value).toBeGreaterThan(0);
    expect(json.clip_score.count).toBe(6);
  });

  it('"all" without model files says what it leaves out', () => {
    const { code, stdout, stderr } = run('all', '-i1', REF, '-i2', TEST, '--models', join(models, 'none'), '--json');
    expect(code).toBe(0);
    expect(Object.keys(JSON.parse(stdout))).toEqual(['psnr', 'ssim', 'mse', 'mae']);
    expect(stderr).toMatch(/leaving out lpips .*; fid .*; clip_score/);
  });

  it('clip_score needs prompts that match the images', () => {
    writeFileSync(join(models, 'short.txt'), 'one\ntwo\n');
    const { code, stderr } = run('clip_score', '-i2', TEST, '--models', models, '--prompts', join(models, 'short.txt'), '--runtime', 'web');
    expect(code).toBe(1);
    expect(stderr).toMatch(/short\.txt has 2 prompts for 6 images/);
  });
});
