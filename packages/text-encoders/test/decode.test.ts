// Decoding CLIP's and T5's ids back to text as transformers 5's batch_decode does, which diffusers
// quotes when it truncates a prompt: the references (test/data/decode.json, written by
// tools/make_decode_references.py) cover partial words, special tokens, pads, non-ASCII and
// random ids, for the slow files and tokenizer.json, with and without clean_up_tokenization_spaces;
// and FLUX's two warnings against diffusers' own (test/data/pipeline-warnings.json).
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { clipLengthWarning, loadTokenizer, maxSequenceLengthWarning, type Tokenizer } from '../src/index.js';
import { data, unpacked } from './helpers.js';

interface Case {
  ids: number[];
  decoded: string;
}

type Json = Record<string, unknown>;

const refs = JSON.parse(readFileSync(join(data, 'decode.json'), 'utf-8')) as {
  tokenizers: Record<string, { plain: Case[]; clean_up: Case[] }>;
  decoders: { folder: string; decoder: Json; cases: Case[] }[];
};

/**
 * The tokenizer in test/data/`name`, with clean_up_tokenization_spaces set as asked in its
 * tokenizer_config.json; given a decoder, tokenizer.json's is replaced by it and the class by
 * PreTrainedTokenizerFast, which keeps the file's decoder.
 */
function load(name: string, cleanUp: boolean, decoder?: Json): Tokenizer {
  return unpacked(name, (dir) => {
    const edit = (file: string, change: (json: Json) => Json) =>
      writeFileSync(join(dir, file), JSON.stringify(change(JSON.parse(readFileSync(join(dir, file), 'utf-8')) as Json)));
    edit('tokenizer_config.json', (c) => ({ ...c, clean_up_tokenization_spaces: cleanUp, ...(decoder && { tokenizer_class: 'PreTrainedTokenizerFast' }) }));
    if (decoder) edit('tokenizer.json', (spec) => ({ ...spec, decoder }));
    return loadTokenizer(dir);
  });
}

describe.each(['clip-tokenizer', 'clip-tokenizer-json', 't5-tokenizer', 't5-tokenizer-json'])('%s decodes as transformers', (name) => {
  it.each([
    ['plain', false],
    ['clean_up', true],
  ] as const)('%s', (key, cleanUp) => {
    const tok = load(name, cleanUp);
    const cases = refs.tokenizers[name][key];
    expect(cases.length).toBeGreaterThan(100);
    for (const c of cases) expect(tok.decode(c.ids), JSON.stringify(c.ids)).toBe(c.decoded);
  });
});

describe('tokenizer.json decoders as the tokenizers library runs them (PreTrainedTokenizerFast)', () => {
  it.each(refs.decoders.map((v) => [JSON.stringify(v.decoder), v] as const))('%s', (_, v) => {
    const tok = load(v.folder, false, v.decoder);
    expect(v.cases.length).toBeGreaterThan(100);
    for (const c of v.cases) expect(tok.decode(c.ids), JSON.stringify(c.ids)).toBe(c.decoded);
  });

  it('refuses the Metaspace settings tokenizers refuses, naming them', () => {
    const decode = (decoder: Json) => () => load('t5-tokenizer-json', false, decoder).decode([4]);
    expect(decode({ type: 'Metaspace', replacement: '\u2581', add_prefix_space: false })).toThrow(
      /tokenizer\.json: decoder: Metaspace add_prefix_space false contradicts prepend_scheme "always" \(false needs "never"\)/,
    );
    expect(decode({ type: 'Metaspace', prepend_scheme: 'always' })).toThrow(/Metaspace replacement null is not one character/);
    expect(decode({ type: 'Metaspace', replacement: '\u2581', prepend_scheme: 'sometimes' })).toThrow(
      /Metaspace prepend_scheme "sometimes" is not one of "always", "first", "never"/,
    );
    expect(decode({ type: 'WordPiece' })).toThrow(/decoder type "WordPiece" is not supported for decoding \(supported: ByteLevel, Metaspace, BPEDecoder\)/);
  });
});

describe("diffusers' truncation warnings", () => {
  const flux = (
    JSON.parse(readFileSync(join(data, 'pipeline-warnings.json'), 'utf-8')) as { flux: { prompt: string; max_sequence_length: number; warnings: string[] } }
  ).flux;

  it("FLUX's, word for word: CLIP's at 77 tokens, T5's at max_sequence_length quoted from CLIP's token 76", () => {
    const clip = loadTokenizer(join(data, 'clip-tokenizer'));
    const t5 = loadTokenizer(join(data, 't5-tokenizer'));
    const { prompt, max_sequence_length: length } = flux;
    expect([clipLengthWarning(clip, [prompt], 77), maxSequenceLengthWarning(t5, [prompt], length, 76)]).toEqual(flux.warnings);
    expect(clipLengthWarning(clip, ['a photo of a cat'], 77)).toBeNull();
    expect(maxSequenceLengthWarning(t5, ['a photo of a cat'], length, 76)).toBeNull();
  });
});
