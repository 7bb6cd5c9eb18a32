// Ctrl-C during `ditcache generate`: the run stops at the next step with one line, status 130 and no output file.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

const root = new URL('../../../', import.meta.url).pathname;
const bin = join(root, 'packages/cli/dist/cli.js');
const model = join(root, 'models/flux-shapes');
const dir = mkdtempSync(join(tmpdir(), 'ditcache-interrupt-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('ditcache generate interrupted', () => {
  it('stops at the next step on SIGINT: "ditcache: interrupted", status 130, no stack trace, no output file', async () => {
    const out = join(dir, 'never.png');
    const child = spawn(
      process.execPath,
      [
        bin,
        'generate',
        '--model',
        model,
        '--prompt',
        'a red circle at the top left',
        '--height',
        '32',
        '--width',
        '32',
        '--max-sequence-length',
        '16',
        '--steps',
        '100000',
        '--seed',
        '0',
        '--output',
        out,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stderr = '';
    child.stderr.setEncoding('utf-8').on('data', (s: string) => (stderr += s));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    // Progress on a pipe: a line once the first step is done. Interrupt then (or after 30 s regardless, so a CLI without the line fails below rather than hangs).
    try {
      const deadline = Date.now() + 30_000;
      while (!/step \d+\/100000/.test(stderr) && Date.now() < deadline && child.exitCode === null) await new Promise((r) => setTimeout(r, 50));
      const sent = Date.now();
      child.kill('SIGINT');
      const code = await exited;
      expect(code, stderr).toBe(130);
      expect(stderr).toMatch(/^ditcache: interrupted$/m);
      expect(stderr).not.toMatch(/^\s+at /m);
      expect(stderr).toMatch(/^FLUX\.1: step 1\/100000$/m);
      expect(Date.now() - sent).toBeLessThan(10_000);
      expect(existsSync(out)).toBe(false);
      expect(readdirSync(dir)).toEqual([]);
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
  });
});
