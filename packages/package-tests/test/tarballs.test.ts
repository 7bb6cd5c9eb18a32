// What `npm pack` puts in each public package's tarball: compiled ESM with type declarations, a
// README and a LICENSE, an exports map whose every target is inside, and nothing of the tests,
// TypeScript sources, benchmarks or build folders; the runtime adds exactly what its source
// build needs, and its platform package only the binary. And the dependency ranges users see.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { buildInfo } from '@ditcache/cuda-runtime';

import { cleanEnv, pack, publicPackages, type Manifest, type Packed } from './workspace.js';

const PLATFORM_PACKAGE = '@ditcache/cuda-runtime-linux-x64';
/** The packages an adapter builds on, which therefore take core and the runtime as peers. */
const PEER_TAKERS: Record<string, string[]> = {
  '@ditcache/adapter-flux': ['@ditcache/core', '@ditcache/cuda-runtime'],
  '@ditcache/adapter-wan': ['@ditcache/core', '@ditcache/cuda-runtime'],
  '@ditcache/adapter-hidream': ['@ditcache/core', '@ditcache/cuda-runtime'],
  '@ditcache/adapter-qwen-image': ['@ditcache/core', '@ditcache/cuda-runtime'],
  '@ditcache/adapter-chroma': ['@ditcache/core', '@ditcache/cuda-runtime'],
  '@ditcache/adapter-hunyuan-video': ['@ditcache/core', '@ditcache/cuda-runtime'],
  '@ditcache/adapter-ltx-video': ['@ditcache/core', '@ditcache/cuda-runtime'],
  '@ditcache/diffusion': ['@ditcache/core', '@ditcache/cuda-runtime'],
  '@ditcache/text-encoders': ['@ditcache/cuda-runtime'],
};

/** Every model family the repository publishes; each brings its CLI family. */
const BUILT_IN_ADAPTERS = Object.keys(PEER_TAKERS).filter((name) => name.startsWith('@ditcache/adapter-'));

const packages = publicPackages();
const manifests = new Map(packages.map((w) => [w.manifest.name, w.manifest]));
const dir = mkdtempSync(join(tmpdir(), 'ditcache-tarballs-'));
let packed: Map<string, Packed>;
beforeAll(() => {
  // A build without nvcc (CI without the CUDA toolkit) may be packed here, but only on purpose.
  const env = cleanEnv(buildInfo().cuda === 'none' ? { DITCACHE_PACK_CPU_ONLY: '1' } : {});
  packed = new Map(pack([...manifests.keys()], dir, env).map((p) => [p.name, p]));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Every file an exports map, main, types or bin names. */
function entryPoints(m: Manifest): string[] {
  const targets = Object.values(m.exports ?? {}).flatMap((t) => (typeof t === 'string' ? [t] : Object.values(t)));
  return [...targets, m.main, m.types, ...Object.values(m.bin ?? {})].filter((p): p is string => !!p).map((p) => p.replace(/^\.\//, ''));
}

describe('the tarball of every public package', () => {
  it('exists for each, and the platform package is among them', () => {
    expect([...packed.keys()].sort()).toEqual([...manifests.keys()].sort());
    expect(manifests.has(PLATFORM_PACKAGE)).toBe(true);
  });

  it.each(packages.map((w) => w.manifest.name))('%s: README, LICENSE, an exports map with every entry point inside, no tests or sources', (name) => {
    const m = manifests.get(name)!;
    const files = packed.get(name)!.files.map((f) => f.path);
    expect(files).toEqual(expect.arrayContaining(['package.json', 'README.md', 'LICENSE']));
    expect(m.exports, `${name} has no exports map`).toBeDefined();
    for (const entry of entryPoints(m)) expect(files, `${name}: ${entry} is not in the tarball`).toContain(entry);
    // A bench/ folder is a benchmark build unless the exports map points into it (the CLI's harness).
    const exportedDirs = entryPoints(m).map((e) => dirname(e));
    const benchBuild = (f: string) => /(^|\/)bench\//.test(f) && !exportedDirs.some((d) => d.split('/').includes('bench') && f.startsWith(`${d}/`));
    const stray = files.filter(
      (f) =>
        /(^|\/)(test|tests|build|\.cache|node_modules)\//.test(f) ||
        benchBuild(f) ||
        /\.tsbuildinfo$|^tsconfig.*\.json$|^vitest\.config/.test(f) ||
        (/\.ts$/.test(f) && !f.endsWith('.d.ts')),
    );
    expect(stray, `${name} ships files it does not need`).toEqual([]);
    if (name !== PLATFORM_PACKAGE) {
      expect(files.filter((f) => f.startsWith('dist/') && f.endsWith('.js')).length, `${name} has no compiled JavaScript`).toBeGreaterThan(0);
      for (const js of files.filter((f) => f.startsWith('dist/') && f.endsWith('.js')))
        expect(files, `${name}: ${js} has no type declarations`).toContain(js.replace(/\.js$/, '.d.ts'));
    }
  });

  it('@ditcache/cuda-runtime: compiled TypeScript, the sources and CMake file of the fallback build, its install script; no build output or benchmark', () => {
    const files = packed.get('@ditcache/cuda-runtime')!.files.map((f) => f.path);
    const outside = files.filter((f) => !/^(dist\/src\/|native\/|CMakeLists\.txt$|scripts\/install\.mjs$|package\.json$|README\.md$|LICENSE$)/.test(f));
    expect(outside).toEqual([]);
    expect(files).toEqual(
      expect.arrayContaining([
        'CMakeLists.txt',
        'scripts/install.mjs',
        'native/binding/module.cc',
        'native/cpu/gemm.cc',
        'native/cuda/gemm.cu',
        'dist/src/platform-packages.js',
      ]),
    );
    expect(files.some((f) => f.endsWith('.node'))).toBe(false);
    expect(manifests.get('@ditcache/cuda-runtime')!.optionalDependencies).toEqual({ [PLATFORM_PACKAGE]: manifests.get(PLATFORM_PACKAGE)!.version });
  });

  it(`${PLATFORM_PACKAGE}: the compiled addon and nothing else, for Linux x64 with glibc`, () => {
    const p = packed.get(PLATFORM_PACKAGE)!;
    expect(p.files.map((f) => f.path).sort()).toEqual(['LICENSE', 'README.md', 'ditcache_native.node', 'package.json']);
    expect(p.files.find((f) => f.path === 'ditcache_native.node')!.size).toBeGreaterThan(1_000_000);
    const m = manifests.get(PLATFORM_PACKAGE)!;
    expect([m.os, m.cpu, m.libc]).toEqual([['linux'], ['x64'], ['glibc']]);
  });

  it('adapters and what they build on take core and the runtime as peers, from the current release up to the next major', () => {
    for (const [name, peers] of Object.entries(PEER_TAKERS)) {
      const m = manifests.get(name)!;
      for (const peer of peers) {
        const version = manifests.get(peer)!.version;
        expect(m.peerDependencies?.[peer], `${name} -> ${peer}`).toBe(version.startsWith('0.') ? `>=${version} <1.0.0` : `^${version}`);
        expect(m.dependencies?.[peer], `${name} has ${peer} as a dependency too`).toBeUndefined();
      }
    }
  });

  it('the built-in adapters bring their CLI family, and ship it', () => {
    for (const name of BUILT_IN_ADAPTERS) {
      const cli = manifests.get(name)!.ditcache?.cli;
      expect(cli, `${name} has no "ditcache": { "cli" } field`).toBe('./dist/cli-family.js');
      expect(packed.get(name)!.files.map((f) => f.path)).toContain('dist/cli-family.js');
    }
  });
});
