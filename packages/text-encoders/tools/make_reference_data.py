"""Builds the reference data under test/data/ that the @ditcache/text-encoders tests compare with.

Not run by CI, and the tests never need Python: run it by hand when the reference must change.

    python3 -m venv /tmp/tvenv
    /tmp/tvenv/bin/pip install torch transformers tokenizers sentencepiece safetensors numpy protobuf
    (on a machine with only local package indexes, add --index-url file:///opt/pypi/simple
    --extra-index-url file:///opt/pypi-more/simple, or pip spends minutes retrying pypi.org)
    /tmp/tvenv/bin/python packages/text-encoders/tools/make_reference_data.py

What it makes (versions are recorded in test/data/versions.json):
  * clip-tokenizer/       a tiny CLIP byte-level BPE (merges trained with `tokenizers` on a small
                          corpus, vocabulary laid out as OpenAI's: 256 byte symbols, the same with
                          `</w>`, the merges, then the two special tokens) as vocab.json + merges.txt,
                          the files FLUX.1's tokenizer/ folder has;
  * clip-tokenizer-json/  the same tokenizer saved by transformers (tokenizer.json);
  * t5-tokenizer/         a tiny SentencePiece unigram model (spiece.model with T5's special ids:
                          pad 0, eos 1, unk 2) as T5's slow files, normalised by a few custom rules
                          (NORMALIZATION_RULES) so that the file stays small;
  * t5-tokenizer-json/    another one, normalised by nmt_nfkc as T5's own, saved by transformers
                          (tokenizer.json, whose precompiled charsmap is that large nmt_nfkc table,
                          stored gzipped as tokenizer.json.gz: the tests unpack it to a temporary folder);
  * clip-text-model/      CLIPTextModel, quick_gelu, legacy eos_token_id 2, bfloat16 (FLUX.1's text_encoder);
  * clip-text-model-projection/  CLIPTextModelWithProjection, exact GELU, real eos_token_id, float16;
  * t5-encoder/           T5EncoderModel v1.1 (gated-gelu), bfloat16, two shards + index
                          (FLUX.1's text_encoder_2 layout);
  * t5-encoder-relu/      T5EncoderModel v1.0 (relu, one wi), float16, one file;
  * tokens.json           prompts, the normalised strings and token ids from transformers;
  * outputs.safetensors   encoder outputs (float32) for some prompts, run in float32 by torch;
  * t5-buckets.json       T5's relative position buckets for FLUX.1's settings (32 buckets, max
                          distance 128) for relative positions -1023..1023.

Sizes are chosen so that the text encoders plug into testdata/goldens/flux-tiny*: CLIP's hidden
size is the transformer's pooled_projection_dim (24), T5's d_model its joint_attention_dim (32).
"""
import gzip
import json
import os
import shutil
import tempfile

import numpy as np
import safetensors.torch
import sentencepiece as spm
import tokenizers
import torch
import transformers
from tokenizers import Regex, models, normalizers, pre_tokenizers, trainers
from transformers import (AutoTokenizer, CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer,
                          T5Config, T5EncoderModel, T5TokenizerFast)

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, '..', 'test', 'data')

LONG = ' '.join(
    f'{word} number {i}, with a red balloon over the old harbour; then {i * 7 % 13} cats danced.'
    for i, word in enumerate(['First', 'Second', 'Third', 'Fourth', 'Fifth', 'Sixth', 'Seventh', 'Eighth'] * 6))

PROMPTS = [
    '',
    'a photo of a cat',
    'A PHOTO of a Cat, sitting on the MAT!!!',
    '   leading and trailing whitespace   ',
    'tabs\tand\nnewlines\r\n and   runs    of     spaces',
    'numbers 1234567890 3.14159 -42 1e10 ½ ² ① 007',
    'punctuation!?.,;:\'"()[]{}<>@#$%^&*-_=+\\|/~`',
    "contractions: it's, don't, they're, we've, I'm, you'll, he'd, O'NEIL'S",
    'émigré café naïve façade Ångström Øresund',
    'decomposed accents: cafe\u0301 nai\u0308ve A\u030angstro\u0308m',
    'CJK: 一只猫坐在垫子上 日本語のテキスト 한국어 텍스트',
    'emoji: 🐱🐶 👍🏽 👨\u200d👩\u200d👧\u200d👦 🇫🇷 ❤️',
    'full-width ＡＢＣ１２３ and ligatures ﬁ ﬂ and ™ ℃ ㎏ Ⅻ',
    'zero\u200bwidth and non\u00a0breaking\u3000spaces',
    'special tokens in text: <|startoftext|> <|endoftext|> </s> <pad> <unk> <extra_id_0>',
    'mixed scripts Ελληνικά Русский עברית العربية हिन्दी ไทย',
    'control \u0007 bell \u001b escape \u0000 null \ufeff bom end',
    'repeated!!!!!!!!!!! ........ ---- ____ aaaaaaaaaaaaaaaaaaaa',
    'URLs https://example.com/path?q=1&x=2 and a.b@c.org #hashtag @user',
    LONG,
]

CORPUS = [
    'A photo of a cat sitting on a mat. A dog runs in the park with a red balloon.',
    'The quick brown fox jumps over the lazy dog; numbers 0123456789 and punctuation!?',
    'An astronaut riding a horse on the moon, highly detailed, cinematic lighting, 8k.',
    'Café, naïve, façade, émigré: accents are letters too. Ångström and Øresund.',
    "It's a beautiful day, don't you think? They're here, we've seen them, I'm sure you'll agree.",
    'Old harbour at dawn, fishermen and boats, watercolor painting, soft pastel colors.',
    'Portrait of a woman with a hat, oil on canvas, in the style of the old masters.',
    'A futuristic city skyline at night with neon signs and flying cars in the rain.',
    'tabs and newlines and spaces, https://example.com/path?q=1 user@example.org #tag',
] + [p for p in PROMPTS if not any(0x2e80 <= ord(c) for c in p)]


def train_clip_tokenizer(folder):
    """A CLIP-style BPE: merges from `tokenizers`, vocabulary laid out like OpenAI's."""
    tok = tokenizers.Tokenizer(models.BPE(continuing_subword_prefix='', end_of_word_suffix='</w>'))
    tok.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Replace(Regex(r'\s+'), ' '), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""),
                             behavior='removed', invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False),
    ])
    trainer = trainers.BpeTrainer(vocab_size=700, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  end_of_word_suffix='</w>', show_progress=False)
    tok.train_from_iterator(CORPUS * 4, trainer)
    merges = json.loads(tok.to_str())['model']['merges']
    merges = [tuple(m.split(' ')) if isinstance(m, str) else tuple(m) for m in merges]
    byte_chars = sorted(pre_tokenizers.ByteLevel.alphabet(), key=lambda c: bytes_to_unicode_order()[c])
    vocab = {}
    for c in byte_chars:
        vocab[c] = len(vocab)
    for c in byte_chars:
        vocab[c + '</w>'] = len(vocab)
    kept = []
    for a, b in merges:
        if a in vocab and b in vocab and a + b not in vocab:
            vocab[a + b] = len(vocab)
            kept.append((a, b))
    vocab['<|startoftext|>'] = len(vocab)
    vocab['<|endoftext|>'] = len(vocab)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, 'vocab.json'), 'w', encoding='utf-8') as f:
        json.dump(vocab, f, ensure_ascii=False)
    with open(os.path.join(folder, 'merges.txt'), 'w', encoding='utf-8') as f:
        f.write('#version: 0.2\n' + ''.join(f'{a} {b}\n' for a, b in kept))
    # The tokenizer_config.json and special_tokens_map.json of openai/clip-vit-large-patch14, as FLUX.1 ships them.
    special = {'bos_token': '<|startoftext|>', 'eos_token': '<|endoftext|>', 'unk_token': '<|endoftext|>', 'pad_token': '<|endoftext|>'}
    with open(os.path.join(folder, 'special_tokens_map.json'), 'w') as f:
        json.dump(special, f, indent=2)
    with open(os.path.join(folder, 'tokenizer_config.json'), 'w') as f:
        json.dump({'tokenizer_class': 'CLIPTokenizer', 'model_max_length': 77, 'do_lower_case': True,
                   'errors': 'replace', 'add_prefix_space': False, **special}, f, indent=2)
    return len(vocab)


def bytes_to_unicode_order():
    bs = list(range(ord('!'), ord('~') + 1)) + list(range(ord('¡'), ord('¬') + 1)) + list(range(ord('®'), ord('ÿ') + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    # Byte order, as OpenAI's vocabulary lists the byte symbols.
    return {chr(c): b for b, c in zip(bs, cs)}


# Source code points -> replacement: full-width letters, a ligature, a symbol, spaces, and a
# two-code-point source (e + combining acute) that only a grapheme-level lookup finds.
NORMALIZATION_RULES = [
    ('FF21', '41'), ('FF22', '42'), ('FF23', '43'), ('FF11', '31'), ('FB01', '66 69'), ('2122', '54 4D'),
    ('A0', '20'), ('3000', '20'), ('65 301', 'E9'), ('2460', '31'),
]


def train_t5_tokenizer(folder, rules):
    os.makedirs(folder, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        prefix = os.path.join(tmp, 'spiece')
        options = {'normalization_rule_name': 'nmt_nfkc'}
        if rules:
            tsv = os.path.join(tmp, 'rules.tsv')
            with open(tsv, 'w') as f:
                f.write(''.join(f'{a}\t{b}\n' for a, b in rules))
            options = {'normalization_rule_tsv': tsv}
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(CORPUS * 3), model_prefix=prefix, vocab_size=300, model_type='unigram',
            pad_id=0, eos_id=1, unk_id=2, bos_id=-1, character_coverage=1.0, hard_vocab_limit=False, minloglevel=2, **options)
        shutil.copy(prefix + '.model', os.path.join(folder, 'spiece.model'))
    special = {'eos_token': '</s>', 'unk_token': '<unk>', 'pad_token': '<pad>'}
    with open(os.path.join(folder, 'special_tokens_map.json'), 'w') as f:
        json.dump(special, f, indent=2)
    with open(os.path.join(folder, 'tokenizer_config.json'), 'w') as f:
        json.dump({'tokenizer_class': 'T5Tokenizer', 'model_max_length': 512, 'extra_ids': 100, **special}, f, indent=2)


def ids_of(tok, text):
    return tok(text)['input_ids']


def main():
    torch.manual_seed(0)
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    clip_dir, clip_json_dir = os.path.join(OUT, 'clip-tokenizer'), os.path.join(OUT, 'clip-tokenizer-json')
    t5_dir, t5_json_dir = os.path.join(OUT, 't5-tokenizer'), os.path.join(OUT, 't5-tokenizer-json')
    clip_vocab = train_clip_tokenizer(clip_dir)
    train_t5_tokenizer(t5_dir, NORMALIZATION_RULES)
    train_t5_tokenizer(t5_json_dir, None)

    # diffusers' FluxPipeline loads tokenizer/ as CLIPTokenizer and tokenizer_2/ as T5TokenizerFast.
    clip_tok = CLIPTokenizer.from_pretrained(clip_dir)
    t5_tok_spm = T5TokenizerFast.from_pretrained(t5_dir)
    t5_tok = T5TokenizerFast.from_pretrained(t5_json_dir)
    clip_tok.save_pretrained(clip_json_dir)
    t5_tok.save_pretrained(t5_json_dir)
    for d in (clip_json_dir, t5_json_dir):
        for name in ('vocab.json', 'merges.txt', 'spiece.model', 'chat_template.jinja'):
            if os.path.exists(os.path.join(d, name)):
                os.remove(os.path.join(d, name))
    clip_tok_json = CLIPTokenizer.from_pretrained(clip_json_dir)
    t5_tok_json = T5TokenizerFast.from_pretrained(t5_json_dir)
    clip_backend = tokenizers.Tokenizer.from_file(os.path.join(clip_json_dir, 'tokenizer.json'))
    t5_backend = tokenizers.Tokenizer.from_file(os.path.join(t5_json_dir, 'tokenizer.json'))

    records = []
    for text in PROMPTS:
        clip_ids = ids_of(clip_tok, text)
        t5_ids = ids_of(t5_tok, text)
        t5_spm_ids = ids_of(t5_tok_spm, text)
        # The legacy files, the saved tokenizer.json through transformers and the same file run by
        # `tokenizers` alone must agree, or the reference is ambiguous.
        assert clip_ids == ids_of(clip_tok_json, text) == clip_backend.encode(text).ids, text
        assert t5_ids == ids_of(t5_tok_json, text) == t5_backend.encode(text).ids, text
        records.append({
            'text': text,
            'clip_normalized': clip_backend.normalizer.normalize_str(text),
            't5_normalized': t5_backend.normalizer.normalize_str(text),
            'clip_ids': clip_ids,
            't5_ids': t5_ids,
            't5_spm_ids': t5_spm_ids,
            # FluxPipeline's calls: padding="max_length", truncation=True.
            'clip_ids_77': clip_tok(text, padding='max_length', max_length=77, truncation=True)['input_ids'],
            't5_ids_16': t5_tok(text, padding='max_length', max_length=16, truncation=True)['input_ids'],
        })
        if text in (LONG, PROMPTS[1]):
            records[-1]['t5_ids_512'] = t5_tok(text, padding='max_length', max_length=512, truncation=True)['input_ids']
    t5_vocab = len(t5_tok)

    clip_cfg = dict(vocab_size=clip_vocab, hidden_size=24, intermediate_size=48, num_hidden_layers=2, num_attention_heads=2,
                    max_position_embeddings=77, projection_dim=20, layer_norm_eps=1e-5)
    clip = CLIPTextModel(CLIPTextConfig(**clip_cfg, hidden_act='quick_gelu', bos_token_id=0, eos_token_id=2, pad_token_id=1)).eval()
    clip_projection = CLIPTextModelWithProjection(CLIPTextConfig(
        **clip_cfg, hidden_act='gelu', bos_token_id=clip_tok.bos_token_id, eos_token_id=clip_tok.eos_token_id,
        pad_token_id=clip_tok.pad_token_id)).eval()
    t5_cfg = dict(vocab_size=t5_vocab + 12, d_model=32, d_kv=8, num_heads=4, d_ff=48, num_layers=2,
                  relative_attention_num_buckets=32, relative_attention_max_distance=128, layer_norm_epsilon=1e-6)
    t5 = T5EncoderModel(T5Config(**t5_cfg, feed_forward_proj='gated-gelu', tie_word_embeddings=False)).eval()
    t5_relu = T5EncoderModel(T5Config(**t5_cfg, feed_forward_proj='relu')).eval()
    with torch.no_grad():
        for model in (clip, clip_projection, t5, t5_relu):
            for p in model.parameters():
                # Random, non-trivial weights everywhere (norm scales included), so no layer is an identity.
                p.copy_(torch.randn_like(p) * (0.5 if p.dim() == 1 else 0.3) + (1.0 if p.dim() == 1 and p.shape[0] in (24, 32) else 0))
    # FLUX.1 ships its CLIP in bfloat16; the reference runs in float32 on those rounded weights.
    clip.to(torch.bfloat16).save_pretrained(os.path.join(OUT, 'clip-text-model'))
    clip = CLIPTextModel.from_pretrained(os.path.join(OUT, 'clip-text-model'), dtype=torch.float32).eval()
    clip_projection.to(torch.float16).save_pretrained(os.path.join(OUT, 'clip-text-model-projection'))
    clip_projection = CLIPTextModelWithProjection.from_pretrained(os.path.join(OUT, 'clip-text-model-projection'), dtype=torch.float32).eval()
    t5.to(torch.bfloat16).save_pretrained(os.path.join(OUT, 't5-encoder'), max_shard_size='20KB')
    t5_relu.to(torch.float16).save_pretrained(os.path.join(OUT, 't5-encoder-relu'))
    t5_relu = T5EncoderModel.from_pretrained(os.path.join(OUT, 't5-encoder-relu'), dtype=torch.float32).eval()
    # The reference runs in float32 on the bfloat16 weights, as @ditcache/text-encoders computes.
    t5 = T5EncoderModel.from_pretrained(os.path.join(OUT, 't5-encoder'), dtype=torch.float32).eval()

    outputs = {}
    encoded = {'cat': PROMPTS[1], 'long': LONG, 'unicode': PROMPTS[11], 'empty': ''}
    with torch.no_grad():
        for name, text in encoded.items():
            clip_ids = clip_tok(text, padding='max_length', max_length=77, truncation=True, return_tensors='pt')['input_ids']
            out = clip(clip_ids)
            outputs[f'clip.{name}.pooled'] = out.pooler_output
            outputs[f'clip.{name}.last_hidden_state'] = out.last_hidden_state
            out = clip_projection(clip_ids)
            outputs[f'clip_projection.{name}.text_embeds'] = out.text_embeds
            # FLUX.1's 512 tokens for the long prompt (truncated there); 24 keeps the others small.
            length = 512 if name == 'long' else 24
            t5_ids = t5_tok(text, padding='max_length', max_length=length, truncation=True, return_tensors='pt')['input_ids']
            outputs[f't5.{name}.last_hidden_state'] = t5(t5_ids)[0]
            outputs[f't5.{name}.length'] = torch.tensor([float(length)])
            if name != 'long':
                mask = (t5_ids != t5_tok.pad_token_id).long()
                outputs[f't5.{name}.masked_last_hidden_state'] = t5(t5_ids, attention_mask=mask)[0]
                outputs[f't5_relu.{name}.last_hidden_state'] = t5_relu(t5_ids)[0]
    safetensors.torch.save_file({k: v.contiguous().float() for k, v in outputs.items()}, os.path.join(OUT, 'outputs.safetensors'))

    positions = torch.arange(-1023, 1024)
    buckets = transformers.models.t5.modeling_t5.T5Attention._relative_position_bucket(positions, True, 32, 128)
    with open(os.path.join(OUT, 't5-buckets.json'), 'w') as f:
        json.dump({'num_buckets': 32, 'max_distance': 128, 'first_position': -1023, 'buckets': buckets.tolist()}, f)
    with open(os.path.join(OUT, 'tokens.json'), 'w', encoding='utf-8') as f:
        f.write('{"prompts": [\n' + ',\n'.join(json.dumps(r, ensure_ascii=False) for r in records) + '\n]}\n')
    with open(os.path.join(t5_json_dir, 'tokenizer.json'), 'rb') as f, gzip.GzipFile(os.path.join(t5_json_dir, 'tokenizer.json.gz'), 'wb', 9, mtime=0) as g:
        g.write(f.read())
    os.remove(os.path.join(t5_json_dir, 'tokenizer.json'))
    with open(os.path.join(OUT, 'versions.json'), 'w') as f:
        json.dump({'torch': torch.__version__, 'transformers': transformers.__version__, 'tokenizers': tokenizers.__version__,
                   'sentencepiece': spm.__version__, 'numpy': np.__version__}, f, indent=2)


if __name__ == '__main__':
    main()
