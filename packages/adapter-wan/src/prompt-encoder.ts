// WanPipeline's prompt encoding (diffusers' _get_t5_prompt_embeds): the prompt cleaned as diffusers
// cleans it (with ftfy installed, as Wan requires), tokenized and padded to max_sequence_length,
// UMT5's last hidden state with the padding masked out of attention, and every row past a
// prompt's own tokens set to zero. The tokenizer loads with the encoder; the encoder's weights
// load on first use and can be released after it, since Wan's umt5-xxl is 11 GB in bfloat16.
import { concat, tensor, tidy, zeros, type Tensor } from '@ditcache/cuda-runtime';
import { missingFolders } from '@ditcache/diffusion';
import { T5TextComponents, T5_TEXT_COMPONENTS, fixText } from '@ditcache/text-encoders';
import { decodeHTML } from 'entities';

/** The folders of a Wan pipeline that prompt encoding needs. */
export const TEXT_COMPONENTS = T5_TEXT_COMPONENTS;

/** WanPipeline's default max_sequence_length, which the transformer's text was trained with. */
export const MAX_SEQUENCE_LENGTH = 512;

/** Python's str.isspace() characters, which diffusers' `\s+` and `strip()` act on (JavaScript's `\s` differs: it has U+FEFF, lacks U+001C..U+001F and U+0085). */
const PYTHON_WHITESPACE = '\\t-\\r\\x1c-\\x20\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const WHITESPACE_RUN = new RegExp(`[${PYTHON_WHITESPACE}]+`, 'g');
const EDGE_WHITESPACE = new RegExp(`^[${PYTHON_WHITESPACE}]+|[${PYTHON_WHITESPACE}]+$`, 'g');

/**
 * diffusers' prompt_clean for Wan: ftfy.fix_text (its character-level repairs: curly quotes,
 * ligatures, full-width forms, control characters, NFC; not its mojibake repair, see fixText),
 * HTML character references decoded twice (as Python's html.unescape does), runs of whitespace
 * collapsed to one space, the ends trimmed.
 */
export function cleanPrompt(text: string): string {
  return decodeHTML(decodeHTML(fixText(text)))
    .replace(WHITESPACE_RUN, ' ')
    .replace(EDGE_WHITESPACE, '');
}

export interface WanEncodePromptOptions {
  /** Tokens each prompt is padded or truncated to (default 512). */
  maxSequenceLength?: number;
}

/** What encode returns; the caller owns (and disposes) every tensor. */
export interface WanPromptEmbeddings {
  /** UMT5's last hidden state (B, maxSequenceLength, d_model), zero past each prompt's tokens. */
  promptEmbeds: Tensor;
  /** The token ids (B, maxSequenceLength), int32. */
  inputIds: Tensor;
  /** 1 for the prompt's tokens, 0 for padding (B, maxSequenceLength), int32. */
  attentionMask: Tensor;
  /** Tokens truncation dropped from the longest prompt (diffusers drops them silently). */
  truncatedTokens: number;
  /** Tokens truncation dropped from each prompt, in order. */
  truncatedTokensPerPrompt: number[];
}

/** The text folders a pipeline folder lacks (none when prompts can be encoded). */
export function missingTextComponents(dir: string): string[] {
  return missingFolders(dir, TEXT_COMPONENTS);
}

export class WanPromptEncoder extends T5TextComponents {
  /** diffusers' WanPipeline._get_t5_prompt_embeds for one prompt or a batch. */
  encode(prompt: string | readonly string[], opts: WanEncodePromptOptions = {}): WanPromptEmbeddings {
    const prompts = typeof prompt === 'string' ? [prompt] : [...prompt];
    if (prompts.length === 0) throw new TypeError('WanPromptEncoder.encode: give at least one prompt');
    const length = opts.maxSequenceLength ?? MAX_SEQUENCE_LENGTH;
    if (!Number.isInteger(length) || length < 1) throw new RangeError(`WanPromptEncoder.encode: maxSequenceLength must be a positive integer, got ${length}`);
    const encoder = this.load();
    const encoded = prompts.map((p) => this.tokenizer.encodePadded(cleanPrompt(p), length));
    const device = this.opts.device ?? 'cpu';
    return tidy(() => {
      const inputIds = tensor(Int32Array.from(encoded.flatMap((e) => e.ids)), [prompts.length, length], { device });
      const attentionMask = tensor(Int32Array.from(encoded.flatMap((e) => e.attentionMask)), [prompts.length, length], { device });
      const hidden = encoder.forward(inputIds, { attentionMask });
      // Each prompt's rows up to its token count, then zeros, as diffusers trims and re-pads them.
      const rows = encoded.map((e, i) => {
        const tokens = e.attentionMask.reduce((a, b) => a + b, 0);
        const padding = zeros([1, length - tokens, hidden.shape[2]], { device, dtype: hidden.dtype });
        if (tokens === 0) return padding;
        const own = hidden.slice(0, i, i + 1).slice(1, 0, tokens);
        return tokens === length ? own : concat([own, padding], 1);
      });
      const truncatedTokensPerPrompt = encoded.map((e) => e.truncatedTokens);
      return { promptEmbeds: concat(rows, 0), inputIds, attentionMask, truncatedTokens: Math.max(...truncatedTokensPerPrompt), truncatedTokensPerPrompt };
    });
  }
}
