// Bad input gets a JSON error whose status says what was wrong and whose message names the
// field: oversized and malformed bodies, unknown fields (listed with the valid ones), values out
// of bounds, anything that would name a file; and a client over its rate gets 429.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { createServer, type DitcacheServer } from '../src/index.js';
import { MODEL, postJson } from './helpers.js';

let service: DitcacheServer;
let base: string;

beforeAll(async () => {
  service = await createServer({ model: MODEL, maxBodyBytes: 2048, rateLimitPerMinute: 1000, limits: { maxSteps: 50, maxImages: 2 } });
  const { port } = await service.listen(0);
  base = `http://127.0.0.1:${port}`;
}, 60_000);
afterAll(() => service.close());

async function refusal(res: Response): Promise<{ status: number; message: string; param: string | null }> {
  expect(res.headers.get('content-type')).toMatch(/^application\/json/);
  const { error } = (await res.json()) as { error: { message: string; param: string | null } };
  return { status: res.status, message: error.message, param: error.param };
}

describe('requests', () => {
  it('refuses a body over the cap with 413, without reading it all', async () => {
    const r = await refusal(await postJson(base, '/v1/jobs', { prompt: 'x'.repeat(4096) }));
    expect(r).toMatchObject({ status: 413, message: 'the body is larger than 2048 bytes' });
  });

  it('refuses malformed JSON (400), another content type (415) and a body that is not an object (400)', async () => {
    const malformed = await fetch(`${base}/v1/jobs`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{"prompt": "x",' });
    expect(await refusal(malformed)).toMatchObject({ status: 400, message: expect.stringMatching(/^the body is not valid JSON/) });
    const form = await fetch(`${base}/v1/jobs`, { method: 'POST', headers: { 'Content-Type': 'text/plain' }, body: 'prompt=x' });
    expect((await refusal(form)).status).toBe(415);
    expect(await refusal(await postJson(base, '/v1/jobs', ['x']))).toMatchObject({ status: 400, message: 'the body must be a JSON object, got an array' });
  });

  it('refuses unknown fields, listing the valid ones', async () => {
    const r = await refusal(await postJson(base, '/v1/images/generations', { prompt: 'x', quality: 'hd', inputs: '/etc/passwd' }));
    expect(r.status).toBe(400);
    expect(r.message).toBe(
      'unknown fields quality, inputs; valid fields: prompt, negative_prompt, size, n, response_format, model, user, steps, guidance, frames, seed, cache',
    );
  });

  it.each([
    [{}, 'prompt', 'prompt: is required: a non-empty string'],
    [{ prompt: 'x', size: '20x16' }, 'size', "size: width and height must be multiples of 8 (this model's), from 8 to 2048, got 20x16"],
    [{ prompt: 'x', size: 256 }, 'size', "size: must be 'WIDTHxHEIGHT', e.g. '32x32', got 256"],
    [{ prompt: 'x', steps: 0 }, 'steps', 'steps: must be an integer from 1 to 50, got 0'],
    [{ prompt: 'x', steps: 51 }, 'steps', 'steps: must be an integer from 1 to 50, got 51'],
    [{ prompt: 'x', n: 3 }, 'n', 'n: must be an integer from 1 to 2, got 3'],
    [{ prompt: 'x', seed: -1 }, 'seed', 'seed: must be an integer from 0 to 4294967295, got -1'],
    [{ prompt: 'x', guidance: 'high' }, 'guidance', 'guidance: must be a number from 0 to 100, got "high"'],
    [{ prompt: 'x', frames: 9 }, 'frames', 'frames: this model makes images; frames is for video models'],
    [{ prompt: 'x', response_format: 'url' }, 'response_format', 'response_format: must be \'b64_json\' (this server returns images inline), got "url"'],
    // A cache is a preset or a config, never a file.
    [
      { prompt: 'x', cache: 'configs/cache.yaml' },
      'cache',
      "cache: 'configs/cache.yaml' is not a preset (cache-dit, quality, balanced, fast, none); give a preset's name or a config object",
    ],
  ])('refuses %j with 400 naming %s', async (body, param, message) => {
    expect(await refusal(await postJson(base, '/v1/jobs', body))).toEqual({ status: 400, param, message });
  });

  it("refuses a cache config with unknown keys, or one that does not fit the model's blocks", async () => {
    const unknown = await refusal(await postJson(base, '/v1/jobs', { prompt: 'x', cache: { threshold: 0.1 } }));
    expect(unknown.status).toBe(400);
    expect(unknown.message).toMatch(/^cache: .*threshold/);
    const tooMany = await refusal(await postJson(base, '/v1/jobs', { prompt: 'x', cache: { Fn_compute_blocks: 500 } }));
    expect(tooMany.status).toBe(400);
    expect(tooMany.message).toMatch(/Fn_compute_blocks \(500\)/);
  });

  it('answers unknown routes with 404 and wrong methods with 405', async () => {
    expect((await refusal(await fetch(`${base}/v2/anything`))).status).toBe(404);
    const wrong = await fetch(`${base}/v1/jobs`);
    expect(wrong.headers.get('allow')).toBe('POST');
    expect((await refusal(wrong)).status).toBe(405);
  });
});

describe('rate limit', () => {
  it('refuses a client over its jobs a minute with 429 and Retry-After', async () => {
    const limited = await createServer({ model: MODEL, rateLimitPerMinute: 2 });
    try {
      const { port } = await limited.listen(0);
      const url = `http://127.0.0.1:${port}`;
      const bad = { prompt: 'x', steps: 0 };
      // Refused requests count too: the limit guards the work of reading and checking them.
      expect((await postJson(url, '/v1/jobs', bad)).status).toBe(400);
      expect((await postJson(url, '/v1/jobs', bad)).status).toBe(400);
      const third = await postJson(url, '/v1/jobs', bad);
      expect(third.status).toBe(429);
      expect(Number(third.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
      expect((await third.json()) as object).toMatchObject({ error: { type: 'rate_limit_error' } });
      expect((await fetch(`${url}/healthz`)).status).toBe(200);
    } finally {
      await limited.close();
    }
  });
});
