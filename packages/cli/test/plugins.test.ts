// Model families as plugins: the built-in adapters are found beside the CLI through their
// package.json field, as a third party's would be, and --adapter loads one from a folder.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

const root = new URL('../../../', import.meta.url).pathname;
const bin = join(root, 'packages/cli/dist/cli.js');
// Inside the repository, so that a plugin written here resolves @ditcache/* as an installed one would.
const cache = join(root, 'packages/cli/.cache');
mkdirSync(cache, { recursive: true });
const dir = mkdtempSync(join(cache, 'plugins-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function ditcache(...args: string[]) {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf-8', timeout: 120_000, cwd: root });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

interface Listed {
  name: string;
  explicit: boolean;
  label?: string;
  pipelineClasses?: string[];
  transformerClasses?: string[];
  flags?: string[];
  error?: string;
}

/** A package folder with `manifest` as package.json and `module` as its cli-family.js. */
function plugin(name: string, manifest: Record<string, unknown>, module?: string): string {
  const folder = join(dir, name);
  mkdirSync(folder);
  writeFileSync(join(folder, 'package.json'), JSON.stringify({ name, version: '1.2.3', type: 'module', ...manifest }));
  if (module !== undefined) writeFileSync(join(folder, 'cli-family.js'), module);
  return folder;
}

const FAKE_FAMILY = `
export default {
  label: 'Toy', pipelineClasses: ['ToyPipeline'], transformerClasses: ['ToyTransformer'], flags: ['frames'], outputFormats: ['.png'],
  spawn() { throw new Error('not a real model'); }, request() { return {}; }, writeOutput: async () => {}, forward() { throw new Error('not a real model'); },
};`;

describe('ditcache adapters', () => {
  it('finds the built-in families beside the CLI by their package.json field', () => {
    const r = ditcache('adapters', '--json');
    expect(r.status, r.stderr).toBe(0);
    const listed = JSON.parse(r.stdout) as Listed[];
    const builtIn = listed.filter((p) => p.name.startsWith('@ditcache/'));
    expect(builtIn.map((p) => [p.name, p.label, p.pipelineClasses, p.transformerClasses, p.explicit])).toEqual([
      ['@ditcache/adapter-flux', 'FLUX.1', ['FluxPipeline'], ['FluxTransformer2DModel'], false],
      ['@ditcache/adapter-hidream', 'HiDream-I1', ['HiDreamImagePipeline'], ['HiDreamImageTransformer2DModel'], false],
      ['@ditcache/adapter-wan', 'Wan', ['WanPipeline'], ['WanTransformer3DModel'], false],
    ]);
    const text = ditcache('adapters');
    expect(text.stdout).toMatch(/^FLUX\.1: @ditcache\/adapter-flux 0\.1\.0\n {2}pipelines FluxPipeline; transformers FluxTransformer2DModel; writes \.png\n {2}found in /m);
  });

  it('loads a family from a folder with --adapter, listed first', () => {
    const folder = plugin('toy-adapter', { ditcache: { cli: './cli-family.js' } }, FAKE_FAMILY);
    const r = ditcache('adapters', '--adapter', folder, '--json');
    expect(r.status, r.stderr).toBe(0);
    const [first] = JSON.parse(r.stdout) as Listed[];
    expect(first).toMatchObject({ name: 'toy-adapter', explicit: true, label: 'Toy', pipelineClasses: ['ToyPipeline'], flags: ['frames'] });
  });

  it('says what is wrong with a plugin given by --adapter, in one line, exit status 2', () => {
    const cases: [string, RegExp][] = [
      [join(dir, 'missing'), /--adapter .*missing: no such folder/],
      ['no-such-package-anywhere', /--adapter no-such-package-anywhere: neither a folder nor a package installed here or beside the CLI/],
      [plugin('no-field', {}), /package\.json has no "ditcache": \{ "cli": "<module>" \} field/],
      [plugin('not-built', { ditcache: { cli: './dist/cli-family.js' } }), /not-built: its "ditcache\.cli" module .*dist\/cli-family\.js does not exist \(is the package built\?\)/],
      [plugin('no-default', { ditcache: { cli: './cli-family.js' } }, 'export const family = {};'), /the CLI family of .* is missing: the module needs a default export/],
      [
        plugin('bad-family', { ditcache: { cli: './cli-family.js' } }, "export default { label: 'Bad', pipelineClasses: ['X'], transformerClasses: [], outputFormats: ['.png'], flags: ['colour'], request() {} };"),
        /the CLI family of .* names flags the CLI does not have: colour .*; has no spawn\(\) method; has no writeOutput\(\) method; has no loadTransformer\(\) method/,
      ],
    ];
    for (const [spec, message] of cases) {
      const r = ditcache('adapters', '--adapter', spec);
      expect(r.status, r.stderr).toBe(2);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(message);
    }
  });
});

describe('ditcache generate and forward with plugins', () => {
  it('name the supported classes and how to add a family when none runs the folder', () => {
    const model = join(dir, 'unknown-model');
    mkdirSync(model);
    writeFileSync(join(model, 'model_index.json'), JSON.stringify({ _class_name: 'MysteryPipeline' }));
    const r = ditcache('generate', '--model', model, '--inputs', join(root, 'testdata/goldens/flux-tiny/pipeline.safetensors'));
    expect(r.status).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/--model: MysteryPipeline is not supported \(supported: FluxPipeline, HiDreamImagePipeline, WanPipeline.*\); install an adapter package .* or load one with --adapter NAME\|PATH/);
  });

  it('use the family --adapter loads, and refuse the flags it does not take', () => {
    const folder = plugin('toy-generate', { ditcache: { cli: './cli-family.js' } }, FAKE_FAMILY);
    const model = join(dir, 'toy-model');
    mkdirSync(model);
    writeFileSync(join(model, 'model_index.json'), JSON.stringify({ _class_name: 'ToyPipeline' }));
    const refused = ditcache('generate', '--adapter', folder, '--model', model, '--guidance-2', '3');
    expect(refused.status).toBe(2);
    expect(refused.stderr).toMatch(/--guidance-2 does not apply to Toy/);
    const spawned = ditcache('generate', '--adapter', folder, '--model', model, '--frames', '9', '--save-latents', join(dir, 'toy.safetensors'));
    expect(spawned.status).toBe(1);
    expect(spawned.stderr).toMatch(/^ditcache: not a real model$/m);
  });
});
