// `ditcache serve` as users start it: an OpenAI-shaped request makes the same image as
// `ditcache generate` with the same settings, and the API key guards every route but /healthz.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { beforeAll, describe, expect, it } from 'vitest';

import { scratchDir } from '../../../scripts/testing/scratch-dir.js';
import { MODEL, pngWithoutText, postJson, runDitcache, startServe } from './helpers.js';

const KEY = 'test-key-3f9a';
const auth = { Authorization: `Bearer ${KEY}` };
let base: string;

beforeAll(async () => {
  // The key from the environment, as an operator keeps it out of the process list.
  ({ base } = await startServe(['--model', MODEL], { DITCACHE_API_KEY: KEY }));
}, 60_000);

describe('ditcache serve', () => {
  it('returns the bytes of ditcache generate for the same prompt, seed, steps, size and cache', async () => {
    const prompt = 'a green square on a yellow background';
    const output = join(scratchDir('ditcache-serve-'), 'cli.png');
    const cli = runDitcache([
      'generate',
      '--model',
      MODEL,
      '--prompt',
      prompt,
      '--seed',
      '11',
      '--steps',
      '6',
      '--width',
      '16',
      '--height',
      '24',
      '--cache',
      'fast',
      '--output',
      output,
    ]);
    expect(cli.status, cli.output).toBe(0);

    // As the OpenAI client sends it (model, n, size, response_format), with ditcache's own fields.
    const res = await postJson(
      base,
      '/v1/images/generations',
      { model: 'flux-shapes', prompt, n: 1, size: '16x24', response_format: 'b64_json', seed: 11, steps: 6, cache: 'fast' },
      auth,
    );
    expect(res.status).toBe(200);
    const body = (await res.json()) as { data: { b64_json: string; seed: number }[]; ditcache: { steps: number; cached_steps: number } };
    expect(body.data).toHaveLength(1);
    expect(body.data[0].seed).toBe(11);
    expect(body.ditcache.steps).toBe(6);
    expect(body.ditcache.cached_steps).toBeGreaterThan(0);
    const served = Buffer.from(body.data[0].b64_json, 'base64');
    expect(served.equals(pngWithoutText(served))).toBe(true);
    expect(served.equals(pngWithoutText(readFileSync(output)))).toBe(true);
  });

  it('makes n images with consecutive seeds, each the image of its own seed', async () => {
    const request = { prompt: 'a blue triangle', size: '16x16', steps: 3, seed: 40 };
    const two = (await (await postJson(base, '/v1/images/generations', { ...request, n: 2 }, auth)).json()) as { data: { b64_json: string; seed: number }[] };
    const second = (await (await postJson(base, '/v1/images/generations', { ...request, seed: 41 }, auth)).json()) as { data: { b64_json: string }[] };
    expect(two.data.map((d) => d.seed)).toEqual([40, 41]);
    expect(two.data[1].b64_json).toBe(second.data[0].b64_json);
    expect(two.data[0].b64_json).not.toBe(two.data[1].b64_json);
  });

  it('refuses requests without the key or with a wrong one (401), on every route but /healthz', async () => {
    for (const path of ['/', '/metrics', '/v1/models', '/v1/jobs/x']) {
      expect((await fetch(`${base}${path}`)).status, path).toBe(401);
      expect((await fetch(`${base}${path}`, { headers: { Authorization: 'Bearer wrong' } })).status, path).toBe(401);
    }
    const refused = await postJson(base, '/v1/jobs', { prompt: 'x' });
    expect(refused.status).toBe(401);
    expect(((await refused.json()) as { error: { type: string } }).error.type).toBe('authentication_error');
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    expect((await fetch(`${base}/metrics`, { headers: auth })).status).toBe(200);
    // Browsers send the key as Basic credentials (the page asks for it).
    const basic = { Authorization: `Basic ${Buffer.from(`user:${KEY}`).toString('base64')}` };
    const page = await fetch(`${base}/`, { headers: basic });
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('<title>ditcache</title>');
  });
});
