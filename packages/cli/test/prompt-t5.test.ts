// `generate --prompt --negative-prompt` through the built bin on the T5-only families (Chroma,
// LTX-Video), each folder its tiny golden with the tiny T5 of @ditcache/text-encoders' reference
// data, against diffusers' latents for the same text (the adapters' prompt goldens). It lives here,
// not in the adapters, because the bin is built after the adapters it loads.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { loadSafetensors, relativeL2, saveSafetensors } from '@ditcache/cuda-runtime';

const root = new URL('../../../', import.meta.url).pathname;
const bin = join(root, 'packages/cli/dist/cli.js');
const textData = join(root, 'packages/text-encoders/test/data');
const dir = mkdtempSync(join(tmpdir(), 'ditcache-cli-prompt-t5-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface PromptMeta {
  prompts: string[];
  negative_prompt: string;
  max_sequence_length: number;
  height: number;
  width: number;
  num_frames?: number;
  frame_rate?: number;
  num_inference_steps: number;
  guidance_scale: number;
}

/** A model folder: the model's entries linked from `model`, the text ones from `text`. */
function folder(name: string, model: string, entries: string[], text: Record<string, string>): string {
  const out = join(dir, name);
  mkdirSync(out);
  for (const entry of entries) symlinkSync(join(model, entry), join(out, entry));
  for (const [entry, source] of Object.entries(text)) symlinkSync(source, join(out, entry));
  return out;
}

function generateFromText(name: string, model: string, references: string, frameFlags: (m: PromptMeta) => string[]) {
  const meta = JSON.parse(readFileSync(join(references, 'meta.json'), 'utf-8')) as PromptMeta;
  const ref = loadSafetensors(join(references, 'prompts.safetensors'));
  const inputs = join(dir, `${name}-in.safetensors`);
  const latents = join(dir, `${name}-out.safetensors`);
  saveSafetensors(inputs, { latents_in: ref.latents_in });
  const settings = [
    ...['--max-sequence-length', meta.max_sequence_length, '--height', meta.height, '--width', meta.width].map(String),
    ...frameFlags(meta),
    ...['--steps', meta.num_inference_steps, '--guidance', meta.guidance_scale].map(String),
  ];
  const args = ['generate', '--model', model, '--inputs', inputs, '--prompt', meta.prompts[0], '--negative-prompt', meta.negative_prompt];
  const r = spawnSync(process.execPath, [bin, ...args, ...settings, '--save-latents', latents], { encoding: 'utf-8', timeout: 300_000 });
  expect(r.status, r.stderr).toBe(0);
  const got = loadSafetensors(latents);
  expect(relativeL2(got.latents_out, ref.latents_out)).toBeLessThan(1e-4);
  for (const t of [...Object.values(got), ...Object.values(ref)]) t.dispose();
}

describe('generate --prompt --negative-prompt on T5 families', () => {
  it('gives diffusers latents on Chroma', () => {
    const goldens = join(root, 'packages/adapter-chroma/test/goldens');
    const model = folder('chroma', join(goldens, 'chroma-tiny'), ['transformer', 'vae', 'scheduler'], {
      tokenizer: join(textData, 't5-tokenizer'),
      text_encoder: join(textData, 't5-encoder'),
    });
    generateFromText('chroma', model, join(goldens, 'chroma-prompt'), () => []);
  });

  it('gives diffusers latents on LTX-Video, --frames and --fps included', () => {
    const goldens = join(root, 'packages/adapter-ltx-video/test/goldens');
    const text = join(goldens, 'ltx-prompt');
    const model = folder('ltx', join(goldens, 'ltx-tiny'), ['model_index.json', 'transformer', 'vae', 'scheduler'], {
      tokenizer: join(text, 'tokenizer'),
      text_encoder: join(text, 'text_encoder'),
    });
    generateFromText('ltx', model, text, (m) => ['--frames', String(m.num_frames), '--fps', String(m.frame_rate)]);
  });
});
