"""Builds test/data/decode.json, which decode.test.ts compares with: transformers' batch_decode of awkward id
sequences for the CLIP and T5 test tokenizers, as diffusers calls it when a prompt is truncated
(skip_special_tokens False, the tokenizer's own clean_up_tokenization_spaces).

Not run by CI, and the tests never need Python: run it by hand when the references must change.

    /work/refvenv/bin/python packages/text-encoders/tools/make_decode_references.py

The sequences: every tokens.json prompt and a few more, with their special tokens; the same from token 3 on
without the last (diffusers' `untruncated_ids[:, max_length - 1 : -1]`, cutting words in two); with pad
tokens after; seeded random ids over the whole vocabulary (added tokens, sentinels, lone bytes that are not
UTF-8 on their own). For each tokenizer folder as it is and with clean_up_tokenization_spaces true in its
tokenizer_config.json (transformers applies it to T5's Unigram, not to CLIP's BPE).

CLIPTokenizer and T5Tokenizer build their own decoder whatever tokenizer.json says; `decoders` holds the
tokenizer.json decoders as the tokenizers library runs them, through PreTrainedTokenizerFast (which keeps
the file's): CLIP's real BPEDecoder, and Metaspace with each prepend_scheme and in the older
add_prefix_space form.
"""
import json
import os
import random
import shutil
import tempfile

import tokenizers
import torch
import transformers
from transformers import AutoTokenizer

torch.set_num_threads(1)

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, '..', 'test', 'data')
FOLDERS = ['clip-tokenizer', 'clip-tokenizer-json', 't5-tokenizer', 't5-tokenizer-json']
EXTRA_TEXTS = [
    "it's a cat , isn't it ? we're 'here' and they've gone . yes !",
    'a lighthouse on a cliff at dusk, waves crashing below, dramatic sky',
    'émigré 東京 🐱 naïve ½ ﬁ',
    '<pad> </s> <unk> <extra_id_0> <|startoftext|> <|endoftext|> inside text',
]


DECODERS = [
    ('clip-tokenizer-json', {'type': 'BPEDecoder', 'suffix': '</w>'}),
    ('t5-tokenizer-json', {'type': 'Metaspace', 'replacement': '▁', 'prepend_scheme': 'first', 'split': False}),
    ('t5-tokenizer-json', {'type': 'Metaspace', 'replacement': '▁', 'prepend_scheme': 'never', 'split': True}),
    ('t5-tokenizer-json', {'type': 'Metaspace', 'replacement': '▁', 'add_prefix_space': False, 'prepend_scheme': 'never'}),
    ('t5-tokenizer-json', {'type': 'Metaspace', 'replacement': '▁', 'add_prefix_space': True}),
]


def folder_copy(name, tmp, clean_up, decoder=None):
    """The test folder in `tmp`, gunzipped, with clean_up_tokenization_spaces set in tokenizer_config.json (and
    with `decoder` in tokenizer.json, read by PreTrainedTokenizerFast, when given)."""
    import gzip
    out = tempfile.mkdtemp(dir=tmp)
    for f in os.listdir(os.path.join(DATA, name)):
        src = os.path.join(DATA, name, f)
        if f.endswith('.gz'):
            with gzip.open(src, 'rb') as i, open(os.path.join(out, f[:-3]), 'wb') as o:
                shutil.copyfileobj(i, o)
        else:
            shutil.copy(src, out)
    path = os.path.join(out, 'tokenizer_config.json')
    with open(path, encoding='utf-8') as f:
        config = json.load(f)
    config['clean_up_tokenization_spaces'] = clean_up
    if decoder is not None:
        config['tokenizer_class'] = 'PreTrainedTokenizerFast'
        with open(os.path.join(out, 'tokenizer.json'), encoding='utf-8') as f:
            spec = json.load(f)
        spec['decoder'] = decoder
        with open(os.path.join(out, 'tokenizer.json'), 'w', encoding='utf-8') as f:
            json.dump(spec, f, ensure_ascii=False)
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(config, f)
    return out


def sequences(tok, texts, rng):
    seqs = []
    for text in texts:
        ids = tok(text).input_ids
        seqs.append(ids)
        seqs.append(ids[3:-1])
        seqs.append(ids[:5] + [tok.pad_token_id] * 3)
    n = len(tok)
    for _ in range(40):
        seqs.append([rng.randrange(n) for _ in range(rng.randrange(1, 12))])
    seqs.append([])
    seqs.append([tok.pad_token_id, tok.eos_token_id])
    return seqs


def main():
    with open(os.path.join(DATA, 'tokens.json'), encoding='utf-8') as f:
        # The first 300 characters of each, to keep the file small.
        texts = [p['text'][:300] for p in json.load(f)['prompts']] + EXTRA_TEXTS
    refs = {'versions': {'transformers': transformers.__version__, 'tokenizers': tokenizers.__version__}, 'tokenizers': {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name in FOLDERS:
            rng = random.Random(name)
            cases = {}
            for clean_up in (False, True):
                tok = AutoTokenizer.from_pretrained(folder_copy(name, tmp, clean_up))
                if clean_up is False:
                    seqs = sequences(tok, texts, rng)
                # batch_decode of one row per sequence, as diffusers decodes its (batch, tokens) slice.
                cases['clean_up' if clean_up else 'plain'] = [
                    {'ids': ids, 'decoded': tok.batch_decode(torch.tensor([ids], dtype=torch.long))[0]} for ids in seqs]
            refs['tokenizers'][name] = cases
        refs['decoders'] = []
        for name, decoder in DECODERS:
            tok = AutoTokenizer.from_pretrained(folder_copy(name, tmp, False, decoder))
            assert tok.backend_tokenizer.decoder.__class__.__name__ == decoder['type'], tok.backend_tokenizer.decoder
            seqs = sequences(tok, texts, random.Random(json.dumps(decoder)))
            refs['decoders'].append({'folder': name, 'decoder': decoder, 'cases': [
                {'ids': ids, 'decoded': tok.batch_decode(torch.tensor([ids], dtype=torch.long))[0]} for ids in seqs]})
    with open(os.path.join(DATA, 'decode.json'), 'w', encoding='utf-8') as f:
        json.dump(refs, f, ensure_ascii=False, separators=(',', ':'))
        f.write('\n')
    for name, cases in refs['tokenizers'].items():
        differ = sum(a['decoded'] != b['decoded'] for a, b in zip(cases['plain'], cases['clean_up']))
        print(f'{name}: {len(cases["plain"])} sequences, {differ} decoded otherwise with clean_up_tokenization_spaces')


if __name__ == '__main__':
    main()
