// Versioning by changesets, on a copy of what a fresh clone holds (the manifests, .changeset/ and
// the peer-range script) plus one more changeset, a minor change of core, so that there is always
// something to release: `changeset version` then `scripts/sync-peer-ranges.mjs`, as
// `npm run version-packages` runs them. The public packages move together, 0.x stays 0.x (a peer
// leaving a caret range would have made every adapter 1.0.0), changelogs are written, and every
// internal dependency and peer range follows.
import { spawnSync } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { repo, workspaces, type Manifest, type Workspace } from './workspace.js';

const BUMPS = ['patch', 'minor', 'major'] as const;
type Bump = (typeof BUMPS)[number];

const copy = mkdtempSync(join(tmpdir(), 'ditcache-changesets-'));
afterAll(() => rmSync(copy, { recursive: true, force: true }));

const before = workspaces();
const config = JSON.parse(readFileSync(join(repo, '.changeset/config.json'), 'utf-8')) as { fixed: string[][]; ignore: string[] };
const fixed = config.fixed[0];
let after: Map<string, Workspace>;
let pending: { file: string; releases: Record<string, Bump> }[];

/** The packages and bump types of a changeset file's front matter. */
function releasesOf(text: string): Record<string, Bump> {
  const front = /^---\n([\s\S]*?)\n---/.exec(text)?.[1] ?? '';
  return Object.fromEntries([...front.matchAll(/^"?([^":\s]+)"?\s*:\s*(patch|minor|major)\s*$/gm)].map((m) => [m[1], m[2] as Bump]));
}

/** Whether a caret range such as ^0.2.0 admits `version` (the same major, or the same minor below 1.0, and not below it). */
function caretAdmits(range: string, version: string): boolean {
  const low = /^\^(\d+)\.(\d+)\.(\d+)$/.exec(range)?.slice(1).map(Number);
  const v = version.split('.').map(Number);
  if (!low) return false;
  const sameLine = low[0] === v[0] && (low[0] > 0 || low[1] === v[1]);
  return sameLine && (v[1] > low[1] || (v[1] === low[1] && v[2] >= low[2]));
}

function bumped(version: string, bump: Bump): string {
  const [major, minor, patch] = version.split('.').map(Number);
  return bump === 'major' ? `${major + 1}.0.0` : bump === 'minor' ? `${major}.${minor + 1}.0` : `${major}.${minor}.${patch + 1}`;
}

beforeAll(() => {
  copyFileSync(join(repo, 'package.json'), join(copy, 'package.json'));
  cpSync(join(repo, '.changeset'), join(copy, '.changeset'), { recursive: true });
  cpSync(join(repo, 'scripts'), join(copy, 'scripts'), { recursive: true });
  for (const { dir } of before) {
    mkdirSync(join(copy, dir), { recursive: true });
    for (const file of ['package.json', 'CHANGELOG.md']) if (existsSync(join(repo, dir, file))) copyFileSync(join(repo, dir, file), join(copy, dir, file));
  }
  // changesets loads its changelog writer from the project's node_modules.
  symlinkSync(join(repo, 'node_modules'), join(copy, 'node_modules'));
  writeFileSync(
    join(copy, '.changeset/package-tests-core-minor.md'),
    '---\n"@ditcache/core": minor\n---\n\nA minor change of core, for the versioning test.\n',
  );
  pending = readdirSync(join(copy, '.changeset'))
    .filter((f) => f.endsWith('.md') && f !== 'README.md')
    .map((file) => ({ file, releases: releasesOf(readFileSync(join(copy, '.changeset', file), 'utf-8')) }));

  for (const args of [[join(repo, 'node_modules/@changesets/cli/bin.js'), 'version'], [join(copy, 'scripts/sync-peer-ranges.mjs')]]) {
    const r = spawnSync(process.execPath, args, { cwd: copy, encoding: 'utf-8', timeout: 120_000 });
    if (r.status !== 0) throw new Error(`${args.join(' ')} failed:\n${r.stdout}\n${r.stderr}`);
  }
  after = new Map(workspaces(copy).map((w) => [w.manifest.name, w]));
});

const versionBefore = (name: string) => before.find((w) => w.manifest.name === name)!.manifest.version;
const manifestAfter = (name: string): Manifest => after.get(name)!.manifest;

describe('changeset version on a fresh copy', () => {
  it('uses up every changeset', () => {
    expect(
      readdirSync(join(copy, '.changeset'))
        .filter((f) => f.endsWith('.md'))
        .sort(),
    ).toEqual(['README.md']);
  });

  it('gives the public packages one new version, the biggest bump any changeset asks of them, without leaving 0.x for a minor', () => {
    expect(fixed.sort()).toEqual(
      before
        .filter((w) => !w.manifest.private)
        .map((w) => w.manifest.name)
        .sort(),
    );
    const bump =
      BUMPS[
        Math.max(
          ...pending.flatMap((c) =>
            Object.entries(c.releases)
              .filter(([n]) => fixed.includes(n))
              .map(([, b]) => BUMPS.indexOf(b)),
          ),
        )
      ];
    const expected = bumped(versionBefore('@ditcache/core'), bump);
    for (const name of fixed) expect(`${name}@${manifestAfter(name).version}`).toBe(`${name}@${expected}`);
    if (bump !== 'major') expect(expected.split('.')[0]).toBe(versionBefore('@ditcache/core').split('.')[0]);
  });

  it('writes each public package a changelog entry for its new version', () => {
    for (const name of fixed) {
      const { dir } = after.get(name)!;
      const changelog = readFileSync(join(copy, dir, 'CHANGELOG.md'), 'utf-8');
      expect(changelog, `${name}'s CHANGELOG.md`).toContain(`## ${manifestAfter(name).version}\n`);
    }
    const core = readFileSync(join(copy, after.get('@ditcache/core')!.dir, 'CHANGELOG.md'), 'utf-8');
    expect(core).toContain('A minor change of core, for the versioning test.');
  });

  it('keeps internal dependencies exact and at the new versions, and moves peer ranges to start at them', () => {
    for (const { manifest } of after.values()) {
      for (const field of ['dependencies', 'devDependencies', 'optionalDependencies'] as const) {
        for (const [dep, spec] of Object.entries(manifest[field] ?? {})) {
          if (after.has(dep)) expect(`${manifest.name} ${field} ${dep}@${spec}`).toBe(`${manifest.name} ${field} ${dep}@${manifestAfter(dep).version}`);
        }
      }
      if (config.ignore.includes(manifest.name)) continue;
      for (const [dep, spec] of Object.entries(manifest.peerDependencies ?? {})) {
        if (!after.has(dep)) continue;
        const version = manifestAfter(dep).version;
        expect(`${manifest.name} peer ${dep}@${spec}`).toBe(`${manifest.name} peer ${dep}@${version.startsWith('0.') ? `>=${version} <1.0.0` : `^${version}`}`);
      }
    }
  });

  it('leaves the example adapter unreleased, its ranges following the packages it uses', () => {
    for (const name of config.ignore) {
      const m = manifestAfter(name);
      expect(m.version).toBe(versionBefore(name));
      for (const [dep, spec] of Object.entries(m.peerDependencies ?? {}))
        if (after.has(dep)) expect(caretAdmits(spec, manifestAfter(dep).version), `${name} peer ${dep}@${spec}`).toBe(true);
    }
  });
});
