// `ditcache encode-prompt` with several prompts, as users make a bench / tune prompts file: one
// batch whose rows equal the prompts' single encodings (FLUX.1's T5 bit for bit; Qwen-Image
// padded to the longest, masked; HiDream's Llama on its second axis), the texts and settings as
// metadata, the file read by bench's reader and run by `bench`, and the usage errors.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it, vi } from 'vitest';

import { loadSafetensors, openSafetensors, type Tensor } from '@ditcache/cuda-runtime';

import { promptInputs, readBenchPrompts } from '../src/bench/prompts.js';
import { familyForPipeline, loadFamilies } from '../src/plugins.js';
import { runCli } from '../src/program.js';
import { fluxTextFolder, goldens, textData } from './flux-text-folder.js';

const root = new URL('../../../', import.meta.url).pathname;
const bin = join(root, 'packages/cli/dist/cli.js');
const dir = mkdtempSync(join(tmpdir(), 'ditcache-cli-prompts-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const flux = fluxTextFolder(join(dir, 'flux'));

/** qwen-tiny with the Qwen2 tokenizer and tiny Qwen2.5-VL encoder of the adapter's prompt references. */
const qwenGoldens = join(root, 'packages/adapter-qwen-image/test/goldens');
const qwen = join(dir, 'qwen');
mkdirSync(qwen);
for (const entry of ['model_index.json', 'transformer', 'vae', 'scheduler']) symlinkSync(join(qwenGoldens, 'qwen-tiny', entry), join(qwen, entry));
for (const entry of ['tokenizer', 'text_encoder']) symlinkSync(join(qwenGoldens, 'qwen-prompt', entry), join(qwen, entry));

function ditcache(...args: string[]) {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf-8', timeout: 120_000 });
  return { status: r.status, stderr: r.stderr };
}

/** Runs encode-prompt into a new file and returns it. */
function encode(name: string, ...args: string[]): string {
  const out = join(dir, `${name}.safetensors`);
  const r = ditcache('encode-prompt', ...args, '--out', out);
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  return out;
}

const bytes = (t: Tensor) => Buffer.from(t.contiguous().toBytes());
const values = (t: Tensor) => [...t.toFloat32Array()];
/** max |a - b| / max |b|: how far a batch row is from the single encoding `b`. */
function relativeDifference(a: Tensor, b: Tensor): number {
  const [x, y] = [values(a), values(b)];
  expect(x).toHaveLength(y.length);
  return Math.max(...x.map((v, i) => Math.abs(v - y[i]))) / Math.max(...y.map(Math.abs));
}

/** Each prompt encoded alone by the folder's family, as `encode-prompt --prompt P` encodes it (in-process: no CLI start per prompt). */
async function singleEncodings(folder: string, prompts: string[], settings: { maxSequenceLength?: number }): Promise<Record<string, Tensor>[]> {
  const family = familyForPipeline(await loadFamilies([]), folder);
  return prompts.map((p) => family.encodePrompt!(folder, [p], settings).tensors);
}

const CAT = 'a photo of a cat';
const MAT = 'A PHOTO of a Cat, sitting on the MAT!!!';
const T5 = ['--max-sequence-length', '24'];

describe('ditcache encode-prompt with several prompts', () => {
  const batch = encode('flux-two', '--model', flux, '--prompt', CAT, '--prompt', MAT, '--negative-prompt', 'blurry', ...T5);

  it("stacks a T5 family's prompts as rows bit-identical to their single encodings (CLIP's pooled within rounding), a negative for each, and labels them", () => {
    const singles = [CAT, MAT].map((p, i) => loadSafetensors(encode(`flux-${i}`, '--model', flux, '--prompt', p, '--negative-prompt', 'blurry', ...T5)));
    const got = loadSafetensors(batch);
    expect(Object.keys(got).sort()).toEqual(Object.keys(singles[0]).sort());
    expect(Object.keys(got)).toHaveLength(10);
    for (const [name, t] of Object.entries(got)) {
      // text_ids, which the batch shares, is given a row per prompt: (tokens, 3) becomes (2, tokens, 3).
      const single = singles[0][name];
      expect(t.shape, name).toEqual(single.rank === t.rank ? [2, ...single.shape.slice(1)] : [2, ...single.shape]);
      singles.forEach((s, i) => {
        const row = t.narrow(0, i, 1);
        // 24 T5 tokens a prompt start every prompt on the CPU matrix kernels' 12-row tiles, so its
        // rows are computed as alone; CLIP's 77 do not, and its pooled output may round its last bits.
        if (name.endsWith('pooled_prompt_embeds')) expect(relativeDifference(row, s[name]), `${name} row ${i}`).toBeLessThan(1e-6);
        else expect(bytes(row).equals(bytes(s[name])), `${name} row ${i}`).toBe(true);
      });
    }
    expect(values(got.negative_prompt_embeds.narrow(0, 0, 1))).toEqual(values(got.negative_prompt_embeds.narrow(0, 1, 1)));
    using file = openSafetensors(batch);
    expect(file.metadata).toEqual({ prompts: JSON.stringify([CAT, MAT]) });
    // One --prompt writes the tensors alone, as before.
    using one = openSafetensors(join(dir, 'flux-0.safetensors'));
    expect(one.metadata).toEqual({});
  });

  it('says which prompt a truncation note is about', () => {
    // diffusers' FluxPipeline warnings for this prompt at 16 T5 tokens (text-encoders' tools/capture_pipeline_warnings.py).
    const diffusers = (JSON.parse(readFileSync(join(textData, 'pipeline-warnings.json'), 'utf-8')) as { flux: { prompt: string; warnings: string[] } }).flux;
    const out = join(dir, 'flux-long.safetensors');
    const r = ditcache(
      'encode-prompt',
      '--model',
      flux,
      '--prompt',
      CAT,
      '--prompt',
      diffusers.prompt,
      '--negative-prompt',
      diffusers.prompt,
      '--max-sequence-length',
      '16',
      '--out',
      out,
    );
    expect(r.status).toBe(0);
    expect(diffusers.warnings.length).toBeGreaterThan(0);
    const lines = (prefix: string) => diffusers.warnings.map((w) => `ditcache: ${prefix}${w}\n`).join('');
    expect(r.stderr).toBe(lines('prompt 2 of 2: ') + lines('negative prompt: '));
  });

  it('reads the prompts from --prompts-file (blank lines ignored) and writes the recommended settings bench reads', () => {
    const list = join(dir, 'prompts.txt');
    writeFileSync(list, `${CAT}\n\n   \n${MAT}\r\n`);
    const fromFile = encode('flux-file', '--model', flux, '--prompts-file', list, '--negative-prompt', 'blurry', ...T5);
    expect(readFileSync(fromFile).equals(readFileSync(batch))).toBe(true);
    const withSettings = encode(
      'flux-settings',
      '--model',
      flux,
      '--prompt',
      CAT,
      ...T5,
      '--height',
      '32',
      '--width',
      '48',
      '--steps',
      '2',
      '--guidance',
      '3.5',
      '--frames',
      '9',
      '--fps',
      '16',
    );
    using file = openSafetensors(withSettings);
    expect(file.metadata).toEqual({
      prompts: JSON.stringify([CAT]),
      height: '32',
      width: '48',
      num_inference_steps: '2',
      guidance_scale: '3.5',
      num_frames: '9',
      fps: '16',
    });
  });

  it("pads Qwen-Image's prompts to the longest, each row its single encoding on its real tokens, the mask marking the padding", async () => {
    const long = 'a red cube beside a tall lighthouse on a rocky shore at dusk';
    const got = loadSafetensors(encode('qwen-two', '--model', qwen, '--prompt', CAT, '--prompt', long));
    const singles = await singleEncodings(qwen, [CAT, long], {});
    const lengths = singles.map((s) => s.prompt_embeds.shape[1]);
    expect(lengths[0]).toBeLessThan(lengths[1]);
    expect(got.prompt_embeds.shape).toEqual([2, lengths[1], singles[0].prompt_embeds.shape[2]]);
    const mask = got.prompt_embeds_mask;
    expect(values(mask)).toEqual([...lengths.map((n) => [...Array(n).fill(1), ...Array(lengths[1] - n).fill(0)])].flat());
    singles.forEach((s, i) => {
      const row = got.prompt_embeds.narrow(0, i, 1);
      // The longer batch sums the masked keys' zeros too, so a row may differ in the last bits.
      expect(relativeDifference(row.narrow(1, 0, lengths[i]), s.prompt_embeds), `row ${i}`).toBeLessThan(1e-5);
      expect(values(row.narrow(1, lengths[i], lengths[1] - lengths[i])).every((v) => v === 0)).toBe(true);
    });
  });

  it("puts HiDream's prompts on prompt_embeds_llama3's second axis, where bench's reader finds each prompt's single encoding", async () => {
    const hidreamGoldens = join(root, 'packages/adapter-hidream/test/goldens');
    const hidream = join(dir, 'hidream');
    mkdirSync(hidream);
    for (const entry of ['model_index.json', 'transformer', 'vae', 'scheduler']) symlinkSync(join(goldens, 'hidream-tiny', entry), join(hidream, entry));
    for (const n of ['', '_2', '_3', '_4']) {
      for (const entry of [`tokenizer${n}`, `text_encoder${n}`]) symlinkSync(join(hidreamGoldens, 'hidream-prompt', entry), join(hidream, entry));
    }
    const file = encode('hidream-two', '--model', hidream, '--prompt', CAT, '--prompt', MAT, '--max-sequence-length', '32');
    const singles = await singleEncodings(hidream, [CAT, MAT], { maxSequenceLength: 32 });
    const llama = singles[0].prompt_embeds_llama3.shape;
    expect(loadSafetensors(file).prompt_embeds_llama3.shape).toEqual([llama[0], 2, ...llama.slice(2)]);
    using prompts = readBenchPrompts(file, familyForPipeline(await loadFamilies([]), hidream));
    expect(prompts.labels).toEqual([CAT, MAT]);
    singles.forEach((single, i) => {
      const rows = promptInputs(prompts, i);
      expect(Object.keys(rows).sort()).toEqual(Object.keys(single).sort());
      for (const [name, t] of Object.entries(rows)) {
        // The CPU kernels may sum a batch in another order than one prompt: the last bits of rounding.
        expect(relativeDifference(t, single[name]), `${name} of prompt ${i}`).toBeLessThan(1e-6);
        t.dispose();
      }
    });
  });

  it('makes a prompts file bench runs with no flags beyond the configs, labelled by the prompts', () => {
    const prompts = encode(
      'flux-bench',
      '--model',
      flux,
      '--prompt',
      CAT,
      '--prompt',
      MAT,
      '--negative-prompt',
      'blurry',
      ...T5,
      '--height',
      '32',
      '--width',
      '32',
      '--steps',
      '2',
    );
    const configs = join(dir, 'configs.json');
    writeFileSync(configs, JSON.stringify({ off: { Fn_compute_blocks: 1, residual_diff_threshold: 0 } }));
    const out = join(dir, 'bench');
    const r = ditcache('bench', '--model', flux, '--prompts', prompts, '--configs', configs, '--out', out);
    expect(r.status, r.stderr).toBe(0);
    const results = JSON.parse(readFileSync(join(out, 'results.json'), 'utf-8')) as { prompts: string[]; settings: object; results: { name: string }[] };
    expect(results.prompts).toEqual([CAT, MAT]);
    expect(results.settings).toMatchObject({ height: 32, width: 32, steps: 2 });
    expect(results.results.map((c) => c.name)).toEqual(['uncached', 'off']);
    expect(readdirSync(join(out, 'off')).filter((f) => f.endsWith('.png'))).toEqual(['prompt-0.png', 'prompt-1.png']);
  });

  it('refuses --prompt with --prompts-file, no prompts, and settings bench could not read, with one clear line', async () => {
    const blank = join(dir, 'blank.txt');
    writeFileSync(blank, '\n  \n\n');
    const out = join(dir, 'refused.safetensors');
    const cases: [string[], RegExp][] = [
      [['--prompt', CAT, '--prompts-file', blank], /--prompt and --prompts-file exclude each other/],
      [['--prompts-file', blank], /--prompts-file: .*blank\.txt holds no prompt \(one per line; blank lines are ignored\)/],
      [['--prompts-file', join(dir, 'missing.txt')], /--prompts-file: no such file .*missing\.txt/],
      [[], /--prompt or --prompts-file is required/],
      [['--prompt', CAT, '--guidance', '0'], /--guidance must be a number above 0/],
      [['--prompt', CAT, '--steps', '2.5'], /--steps must be a positive integer/],
    ];
    // In-process (runCli, as the bin runs it): these fail before any encoder loads.
    for (const [args, message] of cases) {
      let stderr = '';
      const spy = vi.spyOn(process.stderr, 'write').mockImplementation((text) => {
        stderr += String(text);
        return true;
      });
      const status = await runCli(['node', 'ditcache', 'encode-prompt', '--model', flux, ...args, '--out', out]).finally(() => spy.mockRestore());
      expect(stderr, args.join(' ')).toMatch(message);
      expect(status, args.join(' ')).toBe(2);
    }
  });
});
