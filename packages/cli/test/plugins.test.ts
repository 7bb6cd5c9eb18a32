// Model families as plugins: the built-in adapters are found beside the CLI through their
// package.json field, as a third party's would be, and --adapter loads one from a folder.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { readPngText } from '../src/png-text.js';

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
      ['@ditcache/adapter-chroma', 'Chroma', ['ChromaPipeline'], ['ChromaTransformer2DModel'], false],
      ['@ditcache/adapter-flux', 'FLUX.1', ['FluxPipeline'], ['FluxTransformer2DModel'], false],
      ['@ditcache/adapter-hidream', 'HiDream-I1', ['HiDreamImagePipeline'], ['HiDreamImageTransformer2DModel'], false],
      ['@ditcache/adapter-hunyuan-video', 'HunyuanVideo', ['HunyuanVideoPipeline'], ['HunyuanVideoTransformer3DModel'], false],
      ['@ditcache/adapter-ltx-video', 'LTX-Video', ['LTXPipeline'], ['LTXVideoTransformer3DModel'], false],
      ['@ditcache/adapter-qwen-image', 'Qwen-Image', ['QwenImagePipeline'], ['QwenImageTransformer2DModel'], false],
      ['@ditcache/adapter-wan', 'Wan', ['WanPipeline'], ['WanTransformer3DModel'], false],
    ]);
    const text = ditcache('adapters');
    expect(text.stdout).toMatch(
      /^FLUX\.1: @ditcache\/adapter-flux 0\.1\.0\n {2}pipelines FluxPipeline; transformers FluxTransformer2DModel; writes \.png\n {2}found in /m,
    );
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
      [
        plugin('not-built', { ditcache: { cli: './dist/cli-family.js' } }),
        /not-built: its "ditcache\.cli" module .*dist\/cli-family\.js does not exist \(is the package built\?\)/,
      ],
      [
        plugin('no-default', { ditcache: { cli: './cli-family.js' } }, 'export const family = {};'),
        /the CLI family of .* is missing: the module needs a default export/,
      ],
      [
        plugin(
          'bad-family',
          { ditcache: { cli: './cli-family.js' } },
          "export default { label: 'Bad', pipelineClasses: ['X'], transformerClasses: [], outputFormats: ['.png'], flags: ['colour'], request() {} };",
        ),
        /the CLI family of .* names flags the CLI does not have: colour .*; has no spawn\(\) method; has no writeOutput\(\) method; has no loadTransformer\(\) method/,
      ],
      [
        plugin(
          'bad-options',
          { ditcache: { cli: './cli-family.js' } },
          FAKE_FAMILY.replace(
            "flags: ['frames']",
            "options: [{ flag: '--frames', type: 'int', setting: 'frames', description: 'frames' }, { flag: '--seed', type: 'number', setting: 'noise', description: 'x' }]",
          ),
        ),
        /the CLI family of .* has options\[0\] \(--frames\) whose type "int" is not one of: positive-integer, number, string; has options\[1\] declaring --seed, a flag every family takes \(those: --model, .*\)$/m,
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
    expect(r.stderr).toMatch(
      /--model: MysteryPipeline is not supported \(supported: ChromaPipeline, FluxPipeline, HiDreamImagePipeline, HunyuanVideoPipeline, LTXPipeline, QwenImagePipeline, WanPipeline.*\); install an adapter package .* or load one with --adapter NAME\|PATH/,
    );
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

/** A family that declares its own options and records the settings its request() gets in seen.json beside it; it "generates" a 1x1 PNG. */
function brushFamily(png: string): string {
  return `
import { writeFileSync } from 'node:fs';
export default {
  label: 'Brush', pipelineClasses: ['BrushPipeline'], transformerClasses: ['BrushTransformer'], outputFormats: ['.png'],
  options: [
    { flag: '--frames', type: 'positive-integer', setting: 'numFrames', description: 'frames of the brush animation' },
    { flag: '--strength', type: 'number', setting: 'strength', valueName: 's', description: 'how far from the input image' },
  ],
  async spawn() {
    return { generate: async () => ({ latents: { shape: [1], dispose() {} }, seed: 7 }), close: async () => {} };
  },
  request(inputs, file, settings) {
    writeFileSync(new URL('./seen.json', import.meta.url), JSON.stringify(settings));
    return {};
  },
  writeOutput: async (result, path) => writeFileSync(path, Buffer.from('${png}', 'base64')),
  loadTransformer() { throw new Error('not a real model'); },
};`;
}

/** A 1x1 PNG, as base64. */
const PIXEL = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAAAAAA6fptVAAAACklEQVR4nGNgAAAAAgABSK+kcQAAAABJRU5ErkJggg==';

/** Help text with its line wrapping undone. */
const unwrapped = (text: string) => text.replace(/\s+/g, ' ');

describe('the options families declare', () => {
  it("generate --help lists each built-in family's options with the families that take them", () => {
    const r = ditcache('generate', '--help');
    expect(r.status, r.stderr).toBe(0);
    const help = unwrapped(r.stdout);
    expect(help).toMatch(
      /Options of the model families \(each takes only those naming it\): (--frames <n> [^-]*)?--prompt <text> Chroma, FLUX\.1, HiDream-I1, HunyuanVideo, LTX-Video, Qwen-Image, Wan(, Stable Diffusion 3)?: the prompt, encoded by the folder's text encoders/,
    );
    expect(help).toMatch(
      / --negative-prompt <text> Chroma, LTX-Video: the negative prompt of classifier-free guidance \(default "", with --guidance above 1\); FLUX\.1: the negative prompt of true CFG \(with --true-cfg-scale above 1\); .*; Wan(, Stable Diffusion 3)?: the negative prompt of CFG \(default ""\)[ ;]/,
    );
    expect(help).toMatch(/ --true-cfg-scale <s> FLUX\.1, HunyuanVideo: true classifier-free guidance /);
    expect(help).toMatch(/ --default-sample-size <n> HiDream-I1: the latent side /);
    expect(help).toMatch(
      / --frames <n> HunyuanVideo, Wan: video frames, 4k \+ 1; LTX-Video: video frames, 8k \+ 1 .* --fps <n> HunyuanVideo, Wan: frames per second of the animation; LTX-Video: LTXPipeline's frame_rate/,
    );
    expect(help).toMatch(
      / --output <file> write the image or the video, in a format of the model's family \(Chroma, FLUX\.1, HiDream-I1, Qwen-Image(, Stable Diffusion 3)?: \.png; HunyuanVideo, LTX-Video, Wan: \.webp, \.gif\)/,
    );
    // Each once: the families share one flag.
    expect(help.match(/ --prompt </g)).toHaveLength(1);
  });

  it('a plugin adds flags of its own: listed in help with --adapter, passed to its request() under its setting names, kept in the PNG', () => {
    const folder = plugin('brush-adapter', { ditcache: { cli: './cli-family.js' } }, brushFamily(PIXEL));
    const help = unwrapped(ditcache('generate', '--adapter', folder, '--help').stdout);
    expect(help).toMatch(/ --frames <n> Brush: frames of the brush animation; HunyuanVideo, Wan: video frames, 4k \+ 1; LTX-Video: /);
    expect(help).toMatch(/ --strength <s> Brush: how far from the input image/);
    // Without the plugin the flag does not exist.
    expect(unwrapped(ditcache('generate', '--help').stdout)).not.toMatch(/--strength/);
    const model = join(dir, 'brush-model');
    mkdirSync(model);
    writeFileSync(join(model, 'model_index.json'), JSON.stringify({ _class_name: 'BrushPipeline' }));
    const unknown = ditcache('generate', '--model', model, '--strength', '0.5', '--output', join(dir, 'never.png'));
    expect(unknown.status).toBe(2);
    expect(unknown.stderr).toMatch(/unknown option '--strength'/);

    const out = join(dir, 'brush.png');
    const r = ditcache('generate', '--adapter', folder, '--model', model, '--frames', '9', '--strength', '0.5', '--output', out);
    expect(r.status, r.stderr).toBe(0);
    const seen = JSON.parse(readFileSync(join(folder, 'seen.json'), 'utf-8')) as Record<string, unknown>;
    expect(seen).toMatchObject({ numFrames: 9, strength: 0.5 });
    // Only the settings its options fill: not commander's name of --frames, nor the others' settings.
    expect(Object.keys(seen).filter((k) => ['frames', 'prompt', 'guidance2'].includes(k))).toEqual([]);
    expect(readPngText(readFileSync(out))).toMatchObject({ family: 'Brush', strength: '0.5', num_frames: '9', seed: '7' });

    const bad = ditcache('generate', '--adapter', folder, '--model', model, '--strength', 'strong', '--output', out);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/--strength must be a number/);
    const foreign = ditcache(
      'generate',
      '--adapter',
      folder,
      '--model',
      join(root, 'testdata/goldens/flux-tiny'),
      '--strength',
      '1',
      '--stats',
      join(dir, 'never.json'),
    );
    expect(foreign.status).toBe(2);
    expect(foreign.stderr.trim().split('\n')).toHaveLength(1);
    expect(foreign.stderr).toMatch(
      /^ditcache: --strength does not apply to FLUX\.1 \(it takes --prompt, --negative-prompt, --max-sequence-length, --true-cfg-scale\)$/m,
    );
  });

  it('a flag declared with another type by a plugin loaded before is an error naming both plugins', () => {
    const clash = plugin(
      'clash-adapter',
      { ditcache: { cli: './cli-family.js' } },
      FAKE_FAMILY.replace("label: 'Toy'", "label: 'Clash'")
        .replace(/ToyPipeline/g, 'ClashPipeline')
        .replace("flags: ['frames']", "options: [{ flag: '--frames', type: 'string', setting: 'frameNames', description: 'named frames' }]"),
    );
    // Given with --adapter, it comes first: the built-in Wan family, found after it, is the one left out, and says why.
    const r = ditcache('adapters', '--adapter', clash, '--json');
    expect(r.status, r.stderr).toBe(0);
    const wan = (JSON.parse(r.stdout) as Listed[]).find((p) => p.name === '@ditcache/adapter-wan');
    expect(wan?.error).toMatch(
      /^@ditcache\/adapter-wan \(Wan\) declares --frames taking a positive integer, but clash-adapter \(Clash\) declares it taking text: a flag takes one type for every family, so one of the two plugins must rename it$/,
    );
    // Two plugins given with --adapter: the second is a usage error.
    const brush = plugin('brush-first', { ditcache: { cli: './cli-family.js' } }, brushFamily(PIXEL));
    const both = ditcache('adapters', '--adapter', brush, '--adapter', clash);
    expect(both.status).toBe(2);
    expect(both.stderr.trim().split('\n')).toHaveLength(1);
    expect(both.stderr).toMatch(
      /^ditcache: --adapter .*clash-adapter: clash-adapter \(Clash\) declares --frames taking text, but brush-first \(Brush\) declares it taking a positive integer/,
    );
  });

  it('a plugin listing the older flags takes the flags they name, with their old types', () => {
    const folder = plugin('toy-options', { ditcache: { cli: './cli-family.js' } }, FAKE_FAMILY);
    const [first] = JSON.parse(ditcache('adapters', '--adapter', folder, '--json').stdout) as (Listed & { options: unknown[] })[];
    expect(first.options).toEqual([{ flag: '--frames', type: 'positive-integer', setting: 'frames', description: 'video frames' }]);
    expect(unwrapped(ditcache('generate', '--adapter', folder, '--help').stdout)).toMatch(
      / --frames <n> Toy: video frames; HunyuanVideo, Wan: video frames, 4k \+ 1; LTX-Video: /,
    );
  });
});
