// The request body of POST /v1/images/generations and POST /v1/jobs: the OpenAI Images API's
// fields and ditcache's own, each checked for type and bounds, unknown ones refused with the
// list of valid ones. Nothing here names a file or a plugin: a cache is a preset or a config.
import { randomInt } from 'node:crypto';

import { CACHE_PRESETS, parseCacheConfig, type CacheConfigInput } from '@ditcache/core';

import { HttpError } from './http-error.js';
import type { GenerationSpec } from './job.js';
import type { ModelInfo } from './model-info.js';

/** Bounds on what one request may ask for. */
export interface RequestLimits {
  maxSteps: number;
  maxImages: number;
  /** The largest width or height. */
  maxSide: number;
  maxPromptChars: number;
  /** The most video frames a request may ask for. */
  maxFrames: number;
}

export const DEFAULT_LIMITS: RequestLimits = { maxSteps: 100, maxImages: 4, maxSide: 2048, maxPromptChars: 2000, maxFrames: 257 };

const FIELDS = ['prompt', 'negative_prompt', 'size', 'n', 'response_format', 'model', 'user', 'steps', 'guidance', 'frames', 'seed', 'cache'] as const;

const SEED_LIMIT = 2 ** 32;

const bad = (param: string, message: string): HttpError => new HttpError(400, `${param}: ${message}`, param);

function text(body: Record<string, unknown>, key: string, maxChars: number): string | undefined {
  const v = body[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'string') throw bad(key, `must be a string, got ${describe(v)}`);
  if (v.length > maxChars) throw bad(key, `must be at most ${maxChars} characters, got ${v.length}`);
  return v;
}

function integer(body: Record<string, unknown>, key: string, min: number, max: number): number | undefined {
  const v = body[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw bad(key, `must be an integer from ${min} to ${max}, got ${describe(v)}`);
  return v;
}

function describe(v: unknown): string {
  return v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v === 'object' ? 'an object' : JSON.stringify(v);
}

/** 'WIDTHxHEIGHT', each a multiple of the model's size multiple and at most maxSide. */
function size(v: unknown, multiple: number, maxSide: number): { width: number; height: number } | undefined {
  if (v === undefined) return undefined;
  const m = typeof v === 'string' ? /^(\d{1,5})x(\d{1,5})$/.exec(v) : null;
  if (!m) throw bad('size', `must be 'WIDTHxHEIGHT', e.g. '${multiple * 4}x${multiple * 4}', got ${describe(v)}`);
  const [width, height] = [Number(m[1]), Number(m[2])];
  for (const side of [width, height]) {
    if (side === 0 || side % multiple !== 0 || side > maxSide)
      throw bad('size', `width and height must be multiples of ${multiple} (this model's), from ${multiple} to ${maxSide}, got ${v}`);
  }
  return { width, height };
}

/** A preset's name, 'none', or a config object, checked for keys and types. */
function cache(v: unknown): string | CacheConfigInput | undefined {
  if (v === undefined) return undefined;
  const presets = [...Object.keys(CACHE_PRESETS), 'none'];
  if (typeof v === 'string') {
    if (!presets.includes(v)) throw bad('cache', `'${v}' is not a preset (${presets.join(', ')}); give a preset's name or a config object`);
    return v;
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v))
    throw bad('cache', `must be a preset (${presets.join(', ')}) or a config object, got ${describe(v)}`);
  try {
    parseCacheConfig(v as CacheConfigInput);
  } catch (e) {
    throw bad('cache', (e as Error).message.split('\n').join(' '));
  }
  return v as CacheConfigInput;
}

/** The generation a parsed JSON body asks for; an HttpError 400 naming the field at fault otherwise. */
export function parseGenerationRequest(
  body: unknown,
  model: Pick<ModelInfo, 'sizeMultiple' | 'takesFrames'>,
  limits: RequestLimits = DEFAULT_LIMITS,
): GenerationSpec {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new HttpError(400, `the body must be a JSON object, got ${describe(body)}`);
  const b = body as Record<string, unknown>;
  const unknown = Object.keys(b).filter((k) => !(FIELDS as readonly string[]).includes(k));
  if (unknown.length)
    throw new HttpError(400, `unknown field${unknown.length > 1 ? 's' : ''} ${unknown.join(', ')}; valid fields: ${FIELDS.join(', ')}`, unknown[0]);
  const prompt = text(b, 'prompt', limits.maxPromptChars);
  if (prompt === undefined || prompt.trim() === '') throw bad('prompt', 'is required: a non-empty string');
  text(b, 'model', 200);
  text(b, 'user', 200);
  if (b.response_format !== undefined && b.response_format !== 'b64_json')
    throw bad('response_format', `must be 'b64_json' (this server returns images inline), got ${describe(b.response_format)}`);
  const guidance = b.guidance;
  if (guidance !== undefined && (typeof guidance !== 'number' || !Number.isFinite(guidance) || guidance < 0 || guidance > 100))
    throw bad('guidance', `must be a number from 0 to 100, got ${describe(guidance)}`);
  if (b.frames !== undefined && !model.takesFrames) throw bad('frames', 'this model makes images; frames is for video models');
  return {
    prompt,
    negativePrompt: text(b, 'negative_prompt', limits.maxPromptChars),
    ...size(b.size, model.sizeMultiple, limits.maxSide),
    n: integer(b, 'n', 1, limits.maxImages) ?? 1,
    steps: integer(b, 'steps', 1, limits.maxSteps),
    guidance: guidance as number | undefined,
    frames: integer(b, 'frames', 1, limits.maxFrames),
    // Drawn now when not given, so that the job's images can be made again.
    seed: integer(b, 'seed', 0, SEED_LIMIT - 1) ?? randomInt(SEED_LIMIT - 1),
    cache: cache(b.cache),
  };
}
