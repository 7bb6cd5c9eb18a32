// An application that installs only what it needs, from the packed tarballs rather than workspace
// links: core, the runtime (whose prebuilt platform package npm adds as an optional dependency)
// and the FLUX adapter, with diffusion and text-encoders as the adapter's dependencies; every
// other dependency comes from the registry (the npm cache first). npm and the app run with a PATH
// that holds only node and sh, so no step can reach CMake or a compiler. A ten-line app then loads
// a FLUX folder, enables caching and generates, and must give cache-dit's steps and latents. The
// CLI, installed the same way beside a third party's adapter, must find and run that adapter.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { buildInfo, loadSafetensors, relativeL2 } from '@ditcache/cuda-runtime';

import { cleanEnv, npm, pack, repo, type Packed } from './workspace.js';

const FLUX = join(repo, 'testdata/goldens/flux-tiny');
const TRACE = 'F1B0_W2_R0.5';
const PLATFORM_PACKAGE = '@ditcache/cuda-runtime-linux-x64';
/** What the app installs by name, and what arrives as their dependencies; all from tarballs. */
const INSTALLED = ['@ditcache/core', '@ditcache/cuda-runtime', '@ditcache/adapter-flux'];
const DEPENDENCIES = ['@ditcache/diffusion', '@ditcache/text-encoders', PLATFORM_PACKAGE];
/** The CLI's dependencies beyond those, and a third party's adapter to install beside it. */
const OTHER_ADAPTERS = [
  '@ditcache/adapter-chroma',
  '@ditcache/adapter-hidream',
  '@ditcache/adapter-hunyuan-video',
  '@ditcache/adapter-ltx-video',
  '@ditcache/adapter-qwen-image',
  '@ditcache/adapter-wan',
];
const CLI_DEPENDENCIES = [...OTHER_ADAPTERS, '@ditcache/metrics'];
const THIRD_PARTY = 'ditcache-adapter-sd3';
const SD3 = join(repo, 'examples/adapter-sd3/test/goldens/sd3-tiny');
const SD3_TRACE = 'F1B0_W2_R0.0518';

const APP = `import { enableCache, summary, supportedPipelines } from '@ditcache/core';
import { FluxPipeline } from '@ditcache/adapter-flux';
import { buildInfo, loadSafetensors, nativeAddon, saveSafetensors } from '@ditcache/cuda-runtime';

const [model, out, config, request] = process.argv.slice(2);
const inputs = loadSafetensors(\`\${model}/pipeline.safetensors\`);
const pipe = FluxPipeline.fromPretrained(model);
enableCache(pipe, JSON.parse(config));
const { latents } = pipe.generate({ promptEmbeds: inputs.prompt_embeds, pooledPromptEmbeds: inputs.pooled_prompt_embeds, latents: inputs.latents_in, ...JSON.parse(request) });
saveSafetensors(out, { latents_out: latents });
console.log(JSON.stringify({ addon: nativeAddon(), cuda: buildInfo().cuda, cachedSteps: summary(pipe, { print: false }).contexts[0].cachedSteps, pipelines: supportedPipelines() }));
`;

const work = mkdtempSync(join(tmpdir(), 'ditcache-install-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const tarballs = join(work, 'tarballs');
/** A PATH with node and sh only: what npm needs to run lifecycle scripts, and nothing that compiles. */
const bareBin = join(work, 'bin');
const bareEnv = cleanEnv({ PATH: bareBin });
let packed: Map<string, Packed>;

beforeAll(() => {
  mkdirSync(tarballs);
  mkdirSync(bareBin);
  symlinkSync(process.execPath, join(bareBin, 'node'));
  symlinkSync('/bin/sh', join(bareBin, 'sh'));
  const env = cleanEnv(buildInfo().cuda === 'none' ? { DITCACHE_PACK_CPU_ONLY: '1' } : {});
  packed = new Map(pack([...INSTALLED, ...DEPENDENCIES, ...CLI_DEPENDENCIES, '@ditcache/cli', THIRD_PARTY], tarballs, env).map((p) => [p.name, p]));
});

const tarball = (name: string) => join(tarballs, packed.get(name)!.filename);

/** An empty project whose dependencies on the packed packages `resolved` resolve to their tarballs, as they would to the registry. */
function emptyApp(name: string, resolved = DEPENDENCIES): string {
  const dir = join(work, name);
  mkdirSync(dir);
  const overrides = Object.fromEntries(resolved.map((n) => [n, `file:${tarball(n)}`]));
  writeFileSync(join(dir, 'package.json'), `${JSON.stringify({ name, private: true, type: 'module', overrides }, null, 2)}\n`);
  return dir;
}

/** What npm placed under node_modules/@ditcache. */
const ditcachePackages = (app: string) =>
  readdirSync(join(app, 'node_modules/@ditcache'))
    .map((n) => `@ditcache/${n}`)
    .sort();

describe('an application installed from the tarballs', () => {
  it('installs with no CMake, compiler or nvcc, uses the prebuilt binary, and generates what cache-dit does', () => {
    const app = emptyApp('app');
    npm(['install', '--prefer-offline', '--no-audit', '--no-fund', ...INSTALLED.map(tarball)], { cwd: app, env: bareEnv });

    expect(ditcachePackages(app), 'only the packages the app asked for and their dependencies').toEqual([...INSTALLED, ...DEPENDENCIES].sort());
    for (const absent of OTHER_ADAPTERS) expect(existsSync(join(app, 'node_modules', absent)), `${absent} was installed`).toBe(false);
    expect(existsSync(join(app, 'node_modules/@ditcache/cuda-runtime/build')), 'the install script compiled the addon').toBe(false);

    writeFileSync(join(app, 'app.mjs'), APP);
    const meta = JSON.parse(readFileSync(join(FLUX, 'meta.json'), 'utf-8')) as {
      height: number;
      width: number;
      num_inference_steps: number;
      guidance_scale: number;
      cache_traces: Record<string, { config: object; stats: { cached_steps: number[] }[] }>;
    };
    const trace = meta.cache_traces[TRACE];
    const request = { height: meta.height, width: meta.width, numInferenceSteps: meta.num_inference_steps, guidanceScale: meta.guidance_scale };
    const out = join(work, 'latents.safetensors');
    const run = spawnSync(process.execPath, ['app.mjs', FLUX, out, JSON.stringify(trace.config), JSON.stringify(request)], {
      cwd: app,
      env: bareEnv,
      encoding: 'utf-8',
      timeout: 120_000,
    });
    expect(run.status, run.stderr).toBe(0);
    const report = JSON.parse(run.stdout) as { addon: { path: string; source: string }; cuda: string; cachedSteps: number[]; pipelines: string[] };

    expect(report.addon).toEqual({ path: join(app, 'node_modules', PLATFORM_PACKAGE, 'ditcache_native.node'), source: 'platform-package' });
    expect(report.cuda, 'the shipped binary is the build, CUDA kernels and all').toBe(buildInfo().cuda);
    expect(report.pipelines, 'no adapter but FLUX registered itself').toEqual(['FluxPipeline']);
    expect(report.cachedSteps).toEqual(trace.stats[0].cached_steps);
    const want = loadSafetensors(join(FLUX, 'cache_traces.safetensors'))[`${TRACE}.latents_out`];
    expect(relativeL2(loadSafetensors(out).latents_out, want)).toBeLessThan(1e-4);
  });

  it("the CLI finds the built-in adapters and a third party's installed beside it, and runs that one", () => {
    const app = emptyApp('cli-app', [...INSTALLED, ...DEPENDENCIES, ...CLI_DEPENDENCIES]);
    npm(['install', '--prefer-offline', '--no-audit', '--no-fund', tarball('@ditcache/cli'), tarball(THIRD_PARTY)], { cwd: app, env: bareEnv });
    const ditcache = (...args: string[]) =>
      spawnSync(join(app, 'node_modules/.bin/ditcache'), args, { cwd: app, env: bareEnv, encoding: 'utf-8', timeout: 120_000 });

    const listed = ditcache('adapters', '--json');
    expect(listed.status, listed.stderr).toBe(0);
    const plugins = JSON.parse(listed.stdout) as { name: string; dir: string; explicit: boolean; error?: string }[];
    expect(plugins.map((p) => [p.name, p.explicit, p.error])).toEqual(
      [...OTHER_ADAPTERS, '@ditcache/adapter-flux']
        .sort()
        .concat(THIRD_PARTY)
        .map((name) => [name, false, undefined]),
    );
    expect(plugins.every((p) => p.dir.startsWith(join(app, 'node_modules')))).toBe(true);

    const trace = (
      JSON.parse(readFileSync(join(SD3, 'meta.json'), 'utf-8')) as { cache_traces: Record<string, { config: object; stats: { cached_steps: number[] }[] }> }
    ).cache_traces[SD3_TRACE];
    const [stats, latents] = [join(work, 'sd3.json'), join(work, 'sd3.safetensors')];
    const run = ditcache(
      'generate',
      '--model',
      SD3,
      '--inputs',
      join(SD3, 'pipeline.safetensors'),
      '--height',
      '16',
      '--width',
      '24',
      '--steps',
      '28',
      '--guidance',
      '5',
      '--cache',
      JSON.stringify(trace.config),
      '--stats',
      stats,
      '--save-latents',
      latents,
    );
    expect(run.status, run.stderr).toBe(0);
    expect((JSON.parse(readFileSync(stats, 'utf-8')) as { cachedSteps: number[] }[])[0].cachedSteps).toEqual(trace.stats[0].cached_steps);
    const want = loadSafetensors(join(SD3, 'cache_traces.safetensors'))[`${SD3_TRACE}.latents_out`];
    expect(relativeL2(loadSafetensors(latents).latents_out, want)).toBeLessThan(1e-4);
  });

  it('without the platform package, says how to fix it: the loader, and the install script when it cannot build', () => {
    const app = emptyApp('no-prebuilt');
    npm(['install', '--prefer-offline', '--no-audit', '--no-fund', '--omit=optional', '--ignore-scripts', ...INSTALLED.map(tarball)], {
      cwd: app,
      env: bareEnv,
    });
    expect(ditcachePackages(app)).not.toContain(PLATFORM_PACKAGE);

    const load = spawnSync(process.execPath, ['--input-type=module', '-e', "await import('@ditcache/cuda-runtime')"], {
      cwd: app,
      env: bareEnv,
      encoding: 'utf-8',
    });
    expect(load.status).not.toBe(0);
    expect(load.stderr).toMatch(
      /the native addon is missing: no local build at .*build\/Release\/ditcache_native\.node, and the prebuilt package @ditcache\/cuda-runtime-linux-x64 is not installed/,
    );
    expect(load.stderr).toMatch(/npm install --save-dev cmake-js@8\.0\.0 node-addon-api@8\.9\.2/);

    const rebuild = npm(['rebuild', '@ditcache/cuda-runtime'], { cwd: app, env: bareEnv, allowFailure: true });
    expect(rebuild.status).not.toBe(0);
    expect(`${rebuild.stdout}${rebuild.stderr}`).toMatch(
      /the prebuilt addon @ditcache\/cuda-runtime-linux-x64 is not installed .*, and building it from source needs the cmake-js package, the node-addon-api package, CMake >= 3\.18 \(no `cmake` on the PATH\), a C\+\+17 compiler/,
    );
  });
});
