import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { tensor } from '@ditcache/cuda-runtime';

import { ClipTextModel, T5Encoder, loadTokenizer } from '../src/index.js';
import { data } from './helpers.js';

/** Temp folders of this file's tests, removed after them. */
const scratchDirs: string[] = [];
afterAll(() => {
  for (const dir of scratchDirs) rmSync(dir, { recursive: true, force: true });
});
function scratch(): string {
  const dir = mkdtempSync(join(tmpdir(), 'text-encoders-errors-'));
  scratchDirs.push(dir);
  return dir;
}

describe('errors name the folder and what is wrong', () => {
  it('tokenizer folders: missing, empty, unsupported parts, broken files', () => {
    expect(() => loadTokenizer(join(data, 'nothing-here'))).toThrow(/nothing-here: no such tokenizer folder/);
    const empty = scratch();
    expect(() => loadTokenizer(empty)).toThrow(/no tokenizer files \(tokenizer.json, vocab.json \+ merges.txt, or spiece.model\)/);

    const wordPiece = scratch();
    writeFileSync(join(wordPiece, 'tokenizer.json'), JSON.stringify({ model: { type: 'WordPiece', vocab: {} } }));
    expect(() => loadTokenizer(wordPiece)).toThrow(/tokenizer.json: model type "WordPiece" is not supported \(supported: BPE, Unigram\)/);

    const oddNormalizer = scratch();
    const clip = JSON.parse(readFileSync(join(data, 'clip-tokenizer-json', 'tokenizer.json'), 'utf-8')) as Record<string, unknown>;
    writeFileSync(join(oddNormalizer, 'tokenizer.json'), JSON.stringify({ ...clip, normalizer: { type: 'BertNormalizer' } }));
    expect(() => loadTokenizer(oddNormalizer)).toThrow(/normalizer: normalizer type "BertNormalizer" is not supported/);

    const truncated = scratch();
    writeFileSync(join(truncated, 'spiece.model'), readFileSync(join(data, 't5-tokenizer', 'spiece.model')).subarray(0, 1000));
    expect(() => loadTokenizer(truncated)).toThrow(/spiece.model: protobuf field \d+ runs past the end \(truncated file\?\)/);

    const gpt2 = scratch();
    for (const f of ['vocab.json', 'merges.txt']) copyFileSync(join(data, 'clip-tokenizer', f), join(gpt2, f));
    writeFileSync(join(gpt2, 'tokenizer_config.json'), JSON.stringify({ tokenizer_class: 'GPT2Tokenizer' }));
    expect(() => loadTokenizer(gpt2)).toThrow(/vocab.json \+ merges.txt of a GPT2Tokenizer are not supported without a tokenizer.json/);

    const noPad = scratch();
    writeFileSync(join(noPad, 'tokenizer.json'), JSON.stringify({ ...clip, padding: null }));
    expect(() => loadTokenizer(noPad).encodePadded('x', 8)).toThrow(/no pad token/);
    expect(() => loadTokenizer(join(data, 'clip-tokenizer')).encodePadded('x', 1)).toThrow(/maxLength must be an integer of at least 2/);
  });

  it('model folders: another architecture, weights that do not fit, bad ids', () => {
    expect(() => ClipTextModel.load(join(data, 't5-encoder'))).toThrow(
      /t5-encoder\/config.json describes T5EncoderModel, not a CLIPTextModel or a CLIPTextModelWithProjection/,
    );
    expect(() => T5Encoder.load(join(data, 'clip-text-model'))).toThrow(/describes CLIPTextModel, not a T5EncoderModel/);
    const wrong = scratch();
    const config = JSON.parse(readFileSync(join(data, 't5-encoder-relu', 'config.json'), 'utf-8')) as Record<string, unknown>;
    writeFileSync(join(wrong, 'config.json'), JSON.stringify({ ...config, d_ff: 64 }));
    copyFileSync(join(data, 't5-encoder-relu', 'model.safetensors'), join(wrong, 'model.safetensors'));
    expect(() => T5Encoder.load(wrong)).toThrow(
      /weight 'encoder.block.0.layer.1.DenseReluDense.wi.weight' has shape \(48, 32\) but config.json implies \(64, 32\)/,
    );
    using clip = ClipTextModel.load(join(data, 'clip-text-model'));
    using tooLong = tensor(new Int32Array(78).fill(1), [1, 78]);
    expect(() => clip.forward(tooLong)).toThrow(/78 tokens exceed the model's 77 positions/);
    using floats = tensor(new Float32Array(4), [1, 4]);
    expect(() => clip.forward(floats)).toThrow(/input ids must be int32 \(batch, tokens\), got float32 \(1, 4\)/);
  });
});
