import { readFile } from 'node:fs/promises';
import { extname } from 'node:path';
import { ClipTokenizer } from './clip-tokenizer.js';
import { loadImage } from './decode.js';
import { MetricsError } from './errors.js';
import type { PixelImage } from './image.js';
import { OnnxNetwork, type NetworkOptions } from './onnx-network.js';
import { clipPixelValues, OPENAI_CLIP_PREPROCESSING, type ClipPreprocessing } from './preprocess.js';
import type { MetricSummary } from './summary.js';

/**
 * CLIP score (Hessel et al. 2021, as torchmetrics' `CLIPScore` defines it): 100 times the
 * cosine similarity of the CLIP image embedding and the CLIP text embedding of its prompt,
 * floored at 0. torchmetrics floors the mean over the set, max(0, mean(100 cos)); each
 * per-image value here is max(0, 100 cos) and `mean` is torchmetrics' number (the two agree
 * whenever no cosine is negative, which is the normal case).
 */

export function cosineSimilarity(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new MetricsError(`cosine similarity of vectors of length ${a.length} and ${b.length}`);
  let dot = 0;
  let normA = 0;
  let normB = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i] * b[i];
    normA += a[i] * a[i];
    normB += b[i] * b[i];
  }
  return dot / (Math.sqrt(normA) * Math.sqrt(normB));
}

/** CLIP score of one image/prompt pair: 100 · max(cos, 0). */
export function clipScore(imageEmbedding: ArrayLike<number>, textEmbedding: ArrayLike<number>): number {
  return 100 * Math.max(cosineSimilarity(imageEmbedding, textEmbedding), 0);
}

/** Summary over a set from the per-pair cosines, with torchmetrics' mean max(0, mean(100 cos)). */
export function clipScoreSummary(cosines: Record<string, number>): MetricSummary {
  const names = Object.keys(cosines);
  const perImage: Record<string, number> = {};
  let sum = 0;
  for (const name of names) {
    perImage[name] = 100 * Math.max(cosines[name], 0);
    sum += 100 * cosines[name];
  }
  return {
    mean: names.length > 0 ? Math.max(0, sum / names.length) : null,
    count: names.length,
    infiniteCount: 0,
    perImage,
  };
}

export interface ClipModelFiles {
  /** ONNX image tower: input `pixel_values` (N, 3, S, S), output `image_embeds` (N, D). */
  imageModel: string;
  /** ONNX text tower: input `input_ids` (N, L) int64 (and optionally `attention_mask`), output `text_embeds` (N, D). */
  textModel: string;
  /** Folder with the Hugging Face tokenizer files vocab.json and merges.txt. */
  tokenizerDir: string;
  /** Optional JSON with `imageSize`, `mean`, `std`, `contextLength` (OpenAI CLIP values otherwise). */
  configFile?: string;
}

interface ClipConfig extends ClipPreprocessing {
  contextLength: number;
}

async function readClipConfig(path: string | undefined): Promise<ClipConfig> {
  const defaults: ClipConfig = { ...OPENAI_CLIP_PREPROCESSING, contextLength: 77 };
  if (!path) return defaults;
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return defaults;
    throw new MetricsError(`cannot read ${path}: ${(error as Error).message}`);
  }
  const parsed = JSON.parse(text) as Partial<ClipConfig>;
  return { ...defaults, ...parsed };
}

/** A CLIP image tower, text tower and tokenizer, loaded from ONNX exports. */
export class ClipModel {
  private constructor(
    private readonly image: OnnxNetwork,
    private readonly text: OnnxNetwork,
    readonly tokenizer: ClipTokenizer,
    readonly config: ClipConfig,
  ) {}

  static async load(files: ClipModelFiles, options: NetworkOptions = {}): Promise<ClipModel> {
    const config = await readClipConfig(files.configFile);
    const tokenizer = await ClipTokenizer.fromDirectory(files.tokenizerDir);
    const image = await OnnxNetwork.load(files.imageModel, 'CLIP image', options);
    image.expectNames(['pixel_values'], ['image_embeds']);
    const text = await OnnxNetwork.load(files.textModel, 'CLIP text', options);
    text.expectNames(['input_ids'], ['text_embeds']);
    return new ClipModel(image, text, tokenizer, config);
  }

  get runtime(): 'node' | 'web' {
    return this.image.runtime;
  }

  async imageEmbeddings(images: readonly PixelImage[]): Promise<Float32Array[]> {
    const size = this.config.imageSize;
    const planeSize = 3 * size * size;
    const data = new Float32Array(images.length * planeSize);
    images.forEach((image, i) => clipPixelValues(image, this.config, data, i * planeSize));
    const { image_embeds: embeds } = await this.image.run({ pixel_values: { data, dims: [images.length, 3, size, size] } });
    return splitRows(embeds.data, images.length);
  }

  async textEmbeddings(texts: readonly string[]): Promise<Float32Array[]> {
    const { inputIds, attentionMask, contextLength } = this.tokenizer.encodeBatch(texts, this.config.contextLength);
    const feeds: Parameters<OnnxNetwork['run']>[0] = { input_ids: { data: inputIds, dims: [texts.length, contextLength] } };
    if (this.text.inputNames.includes('attention_mask')) {
      feeds.attention_mask = { data: attentionMask, dims: [texts.length, contextLength] };
    }
    const { text_embeds: embeds } = await this.text.run(feeds);
    return splitRows(embeds.data, texts.length);
  }

  async dispose(): Promise<void> {
    await this.image.dispose();
    await this.text.dispose();
  }
}

function splitRows(data: Float32Array, rows: number): Float32Array[] {
  const width = data.length / rows;
  return Array.from({ length: rows }, (_, i) => data.slice(i * width, (i + 1) * width));
}

/**
 * The prompt of each image. A `.json` file maps file names to prompts; any other file has one
 * prompt per line, given to the images in natural file-name order (img_2 before img_10). A
 * count mismatch or a missing entry is an error: a shifted prompt list would score every
 * image against the wrong text.
 */
export async function readPrompts(path: string, imageNames: readonly string[]): Promise<Record<string, string>> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new MetricsError(`cannot read the prompts file ${path}: ${(error as Error).message}`);
  }
  const prompts: Record<string, string> = {};
  if (extname(path).toLowerCase() === '.json') {
    let mapping: unknown;
    try {
      mapping = JSON.parse(text);
    } catch (error) {
      throw new MetricsError(`${path} is not valid JSON: ${(error as Error).message}`);
    }
    if (typeof mapping !== 'object' || mapping === null || Array.isArray(mapping)) {
      throw new MetricsError(`${path} must be a JSON object mapping image file names to prompts`);
    }
    const missing = imageNames.filter((name) => typeof (mapping as Record<string, unknown>)[name] !== 'string');
    if (missing.length > 0) {
      throw new MetricsError(`${path} has no prompt for ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ` and ${missing.length - 5} more` : ''}`);
    }
    for (const name of imageNames) prompts[name] = (mapping as Record<string, string>)[name];
    return prompts;
  }
  const lines = text.replace(/\r/g, '').split('\n');
  while (lines.length > 0 && lines[lines.length - 1].trim() === '') lines.pop();
  if (lines.length !== imageNames.length) {
    throw new MetricsError(`${path} has ${lines.length} prompts for ${imageNames.length} images (one prompt per line, in file-name order)`);
  }
  imageNames.forEach((name, i) => (prompts[name] = lines[i]));
  return prompts;
}

/** CLIP score of image files against their prompts, batching texts and images. */
export async function evaluateClipScore(
  images: readonly { name: string; path: string }[],
  prompts: Readonly<Record<string, string>>,
  model: ClipModel,
  options: { batchSize?: number; onProgress?: (done: number, total: number) => void } = {},
): Promise<MetricSummary> {
  const batchSize = Math.max(1, options.batchSize ?? 8);
  const cosines: Record<string, number> = {};
  for (let start = 0; start < images.length; start += batchSize) {
    const chunk = images.slice(start, start + batchSize);
    const decoded = await Promise.all(chunk.map((image) => loadImage(image.path)));
    const [imageEmbeddings, textEmbeddings] = [await model.imageEmbeddings(decoded), await model.textEmbeddings(chunk.map((image) => prompts[image.name]))];
    chunk.forEach((image, i) => (cosines[image.name] = cosineSimilarity(imageEmbeddings[i], textEmbeddings[i])));
    options.onProgress?.(start + chunk.length, images.length);
  }
  return clipScoreSummary(cosines);
}
