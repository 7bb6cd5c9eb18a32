// The settings of a run over a prompts file, chosen in one order for `bench` and `tune` alike:
// the flags (the families' own ones included), then what the prompts file recommends, then the
// model folder's ditcache.json (as generate reads it), then the defaults.
import { join } from 'node:path';

import { PIPELINE_DEFAULTS_FILE, type ComputeDtype } from '@ditcache/diffusion';
import type { CliFamily, CliGenerateSettings } from '@ditcache/diffusion/cli';

import { UsageError } from '../errors.js';
import { familyOptions, familySettings, optionFilling } from '../family-options.js';
import { withFolderSettings } from '../generate.js';
import type { BenchPrompts } from './prompts.js';
import type { BenchSettings } from './runner.js';

/** The flags every family takes that set a bench run. */
export interface RunSettingsFlags {
  readonly steps?: number;
  readonly height?: number;
  readonly width?: number;
  readonly guidance?: number;
  readonly seed: number;
  readonly repeats: number;
  readonly dtype?: ComputeDtype;
}

/** Steps of a run when neither the flags, the prompts file nor the folder name a count. */
const DEFAULT_STEPS = 28;

/** The settings of text prompts, which bench and tune do not take: their prompts are embeddings in --prompts. */
const TEXT_PROMPT_SETTINGS = ['prompt', 'negativePrompt', 'maxSequenceLength'];

/** A family as bench and tune see it: its options without the text-prompt ones. */
export function withoutTextOptions(family: CliFamily): CliFamily {
  return { ...family, options: familyOptions(family).filter((o) => !TEXT_PROMPT_SETTINGS.includes(o.setting)) };
}

/** The family settings a prompts file gives where the flags leave them out, for the options the family has. */
function promptsFileSettings(family: CliFamily, prompts: BenchPrompts): CliGenerateSettings {
  const takes = (setting: string) => optionFilling(family, setting) !== undefined;
  return {
    height: prompts.height,
    width: prompts.width,
    steps: prompts.steps,
    guidance: prompts.guidance,
    frames: takes('frames') ? prompts.frames : undefined,
    fps: takes('fps') ? prompts.fps : undefined,
  };
}

/** Fills what `given` leaves undefined from `fallback`. */
function fill<T extends object>(given: T, fallback: Partial<T>): T {
  const out = { ...given } as Record<string, unknown>;
  for (const [k, v] of Object.entries(fallback)) if (out[k] === undefined) out[k] = v;
  return out as T;
}

/**
 * The settings of a run of `family` on `model` over `prompts`: `flags`, and the family's own
 * flags by flag (`familyFlags`: --frames, --fps, --guidance-2, ...; one the family does not take
 * is a usage error), each filled where left out as the header says.
 */
export function benchRunSettings(
  family: CliFamily,
  model: string,
  prompts: BenchPrompts,
  flags: RunSettingsFlags,
  familyFlags: ReadonlyMap<string, string | number> = new Map(),
): BenchSettings {
  const given: CliGenerateSettings = {
    height: flags.height,
    width: flags.width,
    steps: flags.steps,
    guidance: flags.guidance,
    ...familySettings(family, familyFlags),
  };
  const chosen = withFolderSettings(family, fill(given, promptsFileSettings(family, prompts)), model);
  const { height, width } = chosen;
  if (height === undefined || width === undefined) {
    throw new UsageError(
      `--height and --width are needed: neither ${prompts.file ?? '--prompts'} nor ${join(model, PIPELINE_DEFAULTS_FILE)} recommends a size`,
    );
  }
  // The family's own settings, each under the setting its option fills.
  const familyOwn = Object.fromEntries(
    familyOptions(family)
      .map((o) => [o.setting, (chosen as Record<string, unknown>)[o.setting]] as const)
      .filter((entry): entry is [string, string | number] => entry[1] !== undefined),
  );
  return {
    steps: chosen.steps ?? DEFAULT_STEPS,
    height,
    width,
    seed: flags.seed,
    repeats: flags.repeats,
    dtype: flags.dtype ?? 'float32',
    ...(chosen.guidance === undefined ? {} : { guidance: chosen.guidance }),
    ...(Object.keys(familyOwn).length ? { family: familyOwn } : {}),
  };
}
