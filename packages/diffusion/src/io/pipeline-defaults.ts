// Why: a model folder knows what it was made for (a 32x32 model, 16 text tokens); ditcache.json at its root says so, and
// generate() and the CLI use it where the caller gives no value, instead of library defaults that produce noise on it.
import { existsSync } from 'node:fs';
import { join } from 'node:path';

import { ConfigError, readJsonObject } from './config-file.js';

/** The file at the root of a pipeline folder that holds its recommended generation settings. */
export const PIPELINE_DEFAULTS_FILE = 'ditcache.json';

/** A pipeline folder's recommended settings (ditcache.json), under generate()'s option names; each is optional. */
export interface PipelineDefaults {
  height?: number;
  width?: number;
  numInferenceSteps?: number;
  guidanceScale?: number;
  /** T5 / UMT5 tokens of a text prompt. */
  maxSequenceLength?: number;
  /** Video families: frames per video, and the animation's frames per second (the CLI's --fps). */
  numFrames?: number;
  fps?: number;
}

type Check = (v: unknown) => boolean;
const positiveInteger: Check = (v) => typeof v === 'number' && Number.isSafeInteger(v) && v > 0;
const finiteNumber: Check = (v) => typeof v === 'number' && Number.isFinite(v);
const positiveNumber: Check = (v) => typeof v === 'number' && Number.isFinite(v) && v > 0;

/** The keys of ditcache.json (diffusers' call arguments), with the option each sets and what it must be. */
const KEYS: Record<string, { option: keyof PipelineDefaults; check: Check; meaning: string }> = {
  height: { option: 'height', check: positiveInteger, meaning: 'a positive integer (pixels)' },
  width: { option: 'width', check: positiveInteger, meaning: 'a positive integer (pixels)' },
  num_inference_steps: { option: 'numInferenceSteps', check: positiveInteger, meaning: 'a positive integer' },
  guidance_scale: { option: 'guidanceScale', check: finiteNumber, meaning: 'a number' },
  max_sequence_length: { option: 'maxSequenceLength', check: positiveInteger, meaning: 'a positive integer' },
  num_frames: { option: 'numFrames', check: positiveInteger, meaning: 'a positive integer' },
  fps: { option: 'fps', check: positiveNumber, meaning: 'a positive number' },
};

/** Names people reach for (the CLI's flags, the API's options) -> the key of ditcache.json. */
const ALIASES: Record<string, string> = {
  steps: 'num_inference_steps',
  guidance: 'guidance_scale',
  frames: 'num_frames',
  ...Object.fromEntries(Object.entries(KEYS).map(([key, { option }]) => [option, key])),
  ...Object.fromEntries(Object.entries(KEYS).map(([key, { option }]) => [option.toLowerCase(), key])),
};

const validKeys = (): string => `valid keys: ${Object.keys(KEYS).join(', ')} (and keys starting with _, which are ignored)`;

/**
 * The recommended settings of the pipeline folder `dir`, from its ditcache.json: {} without one.
 * A file that is not a JSON object, an unknown key or a value of the wrong kind is a ConfigError
 * naming the file and the key and listing the valid keys. Keys starting with `_` are comments.
 */
export function readPipelineDefaults(dir: string): PipelineDefaults {
  const path = join(dir, PIPELINE_DEFAULTS_FILE);
  if (!existsSync(path)) return {};
  let raw: Record<string, unknown>;
  try {
    raw = readJsonObject(path);
  } catch (e) {
    throw new ConfigError(`${(e as Error).message}; ${validKeys()}`);
  }
  const out: PipelineDefaults = {};
  for (const [key, value] of Object.entries(raw)) {
    if (key.startsWith('_')) continue;
    const spec = KEYS[key];
    if (!spec) {
      const meant = ALIASES[key] ?? ALIASES[key.toLowerCase()];
      throw new ConfigError(`${path}: unknown key "${key}"${meant ? ` (did you mean "${meant}"?)` : ''}; ${validKeys()}`);
    }
    if (!spec.check(value)) throw new ConfigError(`${path}: "${key}" must be ${spec.meaning}, got ${JSON.stringify(value)}; ${validKeys()}`);
    out[spec.option] = value as number;
  }
  return out;
}

/** generate() options a folder's defaults can fill. */
export interface DefaultableOptions {
  height?: number;
  width?: number;
  numInferenceSteps?: number;
  guidanceScale?: number;
  maxSequenceLength?: number;
  numFrames?: number;
  prompt?: unknown;
  negativePrompt?: unknown;
}

/**
 * `opts` with each setting it leaves undefined taken from the folder's defaults (the caller's
 * values win). maxSequenceLength is filled only for a text prompt or negative prompt, the only
 * inputs it applies to. `fps` is not a generate() option (the CLI's animations use it).
 */
export function withPipelineDefaults<T extends DefaultableOptions>(opts: T, defaults: PipelineDefaults): T {
  const out: T = { ...opts };
  const fill = <K extends keyof DefaultableOptions & keyof PipelineDefaults>(key: K): void => {
    if (out[key] === undefined && defaults[key] !== undefined) (out as DefaultableOptions)[key] = defaults[key];
  };
  for (const key of ['height', 'width', 'numInferenceSteps', 'guidanceScale', 'numFrames'] as const) fill(key);
  if (opts.prompt !== undefined || opts.negativePrompt !== undefined) fill('maxSequenceLength');
  return out;
}
