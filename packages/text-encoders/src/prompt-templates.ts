// The prompt templates that diffusers' pipelines wrap around a prompt before a decoder-LLM text
// encoder reads it, written as the pipelines write them (Python format strings with one "{}"),
// so that the tokens, and the count of template tokens the pipelines crop, come out the same.
import type { Tokenizer } from './tokenizer/tokenizer.js';

/** A template and how many of its leading tokens the pipeline drops from the encoder's output. */
export interface PromptTemplate {
  /** Python format string; "{}" is where the prompt goes. */
  template: string;
  /** Leading tokens dropped from the hidden states (diffusers: crop_start, drop_idx). */
  dropTokens: number;
}

/** HunyuanVideoPipeline's DEFAULT_PROMPT_TEMPLATE (crop_start 95, counted with Llama 3's vocabulary). */
export const HUNYUAN_VIDEO_PROMPT_TEMPLATE: PromptTemplate = {
  template:
    '<|start_header_id|>system<|end_header_id|>\n\nDescribe the video by detailing the following aspects: ' +
    '1. The main content and theme of the video.' +
    '2. The color, shape, size, texture, quantity, text, and spatial relationships of the objects.' +
    '3. Actions, events, behaviors temporal relationships, physical movement changes of the objects.' +
    '4. background environment, light, style and atmosphere.' +
    '5. camera angles, movements, and transitions used in the video:<|eot_id|>' +
    '<|start_header_id|>user<|end_header_id|>\n\n{}<|eot_id|>',
  dropTokens: 95,
};

/** QwenImagePipeline's prompt_template_encode (prompt_template_encode_start_idx 34, counted with Qwen2's vocabulary). */
export const QWEN_IMAGE_PROMPT_TEMPLATE: PromptTemplate = {
  template:
    '<|im_start|>system\nDescribe the image by detailing the color, shape, size, texture, quantity, text, ' +
    'spatial relationships of the objects and background:<|im_end|>\n<|im_start|>user\n{}<|im_end|>\n' +
    '<|im_start|>assistant\n',
  dropTokens: 34,
};

/** QwenImagePipeline's tokenizer_max_length: the prompt's share of max_length (plus dropTokens). */
export const QWEN_IMAGE_MAX_LENGTH = 1024;

/** HunyuanVideoPipeline's default max_sequence_length: the prompt's share of max_length (plus dropTokens). */
export const HUNYUAN_VIDEO_MAX_LENGTH = 256;

/** HiDreamImagePipeline's default max_sequence_length for its Llama 3 tokenizer. */
export const HIDREAM_LLAMA_MAX_LENGTH = 128;

/**
 * Python's `template.format(prompt)`: each "{}" or "{0}" becomes the prompt (taken as it is, braces
 * included), "{{" and "}}" become "{" and "}"; any other field is refused, as Python would.
 */
export function formatPrompt(template: string, prompt: string): string {
  let autoFields = 0;
  return template.replace(/\{\{|\}\}|\{([^{}]*)\}|[{}]/g, (whole, field: string | undefined) => {
    if (whole === '{{') return '{';
    if (whole === '}}') return '}';
    if (field === '') autoFields++;
    if ((field === '' && autoFields === 1) || field === '0') return prompt;
    throw new RangeError(`formatPrompt: ${JSON.stringify(template)} holds ${JSON.stringify(whole)}; only one "{}" (or "{0}") field is supported`);
  });
}

/**
 * HunyuanVideoPipeline's crop_start for a template given without one: the template tokenized with
 * padding="max_length" and no max_length, which transformers pads to model_max_length (and not at
 * all when there is no limit), less 2 for "{}" and <|eot_id|>. diffusers' own template gives 95.
 */
export function templateCropStart(tokenizer: Tokenizer, template: string): number {
  const count = tokenizer.encode(template).length;
  return Math.max(count, tokenizer.modelMaxLength ?? 0) - 2;
}
