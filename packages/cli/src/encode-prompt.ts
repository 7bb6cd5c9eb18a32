// `ditcache encode-prompt`: a FLUX.1 folder's text encoders on one prompt, written as the
// tensors FluxPipeline conditions on plus the token ids behind them, so that a tokenizer can be
// checked against Python's and embeddings reused with `generate --inputs`.
import { Command, InvalidArgumentError, Option } from 'commander';

import { FluxPromptEncoder, MAX_SEQUENCE_LENGTH, missingTextComponents } from '@ditcache/adapter-flux';
import { saveSafetensors, tidy } from '@ditcache/cuda-runtime';

import { UsageError } from './errors.js';
import { pipelineClassOf } from './model-folder.js';
import { checkOutputs, ensureParent } from './outputs.js';

interface EncodePromptFlags {
  model: string;
  prompt: string;
  maxSequenceLength?: number;
  out: string;
  force: boolean;
}

function sequenceLength(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > MAX_SEQUENCE_LENGTH) {
    throw new InvalidArgumentError(`--max-sequence-length must be an integer from 1 to ${MAX_SEQUENCE_LENGTH}`);
  }
  return n;
}

/** Encodes the prompt and writes prompt_embeds, pooled_prompt_embeds, text_ids, clip_input_ids and t5_input_ids. */
export function encodePrompt(flags: EncodePromptFlags): void {
  const cls = pipelineClassOf(flags.model, { FluxTransformer2DModel: 'FluxPipeline' });
  if (cls !== 'FluxPipeline') throw new UsageError(`--model: encode-prompt takes FLUX.1 folders, not a ${cls}`);
  const missing = missingTextComponents(flags.model);
  if (missing.length) throw new UsageError(`--model: ${flags.model} has no ${missing.map((m) => `${m}/`).join(', ')} (text encoders)`);
  checkOutputs([flags.out], flags.force);
  using encoder = FluxPromptEncoder.fromPretrained(flags.model);
  const e = encoder.encode(flags.prompt, { maxSequenceLength: flags.maxSequenceLength });
  try {
    if (e.truncatedTokens.clip > 0) process.stderr.write(`ditcache: CLIP kept 77 tokens of the prompt; ${e.truncatedTokens.clip} were truncated\n`);
    if (e.truncatedTokens.t5 > 0) process.stderr.write(`ditcache: T5 kept ${e.t5InputIds.shape[1]} tokens of the prompt; ${e.truncatedTokens.t5} were truncated\n`);
    ensureParent(flags.out);
    tidy(() =>
      saveSafetensors(flags.out, {
        prompt_embeds: e.promptEmbeds,
        pooled_prompt_embeds: e.pooledPromptEmbeds,
        text_ids: e.textIds,
        // Float32, as the request asks: ids up to 2^24 are exact.
        clip_input_ids: e.clipInputIds.cast('float32'),
        t5_input_ids: e.t5InputIds.cast('float32'),
      }),
    );
  } finally {
    for (const t of [e.promptEmbeds, e.pooledPromptEmbeds, e.textIds, e.clipInputIds, e.t5InputIds]) t.dispose();
  }
}

/** Adds the `encode-prompt` command to the program. */
export function registerEncodePrompt(program: Command): void {
  program
    .command('encode-prompt')
    .description('encode a prompt with a FLUX.1 folder\'s text encoders; writes prompt_embeds, pooled_prompt_embeds, text_ids, clip_input_ids, t5_input_ids')
    .requiredOption('--model <dir>', 'a FLUX.1 folder with tokenizer/, tokenizer_2/, text_encoder/ and text_encoder_2/')
    .requiredOption('--prompt <text>', 'the prompt')
    .option('--max-sequence-length <n>', `T5 tokens (default ${MAX_SEQUENCE_LENGTH}, at most ${MAX_SEQUENCE_LENGTH})`, sequenceLength)
    .requiredOption('--out <file>', 'where to write the tensors (safetensors)')
    .addOption(new Option('--force', 'overwrite an existing --out file').default(false))
    .action((flags: EncodePromptFlags) => encodePrompt(flags));
}
