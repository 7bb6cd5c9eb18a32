// The web page in headless Chromium (Debian's, driven by playwright-core): a prompt submitted
// there shows its steps as they run, the residual diffs of the cached run, and the image.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { scratchDir } from '../../../scripts/testing/scratch-dir.js';
import { createServer, type DitcacheServer } from '../src/index.js';
import { MODEL, postJson } from './helpers.js';

/** Debian's chromium, or the one on PATH. */
function chromiumPath(): string {
  const found = ['/usr/bin/chromium', '/usr/bin/chromium-browser', ...(process.env.PATH ?? '').split(':').map((d) => join(d, 'chromium'))].find((p) =>
    existsSync(p),
  );
  if (!found) throw new Error("no chromium: install Debian's chromium package (apt-get install chromium)");
  return found;
}

let service: DitcacheServer;
let base: string;
let browser: Browser;

beforeAll(async () => {
  service = await createServer({ model: MODEL });
  const { port } = await service.listen(0);
  base = `http://127.0.0.1:${port}`;
  browser = await chromium.launch({ executablePath: chromiumPath(), args: ['--no-sandbox'] });
}, 60_000);
afterAll(async () => {
  await browser?.close();
  await service?.close();
});

describe('the web page', () => {
  it('submits a prompt, shows every step with the residual diffs, then the image in the gallery', async () => {
    const page = await browser.newPage({ viewport: { width: 900, height: 640 } });
    await page.goto(base);
    await page.waitForSelector('#cache option[value="fast"]', { state: 'attached' });
    // A job ahead keeps the page's queued until its stream is open, so the page sees all its steps.
    await postJson(base, '/v1/jobs', { prompt: 'a red circle', size: '64x64', steps: 40 });
    await page.fill('#prompt', 'a yellow circle on a purple background');
    await page.selectOption('#cache', 'fast');
    await page.click('#submit');

    await page.waitForSelector('#gallery figure img', { timeout: 30_000 });
    expect(await page.getAttribute('#progress', 'data-steps')).toBe('28');
    expect(await page.$eval('#progress', (p) => (p as unknown as { value: number }).value)).toBe(1);
    expect(await page.textContent('#status')).toMatch(/^done: \d+ of 28 steps cached/);
    // The plot: one dot per step the cache measured, and the threshold line.
    expect(await page.$$eval('#plot circle', (c) => c.length)).toBeGreaterThan(10);
    expect(await page.$$eval('#plot line', (l) => l.length)).toBe(1);
    const image = await page.$eval('#gallery img', (img) => {
      // No DOM types here: the test runs in Node.js, the function in the page.
      const { naturalWidth, alt } = img as unknown as { naturalWidth: number; alt: string };
      return { width: naturalWidth, alt };
    });
    expect(image).toEqual({ width: 32, alt: 'a yellow circle on a purple background' });

    const shot = process.env.DITCACHE_SCREENSHOT ?? join(scratchDir('ditcache-web-'), 'web-page.png');
    await page.screenshot({ path: shot });
    expect(readFileSync(shot).subarray(1, 4).toString()).toBe('PNG');
  });
});
