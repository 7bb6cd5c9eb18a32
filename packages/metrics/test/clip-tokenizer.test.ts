import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ClipTokenizer, parseMerges } from '../src/index.js';
import { DATA_DIR } from './helpers/paths.js';
import { tinyMergesFile, tinyVocab } from './helpers/tiny-vocab.js';

const EXCERPT = join(DATA_DIR, 'clip-bpe-excerpt');
const expected = JSON.parse(readFileSync(join(EXCERPT, 'expected.json'), 'utf8')) as {
  cases: { prompt: string; ids: number[] }[];
};

describe('CLIP tokenizer against open_clip on an excerpt of the real vocabulary', () => {
  it.each(expected.cases.map((c) => [c.prompt.slice(0, 40), c] as const))('%s', async (_label, { prompt, ids }) => {
    const tokenizer = await ClipTokenizer.fromDirectory(EXCERPT);
    expect(tokenizer.encode(prompt, 77)).toEqual(ids);
  });

  it('has the real special-token ids', async () => {
    const tokenizer = await ClipTokenizer.fromDirectory(EXCERPT);
    expect([tokenizer.startId, tokenizer.endId, tokenizer.padId]).toEqual([49406, 49407, 49407]);
  });
});

describe('CLIP tokenizer behaviour', () => {
  const tokenizer = new ClipTokenizer(tinyVocab(), parseMerges(tinyMergesFile()));

  it('cleans whitespace and case, splits contractions, digits and punctuation', () => {
    expect(tokenizer.tokenize('  A\tCAT  ')).toEqual(['a</w>', 'cat</w>']);
    expect(tokenizer.tokenize("dog's")).toEqual(['dog</w>', "'s</w>"]);
    expect(tokenizer.tokenize('42!?')).toEqual(['4</w>', '2</w>', '!', '?</w>']);
    expect(tokenizer.tokenize('red-cat')).toEqual(['red</w>', '-</w>', 'cat</w>']);
  });

  it('truncates to the context keeping the end token, pads and masks batches', () => {
    const ids = tokenizer.encode('cat '.repeat(20), 8);
    expect(ids).toHaveLength(8);
    expect(ids[0]).toBe(tokenizer.startId);
    expect(ids[7]).toBe(tokenizer.endId);
    const batch = tokenizer.encodeBatch(['a cat', 'dog'], 6);
    expect(Array.from(batch.inputIds, Number)).toEqual([
      ...tokenizer.encode('a cat', 6),
      tokenizer.padId,
      tokenizer.padId,
      ...tokenizer.encode('dog', 6),
      tokenizer.padId,
      tokenizer.padId,
      tokenizer.padId,
    ]);
    expect(Array.from(batch.attentionMask, Number)).toEqual([1, 1, 1, 1, 0, 0, 1, 1, 1, 0, 0, 0]);
  });
});
