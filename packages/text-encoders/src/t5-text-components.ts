// The text side of a pipeline whose prompts go through one T5 (or UMT5) encoder: a folder's
// tokenizer/ and text_encoder/. The tokenizer loads with it; T5's weights (9.5 GB for T5-XXL) load
// on first use and can be released after it. Wan, Chroma and LTX-Video extend it with their
// pipeline's encode_prompt, so the loading rules are written once.
import { join } from 'node:path';

import { requireFolders, type LoadOptions } from '@ditcache/diffusion';

import { T5Encoder } from './t5-encoder.js';
import { loadTokenizer } from './tokenizer/load.js';
import type { Tokenizer } from './tokenizer/tokenizer.js';

/** The folders of the pipeline that prompt encoding needs. */
export const T5_TEXT_COMPONENTS = ['tokenizer', 'text_encoder'] as const;

export abstract class T5TextComponents implements Disposable {
  readonly tokenizer: Tokenizer;
  private t5: T5Encoder | null = null;

  constructor(
    readonly dir: string,
    protected readonly opts: LoadOptions = {},
  ) {
    requireFolders(dir, T5_TEXT_COMPONENTS, 'prompt encoding');
    this.tokenizer = loadTokenizer(join(dir, 'tokenizer'));
  }

  /** Whether T5's weights are loaded. */
  get loaded(): boolean {
    return this.t5 !== null;
  }

  /** T5, its weights loaded now if they are not yet (encoding does it when needed). */
  load(): T5Encoder {
    this.t5 ??= T5Encoder.load(join(this.dir, 'text_encoder'), this.opts);
    return this.t5;
  }

  /** Frees T5's weights; the next encode loads them again. The tokenizer stays. */
  release(): void {
    this.t5?.dispose();
    this.t5 = null;
  }

  dispose(): void {
    this.release();
  }
  [Symbol.dispose](): void {
    this.dispose();
  }
}
