import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { loadTokenizer, PrecompiledCharsmap } from '../src/index.js';
import { data, prompts, unpacked } from './helpers.js';

describe('CLIP tokenizer', () => {
  const folders = { 'vocab.json + merges.txt': join(data, 'clip-tokenizer'), 'tokenizer.json': join(data, 'clip-tokenizer-json') };
  for (const [kind, dir] of Object.entries(folders)) {
    it(`matches transformers' CLIPTokenizer on every prompt (${kind})`, () => {
      const tok = loadTokenizer(dir);
      for (const p of prompts) {
        expect(tok.encode(p.text), JSON.stringify(p.text)).toEqual(p.clip_ids);
        expect(tok.encodePadded(p.text, 77).ids, JSON.stringify(p.text)).toEqual(p.clip_ids_77);
      }
      expect(tok.modelMaxLength).toBe(77);
    });
  }
});

describe('T5 tokenizer', () => {
  it("matches transformers' T5TokenizerFast on every prompt (tokenizer.json with nmt_nfkc)", () => {
    const tok = unpacked('t5-tokenizer-json', loadTokenizer);
    for (const p of prompts) {
      expect(tok.encode(p.text), JSON.stringify(p.text)).toEqual(p.t5_ids);
      expect(tok.encodePadded(p.text, 16).ids, JSON.stringify(p.text)).toEqual(p.t5_ids_16);
      if (p.t5_ids_512) expect(tok.encodePadded(p.text, 512).ids).toEqual(p.t5_ids_512);
    }
  });

  it("matches transformers' T5TokenizerFast on every prompt (spiece.model)", () => {
    const tok = loadTokenizer(join(data, 't5-tokenizer'));
    for (const p of prompts) expect(tok.encode(p.text), JSON.stringify(p.text)).toEqual(p.t5_spm_ids);
  });
});

describe('PrecompiledCharsmap', () => {
  it("normalises as the tokenizers library's Precompiled normalizer (T5's nmt_nfkc map)", () => {
    const spec = JSON.parse(unpacked('t5-tokenizer-json', (dir) => readFileSync(join(dir, 'tokenizer.json'), 'utf-8'))) as {
      normalizer: { precompiled_charsmap: string };
    };
    const charsmap = PrecompiledCharsmap.fromBase64(spec.normalizer.precompiled_charsmap);
    for (const p of prompts) expect(charsmap.normalize(p.text), JSON.stringify(p.text)).toBe(p.t5_normalized);
    expect(charsmap.normalize('ＡＢＣ ﬁ ①')).toBe('ABC fi 1');
  });

  it('refuses a map whose trie does not fit', () => {
    expect(() => new PrecompiledCharsmap(Uint8Array.from([8, 0, 0, 0, 1]))).toThrow(/does not fit/);
  });
});
