// `ditcache encode-prompt`: a model folder's text encoders on prompts, written as the tensors its
// pipeline conditions on plus the token ids behind them, so that a tokenizer can be checked
// against Python's, embeddings reused with `generate --inputs`, and a prompts file made for
// `bench` / `tune --prompts` (several prompts, one row each where bench's reader looks for it, the
// texts and recommended settings as metadata). The family of the folder does the encoding
// (CliFamily.encodePrompt), the prompts as one batch and a negative prompt once per prompt, with
// its encoders loaded once, so any adapter with text encoders brings it along. The negative
// embeddings are written under `negative_` + each name, which is how every diffusers pipeline
// names the negative embeddings it takes.
import { type Command, Option } from 'commander';

import { saveSafetensors } from '@ditcache/cuda-runtime';
import { readPipelineDefaults } from '@ditcache/diffusion';

import { adapterOption } from './adapters-command.js';
import { UsageError } from './errors.js';
import { checkOutputs, ensureParent } from './outputs.js';
import { positiveInt, positiveNumber } from './parsers.js';
import { familyForPipeline, loadFamilies } from './plugins.js';
import { readPromptList } from './prompt-list.js';

/** The settings a prompts file may recommend, by flag, under the metadata names bench reads them by. */
const RECOMMENDED_SETTINGS = {
  height: 'height',
  width: 'width',
  steps: 'num_inference_steps',
  guidance: 'guidance_scale',
  frames: 'num_frames',
  fps: 'fps',
} as const;

type RecommendedSettings = { [flag in keyof typeof RECOMMENDED_SETTINGS]?: number };

interface EncodePromptFlags extends RecommendedSettings {
  model: string;
  adapter: string[];
  /** --prompt, repeated: the prompts in order (one string is one prompt). */
  prompt?: string | string[];
  promptsFile?: string;
  negativePrompt?: string;
  maxSequenceLength?: number;
  out: string;
  force: boolean;
}

/**
 * The file's metadata: the prompts' texts and the settings given, as bench reads them. None for
 * one prompt without settings, whose file stays the tensors alone.
 */
function promptsMetadata(prompts: readonly string[], flags: RecommendedSettings): Record<string, string> | undefined {
  const settings = Object.entries(RECOMMENDED_SETTINGS).flatMap(([flag, key]) => {
    const value = flags[flag as keyof RecommendedSettings];
    return value === undefined ? [] : [[key, String(value)]];
  });
  if (prompts.length === 1 && settings.length === 0) return undefined;
  return { prompts: JSON.stringify(prompts), ...Object.fromEntries(settings) };
}

/** Encodes the prompts with the folder's family and writes what it returns. */
export async function encodePrompt(flags: EncodePromptFlags): Promise<void> {
  const prompts = readPromptList(flags.prompt, flags.promptsFile);
  const family = familyForPipeline(await loadFamilies(flags.adapter), flags.model);
  if (!family.encodePrompt) throw new UsageError(`--model: ${family.label} folders take prompt embeddings; encode-prompt needs a family with text encoders`);
  checkOutputs([['--out', flags.out]], flags.force);
  // As generate does for a text prompt: the flag, else the folder's ditcache.json, else the pipeline's.
  const maxSequenceLength = flags.maxSequenceLength ?? readPipelineDefaults(flags.model).maxSequenceLength;
  const { tensors, notes } = family.encodePrompt(flags.model, prompts, { maxSequenceLength, negativePrompt: flags.negativePrompt });
  try {
    for (const note of notes) process.stderr.write(`ditcache: ${note}\n`);
    ensureParent(flags.out);
    saveSafetensors(flags.out, tensors, promptsMetadata(prompts, flags));
  } finally {
    for (const t of Object.values(tensors)) t.dispose();
  }
}

/** Adds the `encode-prompt` command to the program. */
export function registerEncodePrompt(program: Command): void {
  program
    .command('encode-prompt')
    .description(
      "encode prompts with a folder's text encoders (every family with them: FLUX.1, Wan, HiDream-I1, Qwen-Image, Chroma, HunyuanVideo, LTX-Video, plugins); writes the embeddings and token ids, one row per prompt: a prompts file for bench and tune",
    )
    .requiredOption('--model <dir>', 'a pipeline folder with its tokenizers and text encoders')
    .addOption(adapterOption())
    .option('--prompt <text>', 'a prompt; repeat it for several, encoded as one batch (one row each)', (value: string, previous?: string[]) => [
      ...(previous ?? []),
      value,
    ])
    .option('--prompts-file <txt>', 'the prompts, one per line (blank lines are ignored), instead of --prompt')
    .option('--negative-prompt <text>', 'a negative prompt for every prompt, written as negative_<name> beside each tensor')
    .option('--max-sequence-length <n>', "T5 / UMT5 tokens (default: the pipeline's)", (value: string) => {
      const n = Number(value);
      if (!Number.isInteger(n) || n < 1) throw new UsageError(`--max-sequence-length must be a positive integer, got ${value}`);
      return n;
    })
    .option('--height <px>', "the file's recommended image height (bench and tune take it without --height)", positiveInt('--height'))
    .option('--width <px>', "the file's recommended image width", positiveInt('--width'))
    .option('--steps <n>', "the file's recommended denoising steps", positiveInt('--steps'))
    .option('--guidance <g>', "the file's recommended guidance scale", positiveNumber('--guidance'))
    .option('--frames <n>', "the file's recommended video frames", positiveInt('--frames'))
    .option('--fps <n>', "the file's recommended frames per second", positiveInt('--fps'))
    .requiredOption('--out <file>', 'where to write the tensors (safetensors)')
    .addOption(new Option('--force', 'overwrite an existing --out file').default(false))
    .action(async (flags: EncodePromptFlags) => encodePrompt(flags));
}
