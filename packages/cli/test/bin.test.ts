// The built bins run from a checkout: executable after every build, and `npx ditcache` finds the CLI from the repository root.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

const root = new URL('../../../', import.meta.url).pathname;

/** [package folder, bin name, bin file] of every workspace package that declares bins. */
function bins(): [string, string, string][] {
  const out: [string, string, string][] = [];
  for (const group of ['packages', 'examples']) {
    for (const name of readdirSync(join(root, group))) {
      const pkgPath = join(root, group, name, 'package.json');
      if (!existsSync(pkgPath)) continue;
      const pkg = JSON.parse(readFileSync(pkgPath, 'utf-8')) as { name: string; bin?: string | Record<string, string> };
      if (!pkg.bin) continue;
      const entries = typeof pkg.bin === 'string' ? { [pkg.name.replace(/^@[^/]+\//, '')]: pkg.bin } : pkg.bin;
      for (const [bin, file] of Object.entries(entries)) out.push([join(group, name), bin, join(root, group, name, file)]);
    }
  }
  return out;
}

describe('built bins', () => {
  it('have the owner-exec bit after the build', () => {
    const found = bins();
    expect(found.map(([, bin]) => bin)).toContain('ditcache');
    for (const [pkg, bin, file] of found) {
      if (!existsSync(file)) continue; // a package this test run did not build
      expect(statSync(file).mode & 0o100, `${pkg}: ${bin} (${file}) is not executable`).not.toBe(0);
    }
  });

  it('npx ditcache --help works from the repository root', () => {
    const r = spawnSync('npx', ['--no', '--', 'ditcache', '--help'], { cwd: root, encoding: 'utf-8', timeout: 60_000 });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^Usage: ditcache \[options\] \[command\]/);
  });
});
