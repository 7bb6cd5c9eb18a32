// docs/writing-an-adapter.md followed in an empty folder, as a newcomer would: its shell commands
// run as written, in order, with the ditcache packages (not on the registry yet) taken from their
// tarballs. What the guide has the reader write comes from the finished example
// (examples/adapter-sd3: its sources, tests, reference data and configs), so the guide's build,
// lint and test commands must pass on the package it describes, built against the packages as
// users install them rather than against the workspace.
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { buildInfo } from '@ditcache/cuda-runtime';

import { cleanEnv, npm, pack, publicPackages, repo, type Manifest, type Packed } from './workspace.js';

const EXAMPLE = join(repo, 'examples/adapter-sd3');
/** The example's own check of the guide reads the repository's docs; it stays there. */
const REPOSITORY_ONLY = ['test/guide.test.ts'];
/** What the reader writes besides package.json: everything the example holds but its builds and installs. */
const WRITTEN = ['src', 'test', 'tools', 'tsconfig.json', 'tsconfig.build.json', 'vitest.config.ts', 'README.md'];
/** package.json fields the guide has the reader add to what `npm init` and `npm install` wrote. */
const MANIFEST_FIELDS = ['type', 'main', 'types', 'exports', 'files', 'ditcache', 'engines', 'scripts'] as const;

const guide = readFileSync(join(repo, 'docs/writing-an-adapter.md'), 'utf-8');
/** The guide's shell commands, block by block. */
const blocks = [...guide.matchAll(/^```sh\n([\s\S]*?)^```$/gm)].map((m) => m[1].split('\n').filter((line) => line.trim() !== ''));

const work = mkdtempSync(join(tmpdir(), 'ditcache-guide-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const tarballs = join(work, 'tarballs');
const env = cleanEnv();
let packed: Map<string, Packed>;

beforeAll(() => {
  mkdirSync(tarballs);
  const packEnv = cleanEnv(buildInfo().cuda === 'none' ? { DITCACHE_PACK_CPU_ONLY: '1' } : {});
  packed = new Map(
    pack(
      publicPackages().map((w) => w.manifest.name),
      tarballs,
      packEnv,
    ).map((p) => [p.name, p]),
  );
});

const tarball = (name: string): string => {
  const p = packed.get(name);
  if (!p) throw new Error(`the guide installs ${name}, which is no public package of this repository`);
  return join(tarballs, p.filename);
};

/** The ditcache packages the guide installs by name. */
const namedInGuide = new Set(blocks.flat().flatMap((line) => line.match(/@ditcache\/[\w-]+/g) ?? []));

/** After `npm init`: the ditcache packages that arrive as dependencies of those the guide names resolve to their tarballs too. */
function pinTransitiveToTarballs(dir: string): void {
  const manifestPath = join(dir, 'package.json');
  const manifest = JSON.parse(readFileSync(manifestPath, 'utf-8')) as Manifest & { overrides?: Record<string, string> };
  manifest.overrides = Object.fromEntries([...packed.keys()].filter((n) => !namedInGuide.has(n)).map((n) => [n, `file:${tarball(n)}`]));
  writeFileSync(manifestPath, `${JSON.stringify(manifest, null, 2)}\n`);
}

/** What the guide walks the reader through writing, taken from the finished example. */
function writeThePackage(dir: string): void {
  for (const entry of WRITTEN)
    cpSync(join(EXAMPLE, entry), join(dir, entry), { recursive: true, filter: (src) => !REPOSITORY_ONLY.some((p) => src === join(EXAMPLE, p)) });
  const manifestPath = join(dir, 'package.json');
  const manifest = JSON.parse(readFileSync(manifestPath, 'utf-8')) as Record<string, unknown>;
  const example = JSON.parse(readFileSync(join(EXAMPLE, 'package.json'), 'utf-8')) as Record<string, unknown>;
  for (const field of MANIFEST_FIELDS) manifest[field] = example[field];
  writeFileSync(manifestPath, `${JSON.stringify(manifest, null, 2)}\n`);
}

describe('docs/writing-an-adapter.md, followed in an empty folder', () => {
  it('its commands install, build, lint and test the adapter against the packed packages', () => {
    expect(blocks.length).toBeGreaterThanOrEqual(3);
    let cwd = work;
    const ran: string[] = [];
    for (const [index, block] of blocks.entries()) {
      // The reader has written the package by the time the guide runs anything but the setup.
      if (index === 1) writeThePackage(cwd);
      for (const line of block) {
        const words = line.trim().split(/\s+/);
        const mkdirCd = /^mkdir (\S+) && cd \1$/.exec(line.trim());
        if (mkdirCd) {
          cwd = join(cwd, mkdirCd[1]);
          mkdirSync(cwd);
        } else if (words[0] === 'npm' || words[0] === 'npx') {
          const args = words[0] === 'npx' ? ['exec', '--', ...words.slice(1)] : words.slice(1).map((w) => (w.startsWith('@ditcache/') ? tarball(w) : w));
          if (words[1] === 'install') args.push('--prefer-offline', '--no-audit', '--no-fund');
          const r = npm(args, { cwd, env, allowFailure: true });
          expect(r.status, `\`${line}\` failed:\n${r.stdout.slice(-4000)}\n${r.stderr.slice(-4000)}`).toBe(0);
          if (words[1] === 'init') pinTransitiveToTarballs(cwd);
        } else if (/(^|\/)(python3?|pip)$/.test(words[0])) {
          // Making the reference data needs torch and diffusers; the example's committed data (test/goldens) stands in.
          continue;
        } else {
          throw new Error(`the guide runs \`${line}\`, which this test does not know how to follow`);
        }
        ran.push(line.trim());
      }
    }

    expect(ran).toEqual(expect.arrayContaining(['npm run build', 'npm run lint', 'npm test']));
    const manifest = JSON.parse(readFileSync(join(cwd, 'package.json'), 'utf-8')) as Manifest;
    expect(Object.keys(manifest.peerDependencies ?? {}).sort()).toEqual([
      '@ditcache/core',
      '@ditcache/cuda-runtime',
      '@ditcache/diffusion',
      '@ditcache/text-encoders',
    ]);
    expect(existsSync(join(cwd, 'dist/index.d.ts')), 'the build wrote declarations').toBe(true);
    // Installed from tarballs, not linked to the workspace.
    for (const name of ['@ditcache/core', '@ditcache/cuda-runtime', '@ditcache/diffusion', '@ditcache/cli']) {
      const installed = JSON.parse(readFileSync(join(cwd, 'node_modules', name, 'package.json'), 'utf-8')) as Manifest;
      expect(installed.version, name).toBe(packed.get(name)!.version);
      expect(existsSync(join(cwd, 'node_modules', name, 'src')), `${name} came with its sources: linked, not installed`).toBe(false);
    }
  });
});
