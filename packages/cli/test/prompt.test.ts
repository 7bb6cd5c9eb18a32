// `generate --prompt` and `encode-prompt` on a FLUX folder with the tiny text encoders of
// @ditcache/text-encoders' reference data, as users run the built bin.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { loadSafetensors, saveSafetensors, tensor } from '@ditcache/cuda-runtime';

import { fluxTextFolder, goldens, textData } from './flux-text-folder.js';

const root = new URL('../../../', import.meta.url).pathname;
const bin = join(root, 'packages/cli/dist/cli.js');
const dir = mkdtempSync(join(tmpdir(), 'ditcache-cli-prompt-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const flux = fluxTextFolder(join(dir, 'flux'));
const golden = join(goldens, 'flux-tiny-guidance');

function ditcache(...args: string[]) {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf-8', timeout: 120_000 });
  return { status: r.status, stderr: r.stderr };
}

const PROMPT = 'a photo of a cat';
const size = ['--height', '32', '--width', '32', '--steps', '2'];
const tokens = (JSON.parse(readFileSync(join(textData, 'tokens.json'), 'utf-8')) as { prompts: { text: string; clip_ids_77: number[] }[] }).prompts;

describe('ditcache encode-prompt', () => {
  it('writes the embeddings, text ids and token ids of a prompt', () => {
    const out = join(dir, 'cat.safetensors');
    const r = ditcache('encode-prompt', '--model', flux, '--prompt', PROMPT, '--max-sequence-length', '24', '--out', out);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const t = loadSafetensors(out);
    expect(Object.keys(t).sort()).toEqual(['clip_input_ids', 'pooled_prompt_embeds', 'prompt_embeds', 't5_input_ids', 'text_ids']);
    expect(t.prompt_embeds.shape).toEqual([1, 24, 32]);
    expect(t.t5_input_ids.shape).toEqual([1, 24]);
    expect([...t.clip_input_ids.toFloat32Array()]).toEqual(tokens.find((p) => p.text === PROMPT)!.clip_ids_77);
    const reference = loadSafetensors(join(textData, 'outputs.safetensors'));
    const pooled = t.pooled_prompt_embeds.toFloat32Array();
    const expected = reference['clip.cat.pooled'].toFloat32Array();
    expect(Math.max(...pooled.map((v, i) => Math.abs(v - expected[i])))).toBeLessThan(1e-5);
    expect(ditcache('encode-prompt', '--model', flux, '--prompt', PROMPT, '--out', out).stderr).toMatch(/exists; pass --force/);
  });

  it('writes a negative prompt beside the prompt as negative_<name>, encoded alike (empty strings included)', () => {
    const both = join(dir, 'both.safetensors');
    const r = ditcache('encode-prompt', '--model', flux, '--prompt', PROMPT, '--negative-prompt', '', '--max-sequence-length', '24', '--out', both);
    expect([r.status, r.stderr]).toEqual([0, '']);
    const t = loadSafetensors(both);
    expect(
      Object.keys(t)
        .filter((n) => n.startsWith('negative_'))
        .sort(),
    ).toEqual(['clip_input_ids', 'pooled_prompt_embeds', 'prompt_embeds', 't5_input_ids', 'text_ids'].map((n) => `negative_${n}`));
    const empty = join(dir, 'empty.safetensors');
    expect(ditcache('encode-prompt', '--model', flux, '--prompt', '', '--max-sequence-length', '24', '--out', empty).status).toBe(0);
    const alone = loadSafetensors(empty);
    expect([...t.negative_prompt_embeds.toFloat32Array()]).toEqual([...alone.prompt_embeds.toFloat32Array()]);
    expect([...t.negative_pooled_prompt_embeds.toFloat32Array()]).toEqual([...alone.pooled_prompt_embeds.toFloat32Array()]);
  });

  it("takes the token count from the folder's ditcache.json where --max-sequence-length is not given, as generate does", () => {
    const withDefaults = join(dir, 'flux-with-defaults');
    mkdirSync(withDefaults);
    for (const entry of readdirSync(flux)) symlinkSync(join(flux, entry), join(withDefaults, entry));
    writeFileSync(join(withDefaults, 'ditcache.json'), JSON.stringify({ max_sequence_length: 20 }));
    const out = join(dir, 'folder-length.safetensors');
    expect(ditcache('encode-prompt', '--model', withDefaults, '--prompt', PROMPT, '--out', out).status).toBe(0);
    expect(loadSafetensors(out).prompt_embeds.shape).toEqual([1, 20, 32]);
    const flagged = join(dir, 'flag-length.safetensors');
    expect(ditcache('encode-prompt', '--model', withDefaults, '--prompt', PROMPT, '--max-sequence-length', '24', '--out', flagged).status).toBe(0);
    expect(loadSafetensors(flagged).prompt_embeds.shape).toEqual([1, 24, 32]);
  });

  it('says when the prompt was truncated, and refuses folders without text encoders', () => {
    const long = tokens.at(-1)!.text;
    const r = ditcache('encode-prompt', '--model', flux, '--prompt', long, '--max-sequence-length', '16', '--out', join(dir, 'long.safetensors'));
    expect(r.status).toBe(0);
    // diffusers' FluxPipeline warnings for this prompt, word for word (text-encoders' tools/capture_pipeline_warnings.py).
    const diffusers = (JSON.parse(readFileSync(join(textData, 'pipeline-warnings.json'), 'utf-8')) as { flux: { prompt: string; warnings: string[] } }).flux;
    expect(diffusers.prompt).toBe(long);
    expect(r.stderr).toBe(diffusers.warnings.map((w) => `ditcache: ${w}\n`).join(''));
    expect(ditcache('encode-prompt', '--model', golden, '--prompt', 'x', '--out', join(dir, 'x.safetensors')).stderr).toMatch(
      /has no tokenizer\/, tokenizer_2\/, text_encoder\/, text_encoder_2\/ \(text encoders\)/,
    );
    expect(ditcache('encode-prompt', '--model', flux, '--prompt', 'x', '--max-sequence-length', '513', '--out', join(dir, 'x.safetensors')).stderr).toMatch(
      /--max-sequence-length must be at most 512 \(FLUX.1's T5 limit\), got 513/,
    );
    expect(ditcache('encode-prompt', '--model', join(goldens, 'wan-tiny'), '--prompt', 'x', '--out', join(dir, 'x.safetensors')).stderr).toMatch(
      /--prompt: .*wan-tiny has no tokenizer\/, text_encoder\/ \(the UMT5 text encoder\)/,
    );
  });

  it("encodes with a Wan folder's UMT5 what diffusers' WanPipeline.encode_prompt gives, with the ids and mask", () => {
    const data = join(root, 'packages/adapter-wan/test/goldens/wan-prompt');
    const wan = join(dir, 'wan');
    mkdirSync(wan);
    for (const entry of ['transformer', 'vae', 'scheduler']) symlinkSync(join(goldens, 'wan-tiny', entry), join(wan, entry));
    for (const entry of ['tokenizer', 'text_encoder']) symlinkSync(join(data, entry), join(wan, entry));
    const index = JSON.parse(readFileSync(join(goldens, 'wan-tiny/model_index.json'), 'utf-8')) as Record<string, unknown>;
    writeFileSync(
      join(wan, 'model_index.json'),
      JSON.stringify({ ...index, tokenizer: ['transformers', 'T5TokenizerFast'], text_encoder: ['transformers', 'UMT5EncoderModel'] }),
    );
    const meta = JSON.parse(readFileSync(join(data, 'meta.json'), 'utf-8')) as { prompts: { prompt: string }[] };
    const out = join(dir, 'wan-prompt.safetensors');
    const r = ditcache('encode-prompt', '--model', wan, '--prompt', meta.prompts[1].prompt, '--max-sequence-length', '16', '--out', out);
    expect(r.status, r.stderr).toBe(0);
    const got = loadSafetensors(out);
    expect(Object.keys(got).sort()).toEqual(['attention_mask', 'input_ids', 'prompt_embeds']);
    const ref = loadSafetensors(join(data, 'prompts.safetensors'));
    expect([...got.input_ids.toFloat32Array()]).toEqual([...ref.input_ids_16.slice(0, 1, 2).toFloat32Array()]);
    const [a, b] = [got.prompt_embeds.toFloat32Array(), ref.prompt_embeds_16.slice(0, 1, 2).toFloat32Array()];
    expect(Math.max(...a.map((v, i) => Math.abs(v - b[i])))).toBeLessThan(1e-5);
  });
});

describe('ditcache generate --prompt', () => {
  it('generates from text as from the embeddings encode-prompt wrote, with --inputs holding only latents_in', () => {
    const noise = join(dir, 'noise.safetensors');
    saveSafetensors(noise, {
      latents_in: tensor(
        Float32Array.from({ length: 64 * 16 }, (_, i) => Math.sin(i)),
        [1, 64, 16],
      ),
    });
    const fromText = join(dir, 'text-latents.safetensors');
    const r = ditcache('generate', '--model', flux, '--prompt', PROMPT, '--max-sequence-length', '24', '--inputs', noise, ...size, '--save-latents', fromText);
    expect(r.stderr).toMatch(/generated in/);
    expect(r.status).toBe(0);

    const embeds = join(dir, 'embeds.safetensors');
    expect(ditcache('encode-prompt', '--model', flux, '--prompt', PROMPT, '--max-sequence-length', '24', '--out', embeds).status).toBe(0);
    const e = loadSafetensors(embeds);
    const inputs = join(dir, 'inputs.safetensors');
    saveSafetensors(inputs, { prompt_embeds: e.prompt_embeds, pooled_prompt_embeds: e.pooled_prompt_embeds, latents_in: loadSafetensors(noise).latents_in });
    const fromEmbeds = join(dir, 'embeds-latents.safetensors');
    expect(ditcache('generate', '--model', flux, '--inputs', inputs, ...size, '--save-latents', fromEmbeds).status).toBe(0);
    expect([...loadSafetensors(fromText).latents_out.toFloat32Array()]).toEqual([...loadSafetensors(fromEmbeds).latents_out.toFloat32Array()]);

    const cfg = ditcache(
      'generate',
      '--model',
      flux,
      '--prompt',
      PROMPT,
      '--negative-prompt',
      'blurry',
      '--true-cfg-scale',
      '3',
      '--max-sequence-length',
      '24',
      '--seed',
      '1',
      ...size,
      '--save-latents',
      join(dir, 'cfg.safetensors'),
    );
    expect(cfg.status, cfg.stderr).toBe(0);
  });

  it('refuses what cannot work with one clear line', () => {
    const cases: [string[], RegExp][] = [
      [
        ['--model', golden, '--prompt', PROMPT],
        /--prompt: .* has no tokenizer\/, tokenizer_2\/, text_encoder\/, text_encoder_2\/ \(text encoders\); give prompt embeddings with --inputs instead/,
      ],
      [
        ['--model', flux, '--prompt', PROMPT, '--inputs', join(goldens, 'flux-tiny-guidance/pipeline.safetensors')],
        /--prompt and the prompt embeddings of --inputs .* exclude each other/,
      ],
      [['--model', flux, '--prompt', PROMPT, '--max-sequence-length', '600'], /--max-sequence-length must be at most 512/],
      [['--model', flux, '--prompt', PROMPT, '--true-cfg-scale', '4'], /--true-cfg-scale needs --negative-prompt/],
      [['--model', flux], /--prompt or --inputs is required/],
      [
        ['--model', join(goldens, 'hidream-tiny'), '--prompt', PROMPT],
        /--prompt: .*hidream-tiny has no tokenizer\/, tokenizer_2\/, tokenizer_3\/, tokenizer_4\/, text_encoder\/, text_encoder_2\/, text_encoder_3\/, text_encoder_4\/ \(text encoders\)/,
      ],
    ];
    for (const [args, message] of cases) {
      const r = ditcache('generate', ...args, ...size);
      expect(r.stderr, args.join(' ')).toMatch(message);
      expect(r.status).toBe(2);
    }
  });
});
