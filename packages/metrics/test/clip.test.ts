import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  clipPixelValues,
  ClipModel,
  clipScore,
  clipScoreSummary,
  ClipTokenizer,
  cosineSimilarity,
  evaluateClipScore,
  loadImage,
  readPrompts,
  resolveImageSet,
} from '../src/index.js';
import { GOLDENS_DIR } from './helpers/paths.js';
import { relativeError } from './helpers/synthetic.js';
import { tinyClip, tinyClipImageEmbedding, tinyClipTextEmbedding } from './helpers/tiny-networks.js';
import { tinyMergesFile, tinyVocab } from './helpers/tiny-vocab.js';
import { scratchDir } from '../../../scripts/testing/scratch-dir.js';

describe('CLIP score math (torchmetrics CLIPScore)', () => {
  it('is 100 * max(cos, 0) per pair', () => {
    expect(clipScore([1, 0], [1, 0])).toBe(100);
    expect(clipScore([1, 1], [1, 0])).toBeCloseTo(100 / Math.SQRT2, 12);
    expect(clipScore([1, 0], [-1, 0.1])).toBe(0);
    expect(cosineSimilarity([3, 4], [6, 8])).toBeCloseTo(1, 15);
  });

  it('floors the mean over the set like torchmetrics, and each value per image', () => {
    const summary = clipScoreSummary({ a: 0.3, b: -0.1, c: 0.2 });
    expect(summary.perImage.a).toBeCloseTo(30, 12);
    expect(summary.perImage.b).toBe(0);
    expect(summary.perImage.c).toBeCloseTo(20, 12);
    // torchmetrics: max(0, mean(100 cos)) = (30 - 10 + 20) / 3.
    expect(summary.mean).toBeCloseTo(40 / 3, 12);
    expect(clipScoreSummary({ a: -0.2, b: -0.1 }).mean).toBe(0);
    expect(summary.count).toBe(3);
  });
});

describe('prompts files', () => {
  const dir = scratchDir('metrics-prompts-');
  it('maps lines to images in order and checks the count', async () => {
    writeFileSync(join(dir, 'p.txt'), 'a cat\na dog\n\n');
    expect(await readPrompts(join(dir, 'p.txt'), ['img_1.png', 'img_2.png'])).toEqual({ 'img_1.png': 'a cat', 'img_2.png': 'a dog' });
    await expect(readPrompts(join(dir, 'p.txt'), ['x.png'])).rejects.toThrow(/2 prompts for 1 images/);
  });
  it('reads a JSON mapping and names images without a prompt', async () => {
    writeFileSync(join(dir, 'p.json'), JSON.stringify({ 'b.png': 'red', 'a.png': 'blue' }));
    expect(await readPrompts(join(dir, 'p.json'), ['a.png', 'b.png'])).toEqual({ 'a.png': 'blue', 'b.png': 'red' });
    await expect(readPrompts(join(dir, 'p.json'), ['a.png', 'c.png'])).rejects.toThrow(/no prompt for c\.png/);
  });
});

describe('CLIP through ONNX towers (tiny stand-ins built by the test)', () => {
  const imageSize = 16;
  const vocab = tinyVocab();
  const tiny = tinyClip(Object.keys(vocab).length, imageSize);
  let model: ClipModel;

  beforeAll(async () => {
    const dir = scratchDir('metrics-clip-');
    writeFileSync(join(dir, 'clip-image.onnx'), tiny.image);
    writeFileSync(join(dir, 'clip-text.onnx'), tiny.text);
    mkdirSync(join(dir, 'clip-tokenizer'));
    writeFileSync(join(dir, 'clip-tokenizer', 'vocab.json'), JSON.stringify(vocab));
    writeFileSync(join(dir, 'clip-tokenizer', 'merges.txt'), tinyMergesFile());
    writeFileSync(join(dir, 'clip-config.json'), JSON.stringify({ imageSize, contextLength: 12 }));
    model = await ClipModel.load(
      {
        imageModel: join(dir, 'clip-image.onnx'),
        textModel: join(dir, 'clip-text.onnx'),
        tokenizerDir: join(dir, 'clip-tokenizer'),
        configFile: join(dir, 'clip-config.json'),
      },
      { runtime: 'web', threads: 1 },
    );
  });
  afterAll(async () => model?.dispose());

  it('scores the golden images against prompts like the float64 reference towers', async () => {
    const images = await resolveImageSet(join(GOLDENS_DIR, 'test'));
    const texts = ['a red cat', "the dog's cat", 'a dog', 'red red red', 'cat cat dog', 'a very long prompt that is truncated at twelve tokens'];
    const prompts = Object.fromEntries(images.map((image, i) => [image.name, texts[i]]));
    const summary = await evaluateClipScore(images, prompts, model, { batchSize: 4 });
    const tokenizer = new ClipTokenizer(vocab, tinyMergesFile().split('\n').slice(1).filter(Boolean));
    let sum = 0;
    for (const image of images) {
      const pixels = Float64Array.from(clipPixelValues(await loadImage(image.path), { ...model.config, imageSize }));
      const imageEmbedding = tinyClipImageEmbedding(tiny, pixels, imageSize);
      const textEmbedding = tinyClipTextEmbedding(tiny, tokenizer.encode(prompts[image.name], 12));
      const cos = cosineSimilarity(imageEmbedding, textEmbedding);
      sum += 100 * cos;
      const expected = 100 * Math.max(cos, 0);
      expect(Math.abs(summary.perImage[image.name] - expected)).toBeLessThan(1e-4 * Math.max(1, expected));
    }
    expect(summary.count).toBe(images.length);
    expect(Math.abs((summary.mean as number) - Math.max(0, sum / images.length))).toBeLessThan(1e-4);
  });

  it('uses the configured context length', () => {
    expect(model.config.contextLength).toBe(12);
    expect(model.config.imageSize).toBe(imageSize);
    expect(relativeError(model.config.mean[0], 0.48145466)).toBe(0);
  });
});
