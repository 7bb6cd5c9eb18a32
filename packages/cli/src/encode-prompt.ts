// `ditcache encode-prompt`: a model folder's text encoders on one prompt, written as the tensors
// its pipeline conditions on plus the token ids behind them, so that a tokenizer can be checked
// against Python's and embeddings reused with `generate --inputs`. The family of the folder does
// the encoding (CliFamily.encodePrompt), so any adapter with text encoders brings it along. A
// negative prompt is encoded the same way and written under `negative_` + each name, which is
// how every diffusers pipeline names the negative embeddings it takes.
import { Command, Option } from 'commander';

import { saveSafetensors } from '@ditcache/cuda-runtime';
import { readPipelineDefaults } from '@ditcache/diffusion';

import { adapterOption } from './adapters-command.js';
import { UsageError } from './errors.js';
import { checkOutputs, ensureParent } from './outputs.js';
import { familyForPipeline, loadFamilies } from './plugins.js';

interface EncodePromptFlags {
  model: string;
  adapter: string[];
  prompt: string;
  negativePrompt?: string;
  maxSequenceLength?: number;
  out: string;
  force: boolean;
}

/** Encodes the prompt with the folder's family and writes what it returns. */
export async function encodePrompt(flags: EncodePromptFlags): Promise<void> {
  const family = familyForPipeline(await loadFamilies(flags.adapter), flags.model);
  if (!family.encodePrompt) throw new UsageError(`--model: ${family.label} folders take prompt embeddings; encode-prompt needs a family with text encoders`);
  checkOutputs([['--out', flags.out]], flags.force);
  // As generate does for a text prompt: the flag, else the folder's ditcache.json, else the pipeline's.
  const settings = { maxSequenceLength: flags.maxSequenceLength ?? readPipelineDefaults(flags.model).maxSequenceLength };
  const { tensors, notes } = family.encodePrompt(flags.model, flags.prompt, settings);
  try {
    if (flags.negativePrompt !== undefined) {
      const negative = family.encodePrompt(flags.model, flags.negativePrompt, settings);
      for (const [name, t] of Object.entries(negative.tensors)) tensors[`negative_${name}`] = t;
      notes.push(...negative.notes.map((note) => `negative prompt: ${note}`));
    }
    for (const note of notes) process.stderr.write(`ditcache: ${note}\n`);
    ensureParent(flags.out);
    saveSafetensors(flags.out, tensors);
  } finally {
    for (const t of Object.values(tensors)) t.dispose();
  }
}

/** Adds the `encode-prompt` command to the program. */
export function registerEncodePrompt(program: Command): void {
  program
    .command('encode-prompt')
    .description(
      "encode a prompt with a folder's text encoders (every family with them: FLUX.1, Wan, HiDream-I1, Qwen-Image, Chroma, HunyuanVideo, plugins); writes the embeddings and token ids",
    )
    .requiredOption('--model <dir>', 'a pipeline folder with its tokenizers and text encoders')
    .addOption(adapterOption())
    .requiredOption('--prompt <text>', 'the prompt')
    .option('--negative-prompt <text>', 'a negative prompt too, written as negative_<name> beside each tensor')
    .option('--max-sequence-length <n>', "T5 / UMT5 tokens (default: the pipeline's)", (value: string) => {
      const n = Number(value);
      if (!Number.isInteger(n) || n < 1) throw new UsageError(`--max-sequence-length must be a positive integer, got ${value}`);
      return n;
    })
    .requiredOption('--out <file>', 'where to write the tensors (safetensors)')
    .addOption(new Option('--force', 'overwrite an existing --out file').default(false))
    .action(async (flags: EncodePromptFlags) => encodePrompt(flags));
}
