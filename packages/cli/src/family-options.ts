// The flags of `ditcache generate` that model families declare (CliFamily.options), so that the
// CLI names no family itself: what a declaration may be, which declarations of several plugins
// fit together, how each option is listed in --help, and which settings a run's flags fill.
import { Option, type Command } from 'commander';

import { CLI_OPTION_TYPES, FAMILY_FLAGS, type CliFamily, type CliOption, type CliOptionType, type FamilyFlag } from '@ditcache/diffusion/cli';

import { UsageError } from './errors.js';
import { OPTION_PARSERS } from './parsers.js';

/** The flags of `generate` every family takes (and commander's own): a family may not declare them. */
export const CLI_GENERATE_FLAGS = [
  '--model',
  '--adapter',
  '--inputs',
  '--height',
  '--width',
  '--steps',
  '--guidance',
  '--seed',
  '--dtype',
  '--weight-dtype',
  '--cache',
  '--output',
  '--save-latents',
  '--stats',
  '--force',
  '--help',
  '--version',
] as const;

/** The settings those flags fill: a family option may not fill them. */
export const CLI_GENERATE_SETTINGS = [
  'model',
  'adapter',
  'inputs',
  'height',
  'width',
  'steps',
  'guidance',
  'seed',
  'dtype',
  'weightDtype',
  'cache',
  'output',
  'saveLatents',
  'stats',
  'force',
] as const;

/** The family settings CliGenerateSettings names, with the kind of value it gives them: an option filling one must give that kind. */
const NAMED_SETTINGS: Readonly<Record<FamilyFlag, 'string' | 'number'>> = {
  prompt: 'string',
  negativePrompt: 'string',
  maxSequenceLength: 'number',
  trueCfgScale: 'number',
  defaultSampleSize: 'number',
  frames: 'number',
  guidance2: 'number',
  fps: 'number',
};

/** What a family that lists the older `flags` (names of FAMILY_FLAGS) takes: these declarations. */
export const LEGACY_FLAG_OPTIONS: Readonly<Record<FamilyFlag, CliOption>> = {
  prompt: { flag: '--prompt', type: 'string', setting: 'prompt', valueName: 'text', description: "the prompt, encoded by the folder's text encoders" },
  negativePrompt: { flag: '--negative-prompt', type: 'string', setting: 'negativePrompt', valueName: 'text', description: 'the negative prompt' },
  maxSequenceLength: { flag: '--max-sequence-length', type: 'positive-integer', setting: 'maxSequenceLength', description: 'tokens of the prompt' },
  trueCfgScale: { flag: '--true-cfg-scale', type: 'number', setting: 'trueCfgScale', valueName: 's', description: 'true classifier-free guidance scale' },
  defaultSampleSize: { flag: '--default-sample-size', type: 'positive-integer', setting: 'defaultSampleSize', description: "diffusers' default_sample_size" },
  frames: { flag: '--frames', type: 'positive-integer', setting: 'frames', description: 'video frames' },
  guidance2: { flag: '--guidance-2', type: 'number', setting: 'guidance2', valueName: 'g', description: 'guidance scale of the second expert' },
  fps: { flag: '--fps', type: 'positive-integer', setting: 'fps', description: 'frames per second of the animation' },
};

/** The options a family takes: its declarations, or those its older `flags` stand for, or none. */
export function familyOptions(family: CliFamily): readonly CliOption[] {
  return family.options ?? (family.flags ?? []).map((name) => LEGACY_FLAG_OPTIONS[name]);
}

const OPTION_KEYS = ['flag', 'type', 'setting', 'description', 'valueName'];
const FLAG = /^--[a-z][a-z0-9]*(-[a-z0-9]+)*$/;
const SETTING = /^[A-Za-z][A-Za-z0-9]*$/;
const VALUE_NAME = /^[A-Za-z][A-Za-z0-9_-]*$/;
const show = (v: unknown) => (typeof v === 'string' ? `"${v}"` : String(v));

/** What is wrong with the older `flags` of a family that declares no `options`. */
function legacyFlagProblems(flags: unknown): string[] {
  if (flags === undefined) return [];
  if (!Array.isArray(flags) || !flags.every((x) => typeof x === 'string')) return ['has flags that are not an array of strings (declare options instead)'];
  const unknown = flags.filter((x) => !(FAMILY_FLAGS as readonly string[]).includes(x));
  return unknown.length
    ? [`names flags the CLI does not have: ${unknown.join(', ')} (the older flags list knows: ${FAMILY_FLAGS.join(', ')}; declare other flags in options)`]
    : [];
}

/** What is wrong with one option declaration (`at` names it, e.g. 'options[1]'); `seen` holds the flags and settings before it. */
function optionProblems(o: unknown, at: string, seen: { flags: Map<string, string>; settings: Map<string, string> }): string[] {
  if (o === null || typeof o !== 'object' || Array.isArray(o)) return [`has ${at} that is not an object { flag, type, setting, description }`];
  const { flag, type, setting, description, valueName } = o as Record<string, unknown>;
  const problems: string[] = [];
  const unknownKeys = Object.keys(o).filter((k) => !OPTION_KEYS.includes(k));
  const name = typeof flag === 'string' ? `${at} (${flag})` : at;
  if (unknownKeys.length) problems.push(`has ${name} with keys the CLI does not know: ${unknownKeys.join(', ')} (it knows: ${OPTION_KEYS.join(', ')})`);
  if (typeof flag !== 'string' || !FLAG.test(flag) || flag.startsWith('--no-')) {
    problems.push(`has ${at} whose flag ${show(flag)} is not a long flag of lower-case words joined by '-', such as "--frames" (and not "--no-...")`);
  } else if ((CLI_GENERATE_FLAGS as readonly string[]).includes(flag)) {
    problems.push(`has ${at} declaring ${flag}, a flag every family takes (those: ${CLI_GENERATE_FLAGS.join(', ')})`);
  } else if (seen.flags.has(flag)) {
    // Said once: the same declaration twice also fills its setting twice.
    return [`declares ${flag} twice (${seen.flags.get(flag)} and ${at})`];
  } else {
    seen.flags.set(flag, at);
  }
  if (!(CLI_OPTION_TYPES as readonly unknown[]).includes(type))
    problems.push(`has ${name} whose type ${show(type)} is not one of: ${CLI_OPTION_TYPES.join(', ')}`);
  if (typeof setting !== 'string' || !SETTING.test(setting) || setting in Object.prototype) {
    problems.push(`has ${name} whose setting ${show(setting)} is not a name such as "frames" (a letter, then letters and digits)`);
  } else if ((CLI_GENERATE_SETTINGS as readonly string[]).includes(setting)) {
    problems.push(
      `has ${name} filling ${setting}, a setting of the flags every family takes (those: ${CLI_GENERATE_SETTINGS.join(', ')}); give the family's own a name of its own`,
    );
  } else if (seen.settings.has(setting)) {
    problems.push(`has ${seen.settings.get(setting)} and ${name} both filling ${setting}`);
  } else {
    seen.settings.set(setting, name);
    const kind = NAMED_SETTINGS[setting as FamilyFlag] as 'string' | 'number' | undefined;
    if (kind && (CLI_OPTION_TYPES as readonly unknown[]).includes(type) && (type === 'string') !== (kind === 'string')) {
      problems.push(
        `has ${name} of type ${show(type)} filling ${setting}, which is a ${kind} (give it type ${kind === 'string' ? '"string"' : '"positive-integer" or "number"'})`,
      );
    }
  }
  if (typeof description !== 'string' || description.trim() === '') problems.push(`has ${name} without a description (a string, shown by generate --help)`);
  if (valueName !== undefined && (typeof valueName !== 'string' || !VALUE_NAME.test(valueName)))
    problems.push(`has ${name} whose valueName ${show(valueName)} is not a word such as "n"`);
  return problems;
}

/** What is wrong with a plugin family's option declarations (`options`, or the older `flags`), or nothing. */
export function optionDeclarationProblems(family: Record<string, unknown>): string[] {
  const { options } = family;
  if (options === undefined) return legacyFlagProblems(family.flags);
  if (!Array.isArray(options)) return ['has options that are not an array (of { flag, type, setting, description })'];
  const seen = { flags: new Map<string, string>(), settings: new Map<string, string>() };
  return options.flatMap((o, i) => optionProblems(o, `options[${i}]`, seen));
}

/** Where commander stores an option's value (its camelCase name: --guidance-2 -> guidance2). */
export const attributeOf = (flag: string): string => new Option(`${flag} <value>`).attributeName();

const TYPE_WORDS: Record<CliOptionType, string> = { 'positive-integer': 'a positive integer', number: 'a number', string: 'text' };

/** A family as a plugin that declares options: its package name and the family. */
export interface OptionSource {
  readonly name: string;
  readonly family: CliFamily;
}

/**
 * Why `plugin`'s options cannot join those of the plugins already loaded (same flag, another
 * type; or two flags the parser cannot tell apart), naming both plugins; or undefined.
 */
export function optionConflict(plugin: OptionSource, loaded: readonly OptionSource[]): string | undefined {
  for (const mine of familyOptions(plugin.family)) {
    for (const other of loaded) {
      for (const theirs of familyOptions(other.family)) {
        const who = `${plugin.name} (${plugin.family.label})`;
        const them = `${other.name} (${other.family.label})`;
        if (theirs.flag === mine.flag && theirs.type !== mine.type) {
          return `${who} declares ${mine.flag} taking ${TYPE_WORDS[mine.type]}, but ${them} declares it taking ${TYPE_WORDS[theirs.type]}: a flag takes one type for every family, so one of the two plugins must rename it`;
        }
        if (theirs.flag !== mine.flag && attributeOf(theirs.flag) === attributeOf(mine.flag)) {
          return `${who} declares ${mine.flag}, which the CLI cannot tell apart from ${theirs.flag} of ${them}: one of the two plugins must rename it`;
        }
      }
    }
  }
  return undefined;
}

/** One flag as `generate` registers it: the families that take it, each with its own help. */
export interface RegisteredOption {
  readonly flag: string;
  readonly type: CliOptionType;
  readonly valueName: string;
  /** Where commander puts its value. */
  readonly attribute: string;
  readonly takenBy: readonly { readonly label: string; readonly description: string }[];
}

const DEFAULT_VALUE_NAMES: Record<CliOptionType, string> = { 'positive-integer': 'n', number: 'x', string: 'text' };

/** The flags the families declare, in the order they are first declared (families in load order); the first declaration names the value. */
export function registeredOptions(families: readonly CliFamily[]): RegisteredOption[] {
  type Entry = Omit<RegisteredOption, 'takenBy'> & { takenBy: { label: string; description: string }[] };
  const byFlag = new Map<string, Entry>();
  for (const family of families) {
    for (const o of familyOptions(family)) {
      const entry: Entry = byFlag.get(o.flag) ?? {
        flag: o.flag,
        type: o.type,
        valueName: o.valueName ?? DEFAULT_VALUE_NAMES[o.type],
        attribute: attributeOf(o.flag),
        takenBy: [],
      };
      entry.takenBy.push({ label: family.label, description: o.description });
      byFlag.set(o.flag, entry);
    }
  }
  return [...byFlag.values()];
}

/** The help of a flag: the families that take it, grouped by description, e.g. 'FLUX.1, Wan: the prompt ...; HiDream-I1: ...'. */
export function optionHelp(option: RegisteredOption): string {
  const groups = new Map<string, string[]>();
  for (const { label, description } of option.takenBy) groups.set(description, [...(groups.get(description) ?? []), label]);
  return [...groups].map(([description, labels]) => `${labels.join(', ')}: ${description}`).join('; ');
}

/**
 * The settings the flags given (by flag) fill for `family`, by its declarations; a flag it does
 * not declare is a usage error naming the family and the flags it takes.
 */
export function familySettings(family: CliFamily, given: ReadonlyMap<string, string | number>): Record<string, string | number> {
  const options = familyOptions(family);
  const foreign = [...given.keys()].filter((flag) => !options.some((o) => o.flag === flag));
  if (foreign.length) {
    const takes = options.length ? `it takes ${options.map((o) => o.flag).join(', ')}` : "it takes none of the families' own flags";
    throw new UsageError(`${foreign.join(', ')} ${foreign.length === 1 ? 'does' : 'do'} not apply to ${family.label} (${takes})`);
  }
  return Object.fromEntries(options.filter((o) => given.has(o.flag)).map((o) => [o.setting, given.get(o.flag) as string | number]));
}

/** The option of `family` that fills `setting`, if it declares one. */
export function optionFilling(family: CliFamily, setting: string): CliOption | undefined {
  return familyOptions(family).find((o) => o.setting === setting);
}

/** The heading of the families' own options in a command's help. */
const FAMILY_OPTIONS_HEADING = 'Options of the model families (each takes only those naming it):';

/** Adds the options `families` declare to `command` (generate, bench), under their heading; returns them for familyFlagsGiven. */
export function addFamilyOptions(command: Command, families: readonly CliFamily[]): RegisteredOption[] {
  const options = registeredOptions(families);
  for (const o of options) {
    command.addOption(new Option(`${o.flag} <${o.valueName}>`, optionHelp(o)).argParser(OPTION_PARSERS[o.type](o.flag)).helpGroup(FAMILY_OPTIONS_HEADING));
  }
  return options;
}

/** The family flags given on the command line, by flag, taken out of `parsed` (which keeps the flags every family takes). */
export function familyFlagsGiven(parsed: Record<string, unknown>, options: readonly RegisteredOption[]): Map<string, string | number> {
  const given = new Map<string, string | number>();
  for (const o of options) {
    const value = parsed[o.attribute] as string | number | undefined;
    delete parsed[o.attribute];
    if (value !== undefined) given.set(o.flag, value);
  }
  return given;
}
