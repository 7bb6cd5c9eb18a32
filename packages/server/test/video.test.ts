// A video family through the server: `frames` sets the clip's length as generate's --frames does,
// the answer is the family's animated WebP with the bytes `ditcache generate` writes for the same
// settings, and a length the family refuses is a 400 naming its rule. The model is the tiny Wan
// golden with the tiny UMT5 of adapter-wan's prompt references.
import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { scratchDir } from '../../../scripts/testing/scratch-dir.js';
import { createServer, type DitcacheServer } from '../src/index.js';
import { ROOT, postJson, runDitcache } from './helpers.js';

const dir = scratchDir('ditcache-server-video-');
const wan = join(dir, 'wan');
mkdirSync(wan);
for (const entry of ['transformer', 'vae', 'scheduler']) symlinkSync(join(ROOT, 'testdata/goldens/wan-tiny', entry), join(wan, entry));
for (const entry of ['tokenizer', 'text_encoder']) symlinkSync(join(ROOT, 'packages/adapter-wan/test/goldens/wan-prompt', entry), join(wan, entry));
// The golden's pipeline index names no text encoders; this folder has them.
const index = JSON.parse(readFileSync(join(ROOT, 'testdata/goldens/wan-tiny/model_index.json'), 'utf-8')) as Record<string, unknown>;
writeFileSync(
  join(wan, 'model_index.json'),
  JSON.stringify({ ...index, tokenizer: ['transformers', 'AutoTokenizer'], text_encoder: ['transformers', 'UMT5EncoderModel'] }),
);

let service: DitcacheServer;
let base: string;
beforeAll(async () => {
  service = await createServer({ model: wan, rateLimitPerMinute: 1000 });
  base = `http://127.0.0.1:${(await service.listen(0)).port}`;
}, 60_000);
afterAll(() => service?.close());

describe('a video family', () => {
  it('answers `frames` with the animated WebP generate writes for the same settings', async () => {
    const res = await postJson(base, '/v1/images/generations', { prompt: 'a cat', size: '48x32', steps: 3, frames: 5, seed: 3, cache: 'none' });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { data: { b64_json: string; content_type: string }[] };
    expect(body.data.map((d) => d.content_type)).toEqual(['image/webp']);
    const served = Buffer.from(body.data[0].b64_json, 'base64');
    const out = join(dir, 'cli.webp');
    const cli = runDitcache([
      'generate',
      '--model',
      wan,
      '--prompt',
      'a cat',
      '--width',
      '48',
      '--height',
      '32',
      '--steps',
      '3',
      '--frames',
      '5',
      '--seed',
      '3',
      '--output',
      out,
    ]);
    expect(cli.status, cli.output).toBe(0);
    expect(served.equals(readFileSync(out))).toBe(true);
    // An animation of 5 frames: one ANMF chunk per frame.
    expect(served.toString('latin1').split('ANMF').length - 1).toBe(5);
  });

  it("refuses a length the family does not make, with the family's rule", async () => {
    const res = await postJson(base, '/v1/jobs', { prompt: 'a cat', frames: 4 });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { message: string } }).error.message).toMatch(/frames must be 4k \+ 1/);
  });
});
