"""Builds the decoder-LLM tokenizer references under test/data/ that llm-tokenizers.test.ts compares with.

Real Llama 3 and Qwen2 vocabularies cannot be downloaded where the tests run, so this trains two small
byte-level BPE tokenizers of our own with the `tokenizers` library and writes them in the exact
tokenizer.json layout of the real ones (normalizer, Split pattern, ByteLevel settings, ignore_merges,
post-processor, decoder, special tokens in added_tokens after the BPE vocabulary). The reference ids come
from the `tokenizers` library reading those files (through transformers' PreTrainedTokenizerFast, which
keeps tokenizer.json as it is; transformers 5's LlamaTokenizerFast / Qwen2Tokenizer would rebuild parts of
it, which the real pipelines do not want), called as the diffusers pipelines call them.

Not run by CI, and the tests never need Python: run it by hand when the references must change.

    /work/refvenv/bin/python packages/text-encoders/tools/make_llm_tokenizer_references.py

What it makes:
  * llama3-tokenizer/        Llama 3.1 Instruct's layout (HiDream's tokenizer_4): no normalizer, the Llama 3
                             Split pattern, ignore_merges, <|begin_of_text|> by TemplateProcessing, 256
                             special tokens; tokenizer_config as Meta's (eos <|eot_id|>, no pad token);
  * hunyuan-video-tokenizer/ the same with LLaVA's <image> and <pad> appended (HunyuanVideo's tokenizer),
                             pad token <pad>;
  * qwen2-tokenizer/         Qwen2.5-VL's layout (Qwen-Image's tokenizer): NFC, the Qwen2 Split pattern,
                             ByteLevel post-processor, <|endoftext|>, <|im_start|>, <|im_end|>, the vision
                             and tool tokens;
  * qwen2-tokenizer-files/   the same as a slow Qwen2Tokenizer saves it (vocab.json, merges.txt, the added
                             tokens in tokenizer_config.json), checked to give the same ids through
                             transformers' Qwen2Tokenizer;
  * llm-tokens.json          for every awkward string: ids with and without special tokens, the decoded
                             text where it differs from the string; the HiDream, HunyuanVideo and Qwen-Image
                             tokenizer calls (ids, padding, truncation, attention masks, HiDream's warning);
                             a few padded batches; a variant with lowercasing and flagged added tokens.

Padded outputs are stored as the real ids plus a pad count, after checking that transformers' output has
exactly that form (ids, then pad ids with mask 0), to keep the file small.
"""
import json
import os
import random
import tempfile

import tokenizers
import torch
import transformers
from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, '..', 'test', 'data')

LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                  r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+")

# Llama 3.1's special tokens 128000.. in order: the named ones at their real offsets, reserved ones between.
LLAMA3_NAMED = {0: '<|begin_of_text|>', 1: '<|end_of_text|>', 4: '<|finetune_right_pad_id|>', 6: '<|start_header_id|>',
                7: '<|end_header_id|>', 8: '<|eom_id|>', 9: '<|eot_id|>', 10: '<|python_tag|>'}
QWEN2_SPECIAL = ['<|endoftext|>', '<|im_start|>', '<|im_end|>', '<|object_ref_start|>', '<|object_ref_end|>', '<|box_start|>',
                 '<|box_end|>', '<|quad_start|>', '<|quad_end|>', '<|vision_start|>', '<|vision_end|>', '<|vision_pad|>',
                 '<|image_pad|>', '<|video_pad|>']
QWEN2_NOT_SPECIAL = ['<tool_call>', '</tool_call>', '<|fim_prefix|>', '<|fim_middle|>', '<|fim_suffix|>', '<|fim_pad|>',
                     '<|repo_name|>', '<|file_sep|>']

# The pipelines' prompt templates, as diffusers writes them.
HUNYUAN_TEMPLATE = (
    "<|start_header_id|>system<|end_header_id|>\n\nDescribe the video by detailing the following aspects: "
    "1. The main content and theme of the video."
    "2. The color, shape, size, texture, quantity, text, and spatial relationships of the objects."
    "3. Actions, events, behaviors temporal relationships, physical movement changes of the objects."
    "4. background environment, light, style and atmosphere."
    "5. camera angles, movements, and transitions used in the video:<|eot_id|>"
    "<|start_header_id|>user<|end_header_id|>\n\n{}<|eot_id|>"
)
QWEN_IMAGE_TEMPLATE = ("<|im_start|>system\nDescribe the image by detailing the color, shape, size, texture, quantity, text, "
                       "spatial relationships of the objects and background:<|im_end|>\n<|im_start|>user\n{}<|im_end|>\n"
                       "<|im_start|>assistant\n")
QWEN_IMAGE_DROP_IDX = 34
QWEN_IMAGE_MAX_LENGTH = 1024
HIDREAM_MAX_LENGTH = 128
HUNYUAN_MAX_LENGTH = 256

WORDS = ('the a photo of cat dog sitting on mat under old red balloon harbour city night light shadow river mountain '
         'painting portrait woman man child tree forest ocean wave sunset golden hour style detailed camera lens '
         'movement slowly walking running dancing together beautiful quiet bright dark colour texture shape size '
         'quantity text spatial relationship objects background environment atmosphere video image scene').split()
FOREIGN = ['一只猫坐在垫子上', '日本語のテキストです', '한국어 텍스트', 'Ελληνικά γράμματα', 'Русский текст здесь',
           'עברית כתובה', 'العربية مكتوبة', 'हिन्दी पाठ', 'ไทยภาษา', 'émigré café naïve façade', 'Ångström Øresund',
           'Straße größer', 'ÇAĞRI İstanbul ılık', 'Ελλάδα ΟΔΟΣ']


def corpus(rng):
    """Training text: English-like sentences with some numbers, punctuation, contractions and other scripts."""
    lines = []
    for _ in range(6000):
        n = rng.randint(3, 14)
        words = [rng.choice(WORDS) for _ in range(n)]
        if rng.random() < 0.3:
            words.insert(rng.randrange(len(words)), str(rng.randint(0, 99999)))
        if rng.random() < 0.2:
            words.insert(rng.randrange(len(words)), rng.choice(["it's", "don't", "they're", "we've", "I'm", "you'll", "he'd"]))
        if rng.random() < 0.25:
            words.insert(rng.randrange(len(words)), rng.choice(FOREIGN))
        line = ' '.join(words)
        if rng.random() < 0.5:
            line = line[0].upper() + line[1:]
        lines.append(line + rng.choice(['.', '!', '?', ',', ':', '...', ' 🐱', '\n']))
    return lines


def trained_bpe(lines, vocab_size):
    """Vocabulary and merges of a byte-level BPE trained on `lines` with the given Split pattern."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(tokenizers.Regex(LLAMA3_PATTERN), behavior='isolated'),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(lines, trainer)
    model = json.loads(tok.to_str())['model']
    return model['vocab'], model['merges']


def added(id_, content, special=True, normalized=False):
    return {'id': id_, 'content': content, 'single_word': False, 'lstrip': False, 'rstrip': False,
            'normalized': normalized, 'special': special}


# Whole words that Llama 3's vocabulary holds but its merges cannot build (the real one, converted from
# tiktoken ranks, has many): with ignore_merges they are one token, without it several.
# The contractions among them tell a case-insensitive contraction group from a case-sensitive one.
UNREACHABLE = [' PHOTO', ' MAT', 'STRASSE', ' ISTANBUL', ' World', 'Hello', ' DON', ' Cat', ' ΣΊΣΥΦΟΣ', ' 一只猫',
               "'Sunset", "'TWAS", "'ſtop", "'LLama", "'REd", "'Dark"]


def llama3_json(vocab, merges):
    """tokenizer.json as Llama 3.1's: merges written as "a b" strings, ignore_merges, BOS by template."""
    vocab = dict(vocab)
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    for word in UNREACHABLE:
        piece = byte_level.pre_tokenize_str(word)[0][0]
        assert piece not in vocab, f'{word!r} is already in the vocabulary'
        vocab[piece] = len(vocab)
    base = len(vocab)
    names = []
    reserved = 0
    for i in range(256):
        if i in LLAMA3_NAMED:
            names.append(LLAMA3_NAMED[i])
        else:
            names.append(f'<|reserved_special_token_{reserved}|>')
            reserved += 1
    bos = '<|begin_of_text|>'
    return {
        'version': '1.0', 'truncation': None, 'padding': None,
        'added_tokens': [added(base + i, name) for i, name in enumerate(names)],
        'normalizer': None,
        'pre_tokenizer': {'type': 'Sequence', 'pretokenizers': [
            {'type': 'Split', 'pattern': {'Regex': LLAMA3_PATTERN}, 'behavior': 'Isolated', 'invert': False},
            {'type': 'ByteLevel', 'add_prefix_space': False, 'trim_offsets': True, 'use_regex': False}]},
        'post_processor': {'type': 'Sequence', 'processors': [
            {'type': 'ByteLevel', 'add_prefix_space': True, 'trim_offsets': False, 'use_regex': True},
            {'type': 'TemplateProcessing',
             'single': [{'SpecialToken': {'id': bos, 'type_id': 0}}, {'Sequence': {'id': 'A', 'type_id': 0}}],
             'pair': [{'SpecialToken': {'id': bos, 'type_id': 0}}, {'Sequence': {'id': 'A', 'type_id': 0}},
                      {'SpecialToken': {'id': bos, 'type_id': 1}}, {'Sequence': {'id': 'B', 'type_id': 1}}],
             'special_tokens': {bos: {'id': bos, 'ids': [base], 'tokens': [bos]}}}]},
        'decoder': {'type': 'ByteLevel', 'add_prefix_space': True, 'trim_offsets': True, 'use_regex': True},
        'model': {'type': 'BPE', 'dropout': None, 'unk_token': None, 'continuing_subword_prefix': None,
                  'end_of_word_suffix': None, 'fuse_unk': False, 'byte_fallback': False, 'ignore_merges': True,
                  'vocab': vocab, 'merges': [' '.join(m) for m in merges]},
    }


def qwen2_json(vocab, merges):
    """tokenizer.json as Qwen2.5-VL's: NFC, ByteLevel post-processor, no BOS, merges as pairs."""
    base = len(vocab)
    tokens = [added(base + i, t) for i, t in enumerate(QWEN2_SPECIAL)]
    tokens += [added(base + len(QWEN2_SPECIAL) + i, t, special=False) for i, t in enumerate(QWEN2_NOT_SPECIAL)]
    byte_level = {'type': 'ByteLevel', 'add_prefix_space': False, 'trim_offsets': False, 'use_regex': False}
    return {
        'version': '1.0', 'truncation': None, 'padding': None,
        'added_tokens': tokens,
        'normalizer': {'type': 'NFC'},
        'pre_tokenizer': {'type': 'Sequence', 'pretokenizers': [
            {'type': 'Split', 'pattern': {'Regex': QWEN2_PATTERN}, 'behavior': 'Isolated', 'invert': False}, byte_level]},
        'post_processor': byte_level,
        'decoder': byte_level,
        'model': {'type': 'BPE', 'dropout': None, 'unk_token': None, 'continuing_subword_prefix': '',
                  'end_of_word_suffix': '', 'fuse_unk': False, 'byte_fallback': False, 'ignore_merges': False,
                  'vocab': vocab, 'merges': merges},
    }


LLAMA3_CONFIG = {'bos_token': '<|begin_of_text|>', 'clean_up_tokenization_spaces': True, 'eos_token': '<|eot_id|>',
                 'model_input_names': ['input_ids', 'attention_mask'], 'model_max_length': 131072,
                 'tokenizer_class': 'PreTrainedTokenizerFast'}
HUNYUAN_CONFIG = {'bos_token': '<|begin_of_text|>', 'clean_up_tokenization_spaces': True, 'eos_token': '<|eot_id|>',
                  'model_max_length': 131072, 'pad_token': '<pad>', 'padding_side': 'right', 'tokenizer_class': 'LlamaTokenizerFast'}
QWEN2_CONFIG = {'add_prefix_space': False, 'bos_token': None, 'clean_up_tokenization_spaces': False, 'eos_token': '<|im_end|>',
                'errors': 'replace', 'model_max_length': 131072, 'pad_token': '<|endoftext|>', 'split_special_tokens': False,
                'tokenizer_class': 'Qwen2Tokenizer', 'unk_token': None}


def write_folder(name, spec, config):
    folder = os.path.join(OUT, name)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, 'tokenizer.json'), 'w', encoding='utf-8') as f:
        json.dump(spec, f, ensure_ascii=False, separators=(',', ':'))
    with open(os.path.join(folder, 'tokenizer_config.json'), 'w', encoding='utf-8') as f:
        json.dump(config, f, indent=2, ensure_ascii=False)
    return folder


def write_qwen2_files(qwen_folder):
    """The Qwen2 tokenizer as a slow Qwen2Tokenizer saves it (vocab.json, merges.txt, added_tokens_decoder), with
    no tokenizer.json; transformers' Qwen2Tokenizer rebuilds it and must give the tokenizer.json's ids."""
    spec = json.load(open(os.path.join(qwen_folder, 'tokenizer.json'), encoding='utf-8'))
    folder = os.path.join(OUT, 'qwen2-tokenizer-files')
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, 'vocab.json'), 'w', encoding='utf-8') as f:
        json.dump(spec['model']['vocab'], f, ensure_ascii=False, separators=(',', ':'))
    with open(os.path.join(folder, 'merges.txt'), 'w', encoding='utf-8') as f:
        f.write('#version: 0.2\n' + ''.join(' '.join(m) + '\n' for m in spec['model']['merges']))
    config = dict(QWEN2_CONFIG, added_tokens_decoder={
        str(t['id']): {k: t[k] for k in ['content', 'lstrip', 'normalized', 'rstrip', 'single_word', 'special']}
        for t in spec['added_tokens']})
    with open(os.path.join(folder, 'tokenizer_config.json'), 'w', encoding='utf-8') as f:
        json.dump(config, f, indent=2, ensure_ascii=False)
    return folder


def load(folder):
    """The folder as transformers' PreTrainedTokenizerFast (tokenizer.json kept as the tokenizers library reads it)."""
    tok = PreTrainedTokenizerFast.from_pretrained(folder)
    raw = Tokenizer.from_file(os.path.join(folder, 'tokenizer.json'))
    assert tok.backend_tokenizer.to_str() == raw.to_str(), f'{folder}: transformers changed the tokenizer.json'
    return tok


LONG_EN = ' '.join(f'{w} number {i}, with a red balloon over the old harbour; then {i * 7 % 13} cats danced.'
                   for i, w in enumerate(['First', 'Second', 'Third', 'Fourth', 'Fifth', 'Sixth', 'Seventh', 'Eighth'] * 5))


def awkward_strings():
    """At least 300 strings that stress the pre-tokenizer, the byte-level alphabet and added tokens."""
    base = [
        '', ' ', '  ', '   ', '\t', '\n', '\n\n', '\r\n', ' \n ', '\n \n', ' \t\n\r ', 'a', 'A', '1', '.', "'", "'s",
        'a photo of a cat', 'A PHOTO of a Cat, sitting on the MAT!!!', '   leading and trailing whitespace   ',
        'tabs\tand\nnewlines\r\n and   runs    of     spaces', 'line one\n\n\nline two\r\n\r\nline three \n',
        "it's don't they're we've I'm you'll he'd", "IT'S DON'T THEY'RE WE'VE I'M YOU'LL HE'D",
        "It'S dOn'T tHeY'rE wE'vE i'M yOu'Ll He'D", "'s's 'S'S ''s 's' s' 'ss", "O'NEIL'S rock'n'roll y'all ma'am",
        "'ſ 'ſt DON'ſ", "'Sunset 'TWAS 'ſtop 'LLama 'REd 'Dark", "'The 'THE 'Tis 'Twas 'Sit 'DOG 'Mat 'Men 'VEry 'Very",
        "the'Sunset x'TWAS'ſtop'LLama", "'sunset 'twas 'llama 'red 'dark 'the 'sit", "'ſtop'ſtop 'SSS 'ſſ", "I'VE 'Re 'rE 'LL 'lL 'Ll 'D 'M 'T", "don’t it’s (curly apostrophes)", "'\u017f'\u212a",
        '1 12 123 1234 12345 123456 1234567 12345678', '3.14159 -42 1e10 0x1F 1,000,000 007 2024-01-01',
        '٠١٢٣٤٥٦٧٨٩ ١٢٣٤', '①②③④⑤ ½¼¾ ²³¹', 'ⅠⅡⅢⅣⅫ ↉', '𝟙𝟚𝟛𝟜𝟝 𝟎𝟏', '一二三四五 七八九', '١٢٣abc٤٥٦', 'abc123def4567ghi',
        '99 bottles, 1000000000000 stars', '0' * 40, '12' * 17 + '3',
        'émigré café naïve façade Ångström Øresund', 'cafe\u0301 nai\u0308ve A\u030angstro\u0308m',
        'e\u0301\u0301\u0301 a\u0300\u0316 \u0301start', 'Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334\u0319A\u0310L\u0357G\u0344O',
        '한국어 텍스트 \u1100\u1161\u11a8', 'ﾊﾟﾋﾟ ｶﾞ half-width kana', 'Ａｂｃ１２３ full width ＡＢＣ',
        'ﬁ ﬂ ﬀ ligatures and ™ ℃ ㎏', 'CJK: 一只猫坐在垫子上 日本語のテキスト', 'mixed Ελληνικά Русский עברית العربية हिन्दी ไทย',
        'Straße STRASSE ß ẞ', 'İstanbul ISTANBUL ı i̇ I', 'ΣΊΣΥΦΟΣ σίσυφος ς', 'Ǆ ǅ ǆ Ǉ ǈ ǉ', 'ǰ ΐ ΰ ŉ',
        'emoji: 🐱🐶 👍🏽 👨\u200d👩\u200d👧\u200d👦 🇫🇷 ❤️', '👩🏽\u200d💻👨🏿\u200d🚀🏳️\u200d🌈🏴\u200d☠️', '1️⃣ #️⃣ *️⃣',
        '🇺🇸🇯🇵🇩🇪', '😀😃😄😁😆😅😂🤣', 'a🐱b🐶c', '🐱 🐱  🐱   🐱', 'flag🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f',
        'zero\u200bwidth non\u00a0breaking\u3000ideographic', 'nel\u0085line sep\u2028para\u2029end',
        'thin\u2009space hair\u200aspace\u202fnarrow\u205fmath', 'bom\ufeffinside', 'ZWNJ\u200cZWJ\u200d', 'soft\u00adhyphen',
        'control \u0007 bell \u001b escape \u0000 null \x7f del', 'vertical\u000btab form\u000cfeed', 'lone \U0001F600 astral',
        'repeated!!!!!!!!!!! ........ ---- ____ aaaaaaaaaaaaaaaaaaaa', '?!?!?! ... ,,, ;;; ::: ///',
        'punctuation!?.,;:\'"()[]{}<>@#$%^&*-_=+\\|/~`', '  !leading punctuation', 'trailing punctuation!  ',
        'URLs https://example.com/path?q=1&x=2 and a.b@c.org #hashtag @user', 'C:\\Users\\name\\file.txt',
        'def f(x):\n    return x ** 2\n', '{"key": [1, 2, 3], "nested": {"a": null}}', '<html><body>hi</body></html>',
        '$100 €50 £30 ¥1000 ₹500 ₿0.5', '+1 (555) 123-4567', 'x² + y² = z²', 'α β γ δ ∑ ∏ ∫ √ ∞ ≠ ≤ ≥',
        '\u0301', '\u200d', '\ufe0f', '\U0001f3fb', ' \u0301', 'a\u200db', '\u3000\u3000', '\u00a0\u00a0x', 'x\u00a0\u00a0',
        'ab' * 50, 'abc ' * 40, 'Hello' + ' ' * 30 + 'World', 'x\n' * 20,
        LONG_EN, LONG_EN + ' ' + LONG_EN,
        # One pre-tokenizer piece of thousands of characters, merged many times.
        'harbour' * 400, '🐱🐶' * 400,
        # Past HiDream's 128 tokens with what Python's repr escapes in the part its warning quotes.
        LONG_EN[:700] + ' tail\n\t\u0007 "double" \'single\' \\ ü\u00a0\u0085 🐱\u200b\u2028 é\U000e0001' * 3,
        LONG_EN[:700] + " it's only 'single' quotes\r\n ÿ\x7f" * 3,
    ]
    specials = [
        '<|begin_of_text|>', '<|begin_of_text|>hello', 'a<|eot_id|>b', ' <|eot_id|> ', '<|eot_id|><|eot_id|>',
        '<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>', '<|reserved_special_token_5|>x',
        '<|end_of_text|> <|python_tag|>', '<|begin_of_text', '<|eot_id', 'eot_id|>', '<| eot_id |>', '<|EOT_ID|>',
        '<|endoftext|>', '<|im_start|>user\nhi<|im_end|>\n', '<|im_start|>system\n<|im_end|>', ' <|im_end|> ',
        '<|vision_start|><|image_pad|><|image_pad|><|vision_end|>', '<tool_call>{"a": 1}</tool_call>',
        '<|fim_prefix|>code<|fim_suffix|>more<|fim_middle|>', '<|im_start', 'im_end|>', '<<|im_end|>>',
        '<|endoftext|><|endoftext|>x<|endoftext|>', 'cafe\u0301<|im_end|>cafe\u0301', '<image> and <pad> inside',
        'two<image><image>images', '<|begin_of_text|><|im_start|><image>', 'e\u0301<|eot_id|>\u0301',
    ]
    out = base + specials
    rng = random.Random(1234)
    pieces = [s for s in base if 0 < len(s) < 60] + specials
    while len(out) < 360:
        k = rng.randint(2, 4)
        out.append(rng.choice(['', ' ', '\n', '']).join(rng.choice(pieces) for _ in range(k)))
    # Long mixed texts, past every maximum length (1058 tokens for Qwen-Image).
    mixed = [rng.choice(pieces) for _ in range(400)]
    out.append(' '.join(mixed))
    out.append(''.join(mixed[:250]))
    seen = set()
    unique = []
    for s in out:
        if s not in seen:
            seen.add(s)
            unique.append(s)
    return unique


def padded(enc_ids, enc_mask, pad_id, side='right'):
    """(real ids, pad count) of a padded row, after checking that it is real ids then pads (mask 1 then 0)."""
    n = sum(enc_mask)
    real = enc_ids[:n] if side == 'right' else enc_ids[len(enc_ids) - n:]
    pads = enc_ids[n:] if side == 'right' else enc_ids[:len(enc_ids) - n]
    mask = enc_mask[:n] if side == 'right' else enc_mask[len(enc_mask) - n:]
    assert all(m == 1 for m in mask) and all(p == pad_id for p in pads), 'padding is not a run of pad ids at the end'
    return real, len(pads)


def strip_head(ids, head):
    """ids after a shared head (the template's tokens before the prompt), or None when they do not start with it."""
    return ids[len(head):] if ids[:len(head)] == head else None


def hidream_call(tok, text):
    """HiDream's _get_llama3_prompt_embeds with max_sequence_length 128: the padded ids and diffusers' warning."""
    n = min(HIDREAM_MAX_LENGTH, tok.model_max_length)
    enc = tok([text], padding='max_length', max_length=n, truncation=True, add_special_tokens=True, return_tensors='pt')
    untruncated = tok([text], padding='longest', return_tensors='pt').input_ids
    warning = None
    if untruncated.shape[-1] >= enc.input_ids.shape[-1] and not torch.equal(enc.input_ids, untruncated):
        removed_text = tok.batch_decode(untruncated[:, n - 1:-1])
        warning = ('The following part of your input was truncated because `max_sequence_length` is set to '
                   f' {n} tokens: {removed_text}')
    real, pad = padded(enc.input_ids[0].tolist(), enc.attention_mask[0].tolist(), tok.pad_token_id)
    return real, pad, warning


def records_llama3(tok, hunyuan_tok, strings, hunyuan_head, hunyuan_crop):
    records = []
    for text in strings:
        ids = tok(text).input_ids
        plain = tok(text, add_special_tokens=False).input_ids
        rec = {'text': text, 'ids': ids, 'plain': plain}
        decoded = tok.decode(plain)
        if decoded != text:
            rec['decoded'] = decoded
        real, pad, warning = hidream_call(tok, text)
        assert real == ids[:len(real)]
        rec['hidream'] = {'kept': len(real), 'pad': pad}
        if warning:
            rec['hidream']['warning'] = warning
        # HunyuanVideo's _get_llama_prompt_embeds: the template around the prompt, max_length 256 + crop_start.
        enc = hunyuan_tok([HUNYUAN_TEMPLATE.format(text)], max_length=HUNYUAN_MAX_LENGTH + hunyuan_crop,
                          padding='max_length', truncation=True, return_attention_mask=True, return_tensors='pt')
        real, pad = padded(enc.input_ids[0].tolist(), enc.attention_mask[0].tolist(), hunyuan_tok.pad_token_id)
        tail = strip_head(real, hunyuan_head)
        rec['hunyuan'] = {'tail': tail, 'pad': pad} if tail is not None else {'ids': real, 'pad': pad}
        records.append(rec)
    return records


def records_qwen2(tok, strings, qwen_head):
    records = []
    for text in strings:
        ids = tok(text).input_ids
        plain = tok(text, add_special_tokens=False).input_ids
        assert ids == plain, 'Qwen2 adds no special tokens'
        rec = {'text': text, 'ids': ids}
        decoded = tok.decode(plain)
        if decoded != text:
            rec['decoded'] = decoded
        # Qwen-Image's _get_qwen_prompt_embeds: the chat template, max_length 1024 + drop_idx, padding longest.
        enc = tok([QWEN_IMAGE_TEMPLATE.format(text)], max_length=QWEN_IMAGE_MAX_LENGTH + QWEN_IMAGE_DROP_IDX, padding=True,
                  truncation=True, return_tensors='pt')
        real, pad = padded(enc.input_ids[0].tolist(), enc.attention_mask[0].tolist(), tok.pad_token_id)
        assert pad == 0
        tail = strip_head(real, qwen_head)
        rec['qwen_image'] = {'tail': tail} if tail is not None else {'ids': real}
        records.append(rec)
    return records


def batches(tok, strings, template, max_length, rng):
    """A few batches as the pipelines pass several prompts at once (padding to the longest)."""
    out = []
    for _ in range(4):
        texts = [template.format(rng.choice(strings)) for _ in range(rng.randint(2, 4))]
        enc = tok(texts, max_length=max_length, padding=True, truncation=True)
        out.append({'texts': texts, 'max_length': max_length, 'ids': enc.input_ids, 'mask': enc.attention_mask})
    return out


def variant(qwen_folder, strings):
    """Qwen2's tokenizer.json with lowercasing and added tokens carrying every flag: per-code-point lowercasing,
    lstrip / rstrip / single_word, and normalized tokens matched in the lowercased text."""
    spec = json.load(open(os.path.join(qwen_folder, 'tokenizer.json'), encoding='utf-8'))
    spec['normalizer'] = {'type': 'Sequence', 'normalizers': [{'type': 'NFC'}, {'type': 'Lowercase'}]}
    tok = Tokenizer.from_str(json.dumps(spec))
    flagged = [
        AddedToken('[LS]', lstrip=True, normalized=False, special=True),
        AddedToken('[RS]', rstrip=True, normalized=False, special=True),
        AddedToken('[BOTH]', lstrip=True, rstrip=True, normalized=False, special=True),
        AddedToken('word', single_word=True, normalized=False),
        AddedToken('MiXeD', normalized=True),
        AddedToken('Cafe\u0301', normalized=True),
        AddedToken('İx', normalized=True),
        AddedToken('<|im_start|>user', normalized=False, special=True),
        AddedToken('<|图|>', normalized=False, special=True),
    ]
    tok.add_tokens(flagged)
    added_json = [t for t in json.loads(tok.to_str())['added_tokens'] if t['id'] >= spec['added_tokens'][-1]['id'] + 1]
    texts = [
        'x [LS] y', 'x   [LS]y', '[LS]', ' \t[LS]\n', 'x [RS]   y', '[RS]\n\nz', 'a [BOTH] b', 'a\u3000[BOTH]\u3000b',
        '[LS][RS][BOTH]', 'word', 'a word here', 'awordb', 'word_x', 'x_word', 'wordword', 'word1', 'éword', 'word\u0301',
        '(word)', 'mixed MIXED MiXeD mIxEd', 'xmixedx', 'CAFÉ Café cafe\u0301 CAFE\u0301', 'İx İX iX i\u0307x',
        '<|im_start|>user hi', '<|IM_START|>user', 'a<|图|>b', '图<|图|>图', 'İSTANBUL ΣΊΣΥΦΟΣ ẞ Ǆ', 'ΌΣΟΣ ΣΑΣ', 'ǅemal', 'ΐΰ', 'K \u212a \u212b',
    ] + [s for s in strings if len(s) < 80][:80]
    return {'normalizer': spec['normalizer'], 'added_tokens': added_json,
            'strings': [{'text': t, 'ids': tok.encode(t).ids, 'decoded': tok.decode(tok.encode(t).ids, skip_special_tokens=False)}
                        for t in texts]}


def case_sensitive_differences(folder, pattern, strings):
    """Strings whose ids change when the contraction group is case-sensitive: proof that the references test (?i:."""
    spec = json.load(open(os.path.join(folder, 'tokenizer.json'), encoding='utf-8'))
    spec['pre_tokenizer']['pretokenizers'][0]['pattern']['Regex'] = pattern.replace('(?i:', '(?:')
    sensitive = Tokenizer.from_str(json.dumps(spec))
    real = Tokenizer.from_file(os.path.join(folder, 'tokenizer.json'))
    return sum(1 for s in strings if sensitive.encode(s).ids != real.encode(s).ids)


def ignore_merges_differences(folder, strings):
    """Strings whose Llama 3 ids change without ignore_merges: proof that the references exercise it."""
    spec = json.load(open(os.path.join(folder, 'tokenizer.json'), encoding='utf-8'))
    spec['model']['ignore_merges'] = False
    without = Tokenizer.from_str(json.dumps(spec))
    with_ = Tokenizer.from_file(os.path.join(folder, 'tokenizer.json'))
    return [{'text': s, 'ids': without.encode(s, add_special_tokens=False).ids} for s in strings
            if without.encode(s).ids != with_.encode(s).ids]


def main():
    rng = random.Random(0)
    lines = corpus(rng)
    vocab, merges = trained_bpe(lines, 2000)

    llama_spec = llama3_json(vocab, merges)
    llama_folder = write_folder('llama3-tokenizer', llama_spec, LLAMA3_CONFIG)
    hunyuan_spec = json.loads(json.dumps(llama_spec))
    next_id = hunyuan_spec['added_tokens'][-1]['id'] + 1
    hunyuan_spec['added_tokens'] += [added(next_id, '<image>'), added(next_id + 1, '<pad>')]
    hunyuan_folder = write_folder('hunyuan-video-tokenizer', hunyuan_spec, HUNYUAN_CONFIG)
    qwen_folder = write_folder('qwen2-tokenizer', qwen2_json(vocab, merges), QWEN2_CONFIG)

    llama = load(llama_folder)
    llama.pad_token = llama.eos_token  # as HiDreamImagePipeline.__init__ does
    hunyuan = load(hunyuan_folder)
    qwen = load(qwen_folder)
    qwen_files = AutoTokenizer.from_pretrained(write_qwen2_files(qwen_folder))
    assert type(qwen_files).__name__ == 'Qwen2Tokenizer'

    strings = awkward_strings()
    # diffusers fixes crop_start at 95, the real vocabulary's count of template tokens before the prompt; ours has
    # its own count, found the same way (the template's tokens up to the placeholder).
    hunyuan_head = hunyuan(HUNYUAN_TEMPLATE.split('{}')[0]).input_ids
    hunyuan_crop = len(hunyuan_head)
    qwen_head = qwen(QWEN_IMAGE_TEMPLATE.split('{}')[0]).input_ids

    # HunyuanVideo's crop_start for a template given without one: the template padded to model_max_length, less 2.
    template_crop = {'model_max_length': hunyuan(HUNYUAN_TEMPLATE, padding='max_length', return_tensors='pt').input_ids.shape[-1] - 2}
    hunyuan.model_max_length = int(1e30)  # transformers' "no limit": no padding
    template_crop['unlimited'] = hunyuan(HUNYUAN_TEMPLATE, padding='max_length', return_tensors='pt').input_ids.shape[-1] - 2
    hunyuan.model_max_length = HUNYUAN_CONFIG['model_max_length']

    assert all(qwen_files(s).input_ids == qwen(s).input_ids for s in strings), 'Qwen2Tokenizer rebuilt differs'

    im_diff = ignore_merges_differences(llama_folder, strings)
    assert im_diff, 'no string exercises ignore_merges'
    folds = {name: case_sensitive_differences(folder, pattern, strings)
             for name, folder, pattern in [('llama3', llama_folder, LLAMA3_PATTERN), ('qwen2', qwen_folder, QWEN2_PATTERN)]}
    assert all(folds.values()), f'no string exercises the case-insensitive contractions: {folds}'

    refs = {
        'versions': {'transformers': transformers.__version__, 'tokenizers': tokenizers.__version__},
        'llama3': {
            'hunyuan_crop_start': hunyuan_crop, 'hunyuan_head': hunyuan_head, 'hunyuan_template_crop_start': template_crop,
            'hidream_max_length': HIDREAM_MAX_LENGTH, 'hunyuan_max_length': HUNYUAN_MAX_LENGTH,
            'strings': records_llama3(llama, hunyuan, strings, hunyuan_head, hunyuan_crop),
            'without_ignore_merges': im_diff,
        },
        'qwen2': {
            'drop_idx': QWEN_IMAGE_DROP_IDX, 'max_length': QWEN_IMAGE_MAX_LENGTH, 'qwen_image_head': qwen_head,
            'strings': records_qwen2(qwen, strings, qwen_head),
            'batches': batches(qwen, strings[:200], QWEN_IMAGE_TEMPLATE, 96, random.Random(7)),
            'variant': variant(qwen_folder, strings),
        },
    }
    path = os.path.join(OUT, 'llm-tokens.json')
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(refs, f, ensure_ascii=False, separators=(',', ':'))
    print(f'{len(strings)} strings; ignore_merges changes {len(im_diff)}; case-sensitive contractions would change {folds}; '
          f'{sum(1 for r in refs["llama3"]["strings"] if "warning" in r["hidream"])} HiDream warnings; '
          f'{os.path.getsize(path)} bytes')


if __name__ == '__main__':
    main()
