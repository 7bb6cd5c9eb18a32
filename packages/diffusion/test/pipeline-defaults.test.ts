// A pipeline folder's ditcache.json: read and checked with errors naming the file, the key and the valid keys; filled into generate()'s options.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { PIPELINE_DEFAULTS_FILE, readPipelineDefaults, withPipelineDefaults } from '../src/index.js';

const dir = mkdtempSync(join(tmpdir(), 'ditcache-defaults-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function folderWith(text: string): string {
  const folder = mkdtempSync(join(dir, 'model-'));
  writeFileSync(join(folder, PIPELINE_DEFAULTS_FILE), text);
  return folder;
}

describe('readPipelineDefaults', () => {
  it('is empty for a folder without ditcache.json', () => {
    expect(readPipelineDefaults(dir)).toEqual({});
  });

  it('reads every key under its generate() option name, and skips keys starting with _', () => {
    const folder = folderWith(
      JSON.stringify({
        _comment: 'made for 32x32',
        height: 32,
        width: 48,
        num_inference_steps: 28,
        guidance_scale: 3.5,
        max_sequence_length: 16,
        num_frames: 9,
        fps: 8,
      }),
    );
    expect(readPipelineDefaults(folder)).toEqual({
      height: 32,
      width: 48,
      numInferenceSteps: 28,
      guidanceScale: 3.5,
      maxSequenceLength: 16,
      numFrames: 9,
      fps: 8,
    });
  });

  it('refuses unknown keys, wrong values and files that are not a JSON object, naming the file and key and listing the valid keys', () => {
    const valid =
      /valid keys: height, width, num_inference_steps, guidance_scale, max_sequence_length, num_frames, fps \(and keys starting with _, which are ignored\)$/;
    const cases: [string, RegExp][] = [
      ['{"steps": 28}', /ditcache\.json: unknown key "steps" \(did you mean "num_inference_steps"\?\); /],
      ['{"numInferenceSteps": 28}', /unknown key "numInferenceSteps" \(did you mean "num_inference_steps"\?\)/],
      ['{"seed": 1}', /ditcache\.json: unknown key "seed"; /],
      ['{"height": "32"}', /ditcache\.json: "height" must be a positive integer \(pixels\), got "32"; /],
      ['{"num_inference_steps": 0}', /"num_inference_steps" must be a positive integer, got 0; /],
      ['{"guidance_scale": null}', /"guidance_scale" must be a number, got null; /],
      ['[32, 32]', /ditcache\.json: not a JSON object; /],
      ['{"height": 32,}', /ditcache\.json: not valid JSON/],
    ];
    for (const [text, message] of cases) {
      const folder = folderWith(text);
      expect(() => readPipelineDefaults(folder), text).toThrow(message);
      expect(() => readPipelineDefaults(folder), text).toThrow(valid);
      expect(() => readPipelineDefaults(folder)).toThrow(join(folder, PIPELINE_DEFAULTS_FILE));
    }
  });
});

describe('withPipelineDefaults', () => {
  const defaults = { height: 32, width: 32, numInferenceSteps: 28, maxSequenceLength: 16, fps: 8 };

  it('fills what the options leave undefined; given values win', () => {
    expect(withPipelineDefaults({ height: 64, width: undefined, prompt: 'a cat' }, defaults)).toEqual({
      height: 64,
      width: 32,
      numInferenceSteps: 28,
      maxSequenceLength: 16,
      prompt: 'a cat',
    });
  });

  it('fills maxSequenceLength only for text prompts, and never fps', () => {
    expect(withPipelineDefaults({}, defaults)).toEqual({ height: 32, width: 32, numInferenceSteps: 28 });
    expect(withPipelineDefaults<{ negativePrompt?: string; maxSequenceLength?: number }>({ negativePrompt: '' }, defaults).maxSequenceLength).toBe(16);
  });

  it("leaves the caller's object alone", () => {
    const opts = { height: undefined };
    withPipelineDefaults(opts, defaults);
    expect(opts).toEqual({ height: undefined });
  });
});
