// What LtxPipeline.generate takes for its conditioning: a prompt (and a negative prompt under CFG)
// as text or as embeddings with their masks, never both, as LTXPipeline.check_inputs and
// encode_prompt take them; text is encoded here, the negative prompt '' when none is given.
import type { Tensor } from '@ditcache/cuda-runtime';

import type { LtxPromptEmbeddings, LtxPromptEncoder } from './prompt-encoder.js';

/** The conditioning options of generate(). */
export interface LtxPromptInputs {
  prompt?: string | readonly string[];
  promptEmbeds?: Tensor;
  promptAttentionMask?: Tensor;
  negativePrompt?: string | readonly string[];
  negativePromptEmbeds?: Tensor;
  negativePromptAttentionMask?: Tensor;
  maxSequenceLength?: number;
}

/** Each of the prompt and the negative prompt comes as text or as embeddings with their mask, not both. */
export function checkPromptInputs(opts: LtxPromptInputs): void {
  const fail = (what: string): never => {
    throw new TypeError(`LtxPipeline: ${what}`);
  };
  const hasEmbeds = opts.promptEmbeds !== undefined || opts.promptAttentionMask !== undefined;
  if (opts.prompt !== undefined && hasEmbeds) fail('give either prompt or promptEmbeds / promptAttentionMask, not both');
  if (opts.prompt === undefined && (!opts.promptEmbeds || !opts.promptAttentionMask)) fail('give a prompt, or both promptEmbeds and promptAttentionMask');
  const hasNegativeEmbeds = opts.negativePromptEmbeds !== undefined || opts.negativePromptAttentionMask !== undefined;
  if (opts.negativePrompt !== undefined && hasNegativeEmbeds)
    fail('give either negativePrompt or negativePromptEmbeds / negativePromptAttentionMask, not both');
  if (!opts.negativePromptEmbeds !== !opts.negativePromptAttentionMask) fail('give negativePromptEmbeds and negativePromptAttentionMask together');
  if (opts.maxSequenceLength !== undefined && opts.prompt === undefined && opts.negativePrompt === undefined)
    fail('maxSequenceLength applies to text prompts only');
}

export interface ResolvedEmbeddings {
  /** The options with every prompt replaced by its embeddings and mask. */
  inputs: LtxPromptInputs;
  /** The tensors encoded here, which the caller disposes. */
  owned: Tensor[];
}

/**
 * The embeddings generate runs on: the given ones, or those of the prompt and (under CFG without
 * negative embeddings) of the negative prompt, '' by default, padded to the same length.
 * `encoder` is null when the pipeline has none, for `reason`; `release` frees T5 after encoding.
 */
export function resolveEmbeddings(opts: LtxPromptInputs, cfg: boolean, encoder: LtxPromptEncoder | null, reason: string, release: boolean): ResolvedEmbeddings {
  const needsNegative = cfg && opts.negativePromptEmbeds === undefined;
  if ((opts.prompt !== undefined || needsNegative) && !encoder) {
    throw new TypeError(
      opts.prompt !== undefined
        ? `LtxPipeline: cannot encode a prompt: ${reason}; give promptEmbeds and promptAttentionMask instead`
        : `LtxPipeline: guidanceScale above 1 runs classifier-free guidance, which needs the negative prompt, and it cannot be encoded (${reason}): ` +
            'give negativePromptEmbeds and negativePromptAttentionMask, or guidanceScale 1',
    );
  }
  const encodeOpts = { maxSequenceLength: opts.maxSequenceLength };
  const owned: Tensor[] = [];
  const take = (e: LtxPromptEmbeddings): [Tensor, Tensor] => {
    e.inputIds.dispose();
    owned.push(e.promptEmbeds, e.promptAttentionMask);
    return [e.promptEmbeds, e.promptAttentionMask];
  };
  try {
    const [embeds, mask] =
      opts.prompt === undefined ? [opts.promptEmbeds, opts.promptAttentionMask] : take((encoder as LtxPromptEncoder).encode(opts.prompt, encodeOpts));
    let [negEmbeds, negMask] = [opts.negativePromptEmbeds, opts.negativePromptAttentionMask];
    if (needsNegative) {
      const batch = (embeds as Tensor).shape[0];
      const given = opts.negativePrompt ?? '';
      const texts = typeof given === 'string' ? Array<string>(batch).fill(given) : given;
      if (texts.length !== batch) throw new TypeError(`LtxPipeline: ${texts.length} negative prompts for a batch of ${batch}`);
      [negEmbeds, negMask] = take((encoder as LtxPromptEncoder).encode(texts, encodeOpts));
    }
    return {
      inputs: { promptEmbeds: embeds, promptAttentionMask: mask, negativePromptEmbeds: negEmbeds, negativePromptAttentionMask: negMask },
      owned,
    };
  } catch (e) {
    for (const t of owned) t.dispose();
    throw e;
  } finally {
    // Both prompts are encoded before the weights go, so CFG loads them once.
    if (encoder && release) encoder.release();
  }
}
