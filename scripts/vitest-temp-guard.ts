// Tests that forget to remove their temp folders fill the system temp directory run after run; every package's vitest run gets its own empty TMPDIR and fails when a test leaves anything in it.
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * vitest globalSetup (vitest.shared.ts lists it, so every package's config does). It runs in the
 * main vitest process before the test workers start: the workers, and any process a test spawns
 * (the CLI, npm, the native runtime's children), inherit TMPDIR, so `os.tmpdir()` and `mkdtemp`
 * there land in this folder. At the end, anything still in it fails the run with its names; the
 * folder is removed either way.
 */
export default function setup(): () => void {
  const previous = process.env.TMPDIR;
  const dir = mkdtempSync(join(tmpdir(), 'ditcache-vitest-tmp-'));
  process.env.TMPDIR = dir;
  return () => {
    if (previous === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = previous;
    const left = readdirSync(dir).sort();
    rmSync(dir, { recursive: true, force: true });
    if (left.length > 0) {
      // vitest prints a teardown error ("error during close") but does not fail the run for it.
      process.exitCode = 1;
      throw new Error(
        `tests left ${left.length} entr${left.length === 1 ? 'y' : 'ies'} in the temp directory (${dir}, now removed): ${left.join(', ')}. ` +
          'Remove what a test creates (afterAll / afterEach with rmSync(path, { recursive: true, force: true }), or `using`).',
      );
    }
  };
}
