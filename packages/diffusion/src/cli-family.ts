// What the `ditcache` command line needs of a model family, so that an adapter package can
// bring its own CLI support as a plugin: its package.json points at a module whose default
// export is a CliFamily (`"ditcache": { "cli": "./dist/cli-family.js" }`), and the CLI finds it
// there, beside itself or through `--adapter`. It lives here, below both the CLI and the
// adapters, because the CLI depends on the built-in adapters.
import { join } from 'node:path';

import type { Tensor } from '@ditcache/cuda-runtime';

import { missingFolders, readJsonObject, typedConfig } from './io/config-file.js';
import { savePng } from './io/image.js';
import type { LoadOptions } from './io/weights.js';
import type { RemotePipeline } from './pipeline/worker/remote-pipeline.js';

export { encodePromptBatches, sharedPerPrompt, type CliPromptBatch } from './cli-prompt-batch.js';

/**
 * The family-specific flags of `ditcache generate` before families declared their own options
 * (`CliFamily.options`): a family that still lists them in `CliFamily.flags` gets the CLI's
 * declarations of these flags.
 * @deprecated declare the flags in `CliFamily.options`.
 */
export const FAMILY_FLAGS = ['prompt', 'negativePrompt', 'maxSequenceLength', 'trueCfgScale', 'defaultSampleSize', 'frames', 'guidance2', 'fps'] as const;
/** @deprecated see FAMILY_FLAGS. */
export type FamilyFlag = (typeof FAMILY_FLAGS)[number];

/** What the value of a family option must be; the CLI parses it, and a value that is not one is a usage error naming the flag. */
export const CLI_OPTION_TYPES = ['positive-integer', 'number', 'string'] as const;
/** 'positive-integer': decimal digits, above 0; 'number': a finite number; 'string': any text. */
export type CliOptionType = (typeof CLI_OPTION_TYPES)[number];

/**
 * A flag of `ditcache generate` that a family brings: the CLI registers the options of every
 * family it loads, lists them in `generate --help` with the families that take each, and refuses
 * one for a family that does not declare it. Several families may declare the same flag, with
 * the same type; its value reaches the running family's `request()`, `checkModel()` and
 * `writeOutput()` as `settings[setting]`.
 */
export interface CliOption {
  /** The flag: lower-case words joined by '-', e.g. '--frames', '--guidance-2'. */
  readonly flag: string;
  /** What its value must be. */
  readonly type: CliOptionType;
  /**
   * The setting it fills, e.g. 'frames': one of CliGenerateSettings' family settings (with its
   * type: prompt and negativePrompt are strings, the others numbers), or a name of the family's
   * own (read it as `(settings as CliGenerateSettings & { strength?: number }).strength`).
   */
  readonly setting: keyof CliGenerateSettings | (string & {});
  /** Its help for this family, e.g. 'video frames, 4k + 1'; `generate --help` puts the families that take it before it. */
  readonly description: string;
  /** The value's name in help, e.g. 'g' for `--guidance-2 <g>` (default: n, x or text, by type). */
  readonly valueName?: string;
}

/**
 * The text-prompt flags of a family whose folder carries its own text encoders: `--prompt`,
 * `--negative-prompt` and `--max-sequence-length`, declared once with the same types and settings
 * for every such family; only what the negative prompt means and which encoder counts the tokens
 * differ, and the family says them.
 */
export function textPromptOptions(help: { readonly negativePrompt: string; readonly maxSequenceLength: string }): CliOption[] {
  return [
    {
      flag: '--prompt',
      type: 'string',
      setting: 'prompt',
      valueName: 'text',
      description: "the prompt, encoded by the folder's text encoders (then --inputs may hold only latents_in)",
    },
    { flag: '--negative-prompt', type: 'string', setting: 'negativePrompt', valueName: 'text', description: help.negativePrompt },
    { flag: '--max-sequence-length', type: 'positive-integer', setting: 'maxSequenceLength', description: help.maxSequenceLength },
  ];
}

/**
 * The flags of `ditcache generate` a family turns into its pipeline's request: those every family
 * takes, and the settings that families' options (CliOption) fill, the common ones named here. A
 * setting whose option the running family does not declare stays undefined.
 */
export interface CliGenerateSettings {
  /** Every family: image size, denoising steps, guidance scale, seed of the noise when --inputs has no latents_in. */
  height?: number;
  width?: number;
  steps?: number;
  guidance?: number;
  seed?: number;
  /** The prompt and the negative prompt as text, encoded by the folder's text encoders. */
  prompt?: string;
  negativePrompt?: string;
  /** T5 tokens of a text prompt. */
  maxSequenceLength?: number;
  trueCfgScale?: number;
  /** diffusers' default_sample_size, the latent side of the area images are rescaled to. */
  defaultSampleSize?: number;
  /** Video frames, the second expert's guidance, animation speed. */
  frames?: number;
  guidance2?: number;
  fps?: number;
}

/** What a family's pipeline returns to the CLI. */
export interface CliGenerateResult {
  latents: Tensor;
  /** Image families. */
  image?: Tensor | null;
  /** Video families. */
  video?: Tensor | null;
  /** The seed the initial noise came from, or null when it was given (latents_in): the CLI prints it and stores it in images. */
  seed?: number | null;
  /** The timesteps of the schedule, one per step run. */
  timesteps?: ArrayLike<number>;
}

/** What a family's prompt encoding gives `ditcache encode-prompt`. */
export interface CliEncodedPrompt {
  /** The tensors to write, by the names `generate --inputs` reads them (the caller disposes them). */
  tensors: Record<string, Tensor>;
  /** Lines for stderr, such as how many tokens truncation dropped (naming the prompt when there are several). */
  notes: string[];
}

/** A model family as the CLI sees it: which folders it takes, how --inputs and the flags map to its pipeline, how it writes results. */
export interface CliFamily {
  /** For messages, e.g. 'FLUX.1'. */
  readonly label: string;
  /** `_class_name`s of the pipeline folders (model_index.json) it runs. */
  readonly pipelineClasses: readonly string[];
  /** `_class_name`s of the transformer folders (config.json) it runs; a folder without model_index.json is known by its transformer. */
  readonly transformerClasses: readonly string[];
  /**
   * The flags of `generate` this family takes beyond those every family takes (--height,
   * --width, --steps, --guidance, --seed, ...): the CLI adds them to `generate`, and refuses
   * another family's flags for this one before any work. None when absent.
   */
  readonly options?: readonly CliOption[];
  /**
   * The older form of `options`: names from FAMILY_FLAGS, each standing for the CLI's declaration
   * of that flag. Read only when `options` is absent, so a plugin may keep both for older CLIs.
   * @deprecated declare `options`.
   */
  readonly flags?: readonly FamilyFlag[];
  /** File extensions --output may have, e.g. ['.png'] (checked before any work). */
  readonly outputFormats: readonly string[];
  /**
   * Loads the pipeline folder in a worker thread (RemotePipeline), where generation runs, with
   * the CLI's load options (--dtype, --weight-dtype): pass them on to the pipeline's load.
   */
  spawn(dir: string, options: CliLoadOptions): Promise<RemotePipeline<object, CliGenerateResult>>;
  /** Checks before any work that the folder can serve these flags (e.g. has text encoders for --prompt). */
  checkModel?(modelDir: string, settings: CliGenerateSettings): void;
  /**
   * The block chains `enableCache` caches in this pipeline folder, in the order of the cache
   * contexts (and of `params_modifiers`), from the transformers' config.json files (not their
   * weights): the CLI checks `--cache` against them before loading (Fn + Bn within each chain).
   */
  cacheChains?(modelDir: string): readonly CliCacheChain[];
  /** The pipeline request from the tensors of the --inputs file (none when `file` is undefined) and the flags. */
  request(inputs: Record<string, Tensor>, file: string | undefined, settings: CliGenerateSettings): object;
  /**
   * How many images (or videos) a request of `request()` makes, e.g. the P prompts of
   * `prompt_embeds` (P, ...). The CLI then writes `--output` as P numbered files, checked before
   * any work; without this member it expects one, and checks the numbered files after the run.
   */
  batchSize?(request: object): number;
  /**
   * Writes the picture (or video) of a result to `path`, in one of outputFormats. The CLI calls it
   * once per image of a batch, with a result of batch 1, and a temporary `path` it renames when
   * the write is complete (with whatever was written beside it under the same name stem).
   */
  writeOutput(result: CliGenerateResult, path: string, settings: CliGenerateSettings): Promise<void>;
  /**
   * `ditcache forward`: loads a transformer folder with the CLI's load options (--dtype,
   * --weight-dtype); the CLI then calls it once, or --repeat times (timing each call, the load
   * excluded), and disposes it.
   */
  loadTransformer?(transformerDir: string, options: CliLoadOptions): CliTransformer;
  /**
   * The older form of `ditcache forward`: load, one call on inputs named as in the goldens'
   * transformer_forward files, `sample` back. Without load options: the CLI refuses --dtype,
   * --weight-dtype stored, --repeat and --timings for a family that has only this.
   * @deprecated implement loadTransformer.
   */
  forward?(transformerDir: string, inputs: Record<string, Tensor>, file: string): Tensor;
  /**
   * `ditcache encode-prompt`: the folder's text encoders, loaded once, on `prompts` as one batch
   * (as diffusers encodes a list of prompts) and, with `settings.negativePrompt`, on that negative
   * prompt once per prompt, written as negative_<name>: the tensors its pipeline conditions on and
   * the token ids behind them, every one holding one row per prompt where bench's prompts files
   * keep it. `encodePromptBatches` does the batching around the family's own encoding. Absent
   * where the family takes embeddings only.
   */
  encodePrompt?(modelDir: string, prompts: readonly string[], settings: Pick<CliGenerateSettings, 'maxSequenceLength' | 'negativePrompt'>): CliEncodedPrompt;
}

/** One chain of transformer blocks with its own cache context, as `CliFamily.cacheChains` lists them. */
export interface CliCacheChain {
  /** Its context's name in diffusers' attribute names, as --stats names it, e.g. 'transformer.transformer_blocks'. */
  readonly name: string;
  /** How many blocks the chain has. */
  readonly blocks: number;
}

/**
 * The config.json of the component folder `component` of a pipeline folder, checked against its
 * classes and completed with `defaults` (as the component's loader reads it), without opening
 * its weights.
 */
export function componentConfig<T extends Record<string, unknown>>(modelDir: string, component: string, classNames: readonly string[], defaults: T): T {
  const path = join(modelDir, component, 'config.json');
  return typedConfig(readJsonObject(path), path, classNames, defaults);
}

/** The load options the CLI gives every family's loads: --dtype (diffusers' torch_dtype) and --weight-dtype. */
export type CliLoadOptions = Pick<LoadOptions, 'dtype' | 'weightDtype'>;

/** A transformer `loadTransformer` loaded for `ditcache forward`. */
export interface CliTransformer extends Disposable {
  /** One call on the tensors of --inputs (named as in the goldens' transformer_forward files); returns `sample`. */
  forward(inputs: Record<string, Tensor>, file: string): Tensor;
}

/** A problem with what the user asked for: the CLI prints it as one line and exits with status 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** The tensors `names` of --inputs, in order; a missing one is a UsageError naming the file's keys. */
export function pickInputs(inputs: Record<string, Tensor>, file: string | undefined, names: readonly string[]): Tensor[] {
  if (file === undefined) throw new UsageError(`--inputs is required: a safetensors file with ${names.join(', ')}`);
  return names.map((n) => {
    const t = inputs[n];
    if (!t) throw new UsageError(`--inputs ${file} has no tensor '${n}' (it has: ${Object.keys(inputs).sort().join(', ') || 'none'})`);
    return t;
  });
}

/** How a family words the absence of its text folders: the flag that needed them, what they hold, what to give instead. */
export interface TextFoldersWording {
  /** Default '--prompt'. */
  flag?: string;
  /** Default 'text encoders'. */
  encoders?: string;
  /** Default 'prompt embeddings'. */
  instead?: string;
}

/** A UsageError unless `dir` has every folder of `folders` (a family's tokenizers and text encoders), naming those it lacks. */
export function checkTextFolders(dir: string, folders: readonly string[], wording: TextFoldersWording = {}): void {
  const missing = missingFolders(dir, folders);
  if (missing.length === 0) return;
  const { flag = '--prompt', encoders = 'text encoders', instead = 'prompt embeddings' } = wording;
  throw new UsageError(`${flag}: ${dir} has no ${missing.map((m) => `${m}/`).join(', ')} (${encoders}); give ${instead} with --inputs instead`);
}

/** Writes an image result as PNG (the first image of the batch). */
export async function writeImage(result: CliGenerateResult, path: string): Promise<void> {
  if (!result.image) throw new Error('the pipeline returned no image');
  await savePng(result.image, path);
}
