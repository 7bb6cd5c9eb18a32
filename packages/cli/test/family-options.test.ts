// The generate flags families declare, in process: what a declaration may be, which declarations of two plugins clash, the help each flag gets, and the settings a run's flags fill.
import type { CliFamily, CliOption } from '@ditcache/diffusion/cli';
import { describe, expect, it } from 'vitest';

import { familyOptions, familySettings, optionConflict, optionDeclarationProblems, optionHelp, registeredOptions } from '../src/family-options.js';
import { generateAdapterSpecs } from '../src/program.js';

const frames: CliOption = { flag: '--frames', type: 'positive-integer', setting: 'frames', description: 'video frames, 4k + 1' };
const strength: CliOption = { flag: '--strength', type: 'number', setting: 'strength', valueName: 's', description: 'how far from the input image' };

/** A family with these options (the members the options code reads). */
const family = (label: string, options?: readonly CliOption[], flags?: readonly string[]): CliFamily =>
  ({ label, pipelineClasses: [], transformerClasses: [], outputFormats: ['.png'], options, flags }) as unknown as CliFamily;

describe('option declarations', () => {
  it('accept well-formed options, the older flags, and neither', () => {
    expect(optionDeclarationProblems({ options: [frames, strength] })).toEqual([]);
    expect(optionDeclarationProblems({ flags: ['prompt', 'guidance2'] })).toEqual([]);
    expect(optionDeclarationProblems({})).toEqual([]);
  });

  it('name each wrong key or value and list the valid ones', () => {
    const problems = optionDeclarationProblems({
      options: [
        frames,
        { ...frames },
        { flag: 'colour', type: 'string', setting: 'colour', description: 'x' },
        { flag: '--height', type: 'positive-integer', setting: 'tall', description: 'x' },
        { flag: '--no-cache', type: 'string', setting: 'noCache', description: 'x' },
        { flag: '--strength', type: 'float', setting: 'strength', description: 'x', help: 'typo' },
        { flag: '--seedling', type: 'number', setting: 'seed', description: 'x' },
        { flag: '--frame-count', type: 'positive-integer', setting: 'frames', description: 'x' },
        { flag: '--negative', type: 'number', setting: 'negativePrompt', description: 'x' },
        { flag: '--tone', type: 'string', setting: 'tone-name', description: '' },
        { flag: '--mood', type: 'string', setting: 'mood', description: 'x', valueName: '<m>' },
        'frames',
      ],
    });
    const expected = [
      /^declares --frames twice \(options\[0\] and options\[1\]\)$/,
      /^has options\[2\] whose flag "colour" is not a long flag of lower-case words joined by '-', such as "--frames"/,
      /^has options\[3\] declaring --height, a flag every family takes \(those: --model, .*--seed.*\)$/,
      /^has options\[4\] whose flag "--no-cache" is not a long flag/,
      /^has options\[5\] \(--strength\) with keys the CLI does not know: help \(it knows: flag, type, setting, description, valueName\)$/,
      /^has options\[5\] \(--strength\) whose type "float" is not one of: positive-integer, number, string$/,
      /^has options\[6\] \(--seedling\) filling seed, a setting of the flags every family takes \(those: model, .*seed.*\)/,
      /^has options\[0\] \(--frames\) and options\[7\] \(--frame-count\) both filling frames$/,
      /^has options\[8\] \(--negative\) of type "number" filling negativePrompt, which is a string \(give it type "string"\)$/,
      /^has options\[9\] \(--tone\) whose setting "tone-name" is not a name such as "frames"/,
      /^has options\[9\] \(--tone\) without a description \(a string, shown by generate --help\)$/,
      /^has options\[10\] \(--mood\) whose valueName "<m>" is not a word such as "n"$/,
      /^has options\[11\] that is not an object \{ flag, type, setting, description \}$/,
    ];
    for (const e of expected)
      expect(
        problems.some((p) => e.test(p)),
        `${e} in:\n${problems.join('\n')}`,
      ).toBe(true);
    expect(problems).toHaveLength(expected.length);
  });

  it('say what is wrong with options that are not a list, or older flags the CLI never had', () => {
    expect(optionDeclarationProblems({ options: { frames } })).toEqual(['has options that are not an array (of { flag, type, setting, description })']);
    expect(optionDeclarationProblems({ flags: 'frames' })).toEqual(['has flags that are not an array of strings (declare options instead)']);
    expect(optionDeclarationProblems({ flags: ['frames', 'colour'] })[0]).toMatch(
      /^names flags the CLI does not have: colour \(the older flags list knows: prompt, negativePrompt, .*fps; declare other flags in options\)$/,
    );
  });
});

describe('options of several plugins', () => {
  const wan = { name: '@ditcache/adapter-wan', family: family('Wan', [frames]) };

  it('share a flag declared with the same type, whatever the help or the setting', () => {
    const other = { name: 'toy', family: family('Toy', [{ ...frames, setting: 'numFrames', description: 'frames of the toy' }]) };
    expect(optionConflict(other, [wan])).toBeUndefined();
  });

  it('clash on a flag of another type, naming both plugins and both types', () => {
    const clash = { name: 'clash-adapter', family: family('Clash', [{ ...frames, type: 'string' }]) };
    expect(optionConflict(clash, [wan])).toBe(
      'clash-adapter (Clash) declares --frames taking text, but @ditcache/adapter-wan (Wan) declares it taking a positive integer: a flag takes one type for every family, so one of the two plugins must rename it',
    );
  });

  it('clash on two flags the parser cannot tell apart', () => {
    const guidance = { name: 'g', family: family('G', [{ flag: '--guidance-2', type: 'number', setting: 'guidance2', description: 'x' }]) };
    const near = { name: 'near', family: family('Near', [{ flag: '--guidance2', type: 'number', setting: 'g2', description: 'x' }]) };
    expect(optionConflict(near, [guidance])).toMatch(/^near \(Near\) declares --guidance2, which the CLI cannot tell apart from --guidance-2 of g \(G\)/);
  });

  it('are listed once per flag, with the families that take it grouped by their help', () => {
    const families = [
      family('FLUX.1', [{ flag: '--prompt', type: 'string', setting: 'prompt', valueName: 'text', description: 'the prompt' }]),
      family('Wan', [{ flag: '--prompt', type: 'string', setting: 'prompt', description: 'the prompt' }, frames]),
      family('Toy', [{ ...frames, description: 'frames of the toy' }, strength]),
      family('SD3', [{ flag: '--prompt', type: 'string', setting: 'prompt', description: 'the prompt' }]),
    ];
    const registered = registeredOptions(families);
    expect(registered.map((o) => [o.flag, o.valueName, o.attribute])).toEqual([
      ['--prompt', 'text', 'prompt'],
      ['--frames', 'n', 'frames'],
      ['--strength', 's', 'strength'],
    ]);
    expect(registered.map(optionHelp)).toEqual([
      'FLUX.1, Wan, SD3: the prompt',
      'Wan: video frames, 4k + 1; Toy: frames of the toy',
      'Toy: how far from the input image',
    ]);
  });
});

describe('the settings of a run', () => {
  it("are those the running family's options fill, by its own setting names", () => {
    const toy = family('Toy', [{ ...frames, setting: 'numFrames' }, strength]);
    expect(
      familySettings(
        toy,
        new Map<string, string | number>([
          ['--frames', 9],
          ['--strength', 0.5],
        ]),
      ),
    ).toEqual({ numFrames: 9, strength: 0.5 });
    expect(familySettings(toy, new Map())).toEqual({});
  });

  it("refuse another family's flag, naming the family and the flags it takes", () => {
    const toy = family('Toy', [frames]);
    expect(() => familySettings(toy, new Map([['--prompt', 'a cat']]))).toThrow(/^--prompt does not apply to Toy \(it takes --frames\)$/);
    expect(() =>
      familySettings(
        family('Bare', []),
        new Map<string, string | number>([
          ['--prompt', 'a'],
          ['--fps', 8],
        ]),
      ),
    ).toThrow(/^--prompt, --fps do not apply to Bare \(it takes none of the families' own flags\)$/);
  });

  it('of a family listing the older flags are the settings those flags always filled', () => {
    const legacy = family('Legacy', undefined, ['frames', 'guidance2']);
    expect(familyOptions(legacy).map((o) => [o.flag, o.type, o.setting])).toEqual([
      ['--frames', 'positive-integer', 'frames'],
      ['--guidance-2', 'number', 'guidance2'],
    ]);
    expect(familySettings(legacy, new Map([['--guidance-2', 3]]))).toEqual({ guidance2: 3 });
  });
});

describe('--adapter before parsing', () => {
  it('is read for generate and bench and their help only, up to --', () => {
    expect(generateAdapterSpecs(['generate', '--adapter', 'a', '--model', 'm', '--adapter=./b', '--', '--adapter', 'c'])).toEqual(['a', './b']);
    expect(generateAdapterSpecs(['help', 'generate'])).toEqual([]);
    // bench takes the families' flags too.
    expect(generateAdapterSpecs(['bench', '--adapter', 'a', '--frames', '9'])).toEqual(['a']);
    expect(generateAdapterSpecs(['help', 'bench'])).toEqual([]);
    expect(generateAdapterSpecs(['generate', '--help', '--adapter', 'x'])).toEqual(['x']);
    // A trailing --adapter without its value is left to commander to report.
    expect(generateAdapterSpecs(['generate', '--adapter'])).toEqual([]);
    expect(generateAdapterSpecs(['adapters', '--adapter', 'a'])).toBeUndefined();
    expect(generateAdapterSpecs(['--version'])).toBeUndefined();
    expect(generateAdapterSpecs([])).toBeUndefined();
  });
});
