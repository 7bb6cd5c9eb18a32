// Decoder-LLM tokenizers (Llama 3: HiDream's tokenizer_4 and HunyuanVideo's; Qwen2.5-VL:
// Qwen-Image's) against the tokenizers library, on small BPEs trained with the real tokenizer.json
// layouts (tools/make_llm_tokenizer_references.py), called as the diffusers pipelines call them.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import {
  formatPrompt,
  HIDREAM_LLAMA_MAX_LENGTH,
  HUNYUAN_VIDEO_MAX_LENGTH,
  HUNYUAN_VIDEO_PROMPT_TEMPLATE,
  loadTokenizer,
  maxSequenceLengthWarning,
  pythonRepr,
  QWEN_IMAGE_MAX_LENGTH,
  QWEN_IMAGE_PROMPT_TEMPLATE,
  templateCropStart,
  Tokenizer,
  TokenizerError,
} from '../src/index.js';
import { data } from './helpers.js';

interface Padded {
  pad: number;
  /** The ids after the template's head (the shared tokens before the prompt) ... */
  tail?: number[];
  /** ... or all of them, when the prompt changed the head's tokens. */
  ids?: number[];
}

interface LlamaRecord {
  text: string;
  ids: number[];
  plain: number[];
  decoded?: string;
  hidream: { kept: number; pad: number; warning?: string };
  hunyuan: Padded;
}

interface QwenRecord {
  text: string;
  ids: number[];
  decoded?: string;
  qwen_image: Omit<Padded, 'pad'>;
}

interface References {
  llama3: {
    hunyuan_crop_start: number;
    hunyuan_head: number[];
    hunyuan_template_crop_start: { model_max_length: number; unlimited: number };
    hidream_max_length: number;
    hunyuan_max_length: number;
    strings: LlamaRecord[];
    without_ignore_merges: { text: string; ids: number[] }[];
  };
  qwen2: {
    drop_idx: number;
    max_length: number;
    qwen_image_head: number[];
    strings: QwenRecord[];
    batches: { texts: string[]; max_length: number; ids: number[][]; mask: number[][] }[];
    variant: { normalizer: unknown; added_tokens: Record<string, unknown>[]; strings: { text: string; ids: number[]; decoded: string }[] };
  };
}

const refs = JSON.parse(readFileSync(join(data, 'llm-tokens.json'), 'utf-8')) as References;
const llama = loadTokenizer(join(data, 'llama3-tokenizer'));
const hunyuan = loadTokenizer(join(data, 'hunyuan-video-tokenizer'));
const qwen = loadTokenizer(join(data, 'qwen2-tokenizer'));
const readSpec = (name: string) => JSON.parse(readFileSync(join(data, name, 'tokenizer.json'), 'utf-8')) as Record<string, unknown>;

/** The full padded row a reference describes: head + tail (or ids), then `pad` pad ids; and its mask. */
function expand(ref: Padded, head: number[], padId: number): { ids: number[]; mask: number[] } {
  const real = ref.ids ?? [...head, ...(ref.tail as number[])];
  return { ids: [...real, ...new Array<number>(ref.pad).fill(padId)], mask: [...real.map(() => 1), ...new Array<number>(ref.pad).fill(0)] };
}

describe('Llama 3 tokenizer (byte-level BPE, ignore_merges, <|begin_of_text|>)', () => {
  const strings = refs.llama3.strings;

  it('equals the tokenizers library on every string, with and without special tokens', () => {
    expect(strings.length).toBeGreaterThanOrEqual(300);
    for (const r of strings) {
      expect(llama.encode(r.text), JSON.stringify(r.text)).toEqual(r.ids);
      expect(llama.encode(r.text, { addSpecialTokens: false }), JSON.stringify(r.text)).toEqual(r.plain);
    }
    expect(llama.encode('')).toEqual([llama.tokenToId('<|begin_of_text|>')]);
  });

  it('takes a whole word from the vocabulary before merging (ignore_merges), and merges without it', () => {
    expect(refs.llama3.without_ignore_merges.length).toBeGreaterThan(10);
    const spec = readSpec('llama3-tokenizer');
    const model = { ...(spec.model as Record<string, unknown>), ignore_merges: false };
    const merging = new Tokenizer({ ...spec, model }, {}, 'llama3 without ignore_merges');
    for (const r of refs.llama3.without_ignore_merges) {
      expect(merging.encode(r.text, { addSpecialTokens: false }), JSON.stringify(r.text)).toEqual(r.ids);
      expect(llama.encode(r.text, { addSpecialTokens: false })).not.toEqual(r.ids);
    }
  });

  it('decodes its ids back as the ByteLevel decoder does', () => {
    for (const r of strings) expect(llama.decode(r.plain), JSON.stringify(r.text)).toBe(r.decoded ?? r.text);
    const eot = llama.tokenToId('<|eot_id|>') as number;
    expect(llama.decode([eot, ...strings[17].plain])).toBe(`<|eot_id|>${strings[17].text}`);
    expect(llama.decode([eot, ...strings[17].plain], { skipSpecialTokens: true })).toBe(strings[17].text);
  });

  it("HiDream's call: eos as pad, max_length 128, truncation, and diffusers' warning", () => {
    expect(HIDREAM_LLAMA_MAX_LENGTH).toBe(refs.llama3.hidream_max_length);
    expect(llama.eosToken).toBe('<|eot_id|>');
    expect(llama.padId).toBeNull();
    const hidream = loadTokenizer(join(data, 'llama3-tokenizer'));
    hidream.setPadToken(hidream.eosToken as string);
    const eot = hidream.tokenToId('<|eot_id|>') as number;
    let warnings = 0;
    for (const r of strings) {
      const got = hidream.encodePadded(r.text, HIDREAM_LLAMA_MAX_LENGTH);
      const real = r.ids.slice(0, r.hidream.kept);
      expect(got.ids, JSON.stringify(r.text)).toEqual([...real, ...new Array<number>(r.hidream.pad).fill(eot)]);
      expect(got.attentionMask).toEqual([...real.map(() => 1), ...new Array<number>(r.hidream.pad).fill(0)]);
      expect(got.truncatedTokens).toBe(r.ids.length - r.hidream.kept);
      expect(maxSequenceLengthWarning(hidream, [r.text], HIDREAM_LLAMA_MAX_LENGTH), JSON.stringify(r.text)).toBe(r.hidream.warning ?? null);
      if (r.hidream.warning) warnings++;
    }
    expect(warnings).toBeGreaterThanOrEqual(5);
  });

  it("HunyuanVideo's call: its template, max_length 256 + crop_start, padded with <pad>", () => {
    const { hunyuan_head: head, hunyuan_crop_start: crop } = refs.llama3;
    const [before] = HUNYUAN_VIDEO_PROMPT_TEMPLATE.template.split('{}');
    expect(hunyuan.encode(before)).toEqual(head);
    expect(head.length).toBe(crop);
    const pad = hunyuan.tokenToId('<pad>') as number;
    expect(hunyuan.padId).toBe(pad);
    let truncated = 0;
    for (const r of strings) {
      const want = expand(r.hunyuan, head, pad);
      const got = hunyuan.encodePadded(formatPrompt(HUNYUAN_VIDEO_PROMPT_TEMPLATE.template, r.text), refs.llama3.hunyuan_max_length + crop);
      expect(got.ids, JSON.stringify(r.text)).toEqual(want.ids);
      expect(got.attentionMask).toEqual(want.mask);
      if (got.truncatedTokens > 0) truncated++;
    }
    expect(truncated).toBeGreaterThanOrEqual(3);
    expect(HUNYUAN_VIDEO_MAX_LENGTH).toBe(refs.llama3.hunyuan_max_length);
  });

  it("HunyuanVideo's crop_start for a template without one (padded to model_max_length, or not when unlimited)", () => {
    const want = refs.llama3.hunyuan_template_crop_start;
    expect(templateCropStart(hunyuan, HUNYUAN_VIDEO_PROMPT_TEMPLATE.template)).toBe(want.model_max_length);
    const unlimited = new Tokenizer(readSpec('hunyuan-video-tokenizer'), { padToken: '<pad>' }, 'no model_max_length');
    expect(templateCropStart(unlimited, HUNYUAN_VIDEO_PROMPT_TEMPLATE.template)).toBe(want.unlimited);
  });
});

describe('Qwen2 tokenizer (NFC, byte-level BPE, chat tokens)', () => {
  const strings = refs.qwen2.strings;

  it('equals the tokenizers library on every string (no special tokens added)', () => {
    expect(strings.length).toBeGreaterThanOrEqual(300);
    for (const r of strings) {
      expect(qwen.encode(r.text), JSON.stringify(r.text)).toEqual(r.ids);
      expect(qwen.encode(r.text, { addSpecialTokens: false })).toEqual(r.ids);
    }
    expect(qwen.encode('')).toEqual([]);
  });

  it('equals them too from vocab.json + merges.txt + added_tokens_decoder, rebuilt as Qwen2Tokenizer does', () => {
    const files = loadTokenizer(join(data, 'qwen2-tokenizer-files'));
    for (const r of strings) expect(files.encode(r.text), JSON.stringify(r.text)).toEqual(r.ids);
    expect(files.padId).toBe(qwen.padId);
    expect(files.decode(strings[40].ids)).toBe(strings[40].decoded ?? strings[40].text);
  });

  it('decodes its ids back (NFC-normalised where the string was not)', () => {
    expect(strings.filter((r) => r.decoded !== undefined).length).toBeGreaterThan(10);
    for (const r of strings) expect(qwen.decode(r.ids), JSON.stringify(r.text)).toBe(r.decoded ?? r.text);
  });

  it("Qwen-Image's call: the chat template, max_length 1024 + drop_idx, truncation", () => {
    expect(QWEN_IMAGE_PROMPT_TEMPLATE.dropTokens).toBe(refs.qwen2.drop_idx);
    expect(QWEN_IMAGE_MAX_LENGTH).toBe(refs.qwen2.max_length);
    const head = refs.qwen2.qwen_image_head;
    expect(qwen.encode(QWEN_IMAGE_PROMPT_TEMPLATE.template.split('{}')[0])).toEqual(head);
    let truncated = 0;
    for (const r of strings) {
      const text = formatPrompt(QWEN_IMAGE_PROMPT_TEMPLATE.template, r.text);
      const got = qwen.encodeBatch([text], { padding: 'longest', maxLength: QWEN_IMAGE_MAX_LENGTH + QWEN_IMAGE_PROMPT_TEMPLATE.dropTokens, truncation: true });
      const want = expand({ ...r.qwen_image, pad: 0 }, head, qwen.padId as number);
      expect(got.ids[0], JSON.stringify(r.text)).toEqual(want.ids);
      expect(got.attentionMask[0]).toEqual(want.mask);
      if (got.truncatedTokens[0] > 0) truncated++;
    }
    expect(truncated).toBeGreaterThanOrEqual(3);
  });

  it('pads a batch to its longest prompt with <|endoftext|>', () => {
    expect(qwen.padId).toBe(qwen.tokenToId('<|endoftext|>'));
    for (const b of refs.qwen2.batches) {
      const got = qwen.encodeBatch(b.texts, { padding: 'longest', maxLength: b.max_length, truncation: true });
      expect(got.ids).toEqual(b.ids);
      expect(got.attentionMask).toEqual(b.mask);
    }
    // padding_side "left" (which a tokenizer_config.json may set) puts the same pads first.
    const left = new Tokenizer(readSpec('qwen2-tokenizer'), { padToken: '<|endoftext|>', paddingSide: 'left' }, 'qwen2 padded left');
    for (const b of refs.qwen2.batches) {
      const got = left.encodeBatch(b.texts, { padding: 'longest', maxLength: b.max_length, truncation: true });
      const moved = (row: number[], mask: number[]) => [...row.filter((_, i) => mask[i] === 0), ...row.filter((_, i) => mask[i] === 1)];
      expect(got.ids).toEqual(b.ids.map((row, i) => moved(row, b.mask[i])));
      expect(got.attentionMask).toEqual(b.mask.map((mask) => moved(mask, mask)));
    }
    expect(refs.qwen2.batches.some((b) => b.mask.some((m) => m.includes(0)))).toBe(true);
  });

  it('lowercases per code point and honours lstrip, rstrip, single_word and normalized added tokens', () => {
    const { normalizer, added_tokens, strings: cases } = refs.qwen2.variant;
    const spec = readSpec('qwen2-tokenizer');
    const tok = new Tokenizer({ ...spec, normalizer, added_tokens: [...(spec.added_tokens as unknown[]), ...added_tokens] }, {}, 'qwen2 variant');
    for (const c of cases) {
      expect(tok.encode(c.text), JSON.stringify(c.text)).toEqual(c.ids);
      // A normalized added token decodes as its normalised content ("MiXeD": "mixed"); "<|图|>" as its UTF-8.
      expect(tok.decode(c.ids), JSON.stringify(c.text)).toBe(c.decoded);
    }
  });
});

describe('prompt templates and the warning text', () => {
  it('formats as Python str.format with one field', () => {
    expect(formatPrompt('a {} b', 'x{}$&y')).toBe('a x{}$&y b');
    expect(formatPrompt('{{lit}} {0}', 'p')).toBe('{lit} p');
    expect(() => formatPrompt('{} {}', 'p')).toThrow(/only one "\{\}" \(or "\{0\}"\) field/);
    expect(() => formatPrompt('{name}', 'p')).toThrow(/holds "\{name\}"/);
  });

  it("quotes as Python's repr", () => {
    expect(pythonRepr("it's")).toBe(`"it's"`);
    expect(pythonRepr(`'"`)).toBe(`'\\'"'`);
    expect(pythonRepr('a\n\t\u0007\u00a0\u200b\u{e0001}é🐱\\')).toBe("'a\\n\\t\\x07\\xa0\\u200b\\U000e0001é🐱\\\\'");
  });
});

/** Temp folders of this file's tests, removed after them. */
const scratchDirs: string[] = [];
afterAll(() => {
  for (const dir of scratchDirs) rmSync(dir, { recursive: true, force: true });
});
function folderWith(files: Record<string, unknown>): string {
  const dir = mkdtempSync(join(tmpdir(), 'text-encoders-llm-'));
  scratchDirs.push(dir);
  for (const [name, content] of Object.entries(files)) writeFileSync(join(dir, name), typeof content === 'string' ? content : JSON.stringify(content));
  return dir;
}

describe('refuses what it cannot run, naming what is missing', () => {
  const llamaSpec = readSpec('llama3-tokenizer');
  const withPattern = (regex: string) => {
    const pre = llamaSpec.pre_tokenizer as { pretokenizers: Record<string, unknown>[] };
    return { ...llamaSpec, pre_tokenizer: { ...pre, pretokenizers: [{ ...pre.pretokenizers[0], pattern: { Regex: regex } }, pre.pretokenizers[1]] } };
  };

  it('tokenizer.json parts and folders', () => {
    expect(() => loadTokenizer(folderWith({ 'tokenizer.model': 'x', 'tokenizer_config.json': { tokenizer_class: 'LlamaTokenizer' } }))).toThrow(
      /tokenizer.model of a LlamaTokenizer is not supported: tokenizer.json is missing/,
    );
    expect(() => loadTokenizer(folderWith({ 'tokenizer.json': { ...llamaSpec, model: { ...(llamaSpec.model as object), dropout: 0.1 } } }))).toThrow(
      /model.dropout 0.1 is not supported/,
    );
    expect(() => loadTokenizer(folderWith({ 'tokenizer.json': { ...llamaSpec, model: { type: 'BPE', vocab: {} } } }))).toThrow(/the BPE model lacks merges/);
    expect(() => loadTokenizer(folderWith({ 'tokenizer.json': { ...llamaSpec, model: { type: 'WordLevel', vocab: {} } } }))).toThrow(
      /model type "WordLevel" is not supported \(supported: BPE, Unigram\)/,
    );
    expect(() => loadTokenizer(folderWith({ 'tokenizer.json': { ...llamaSpec, pre_tokenizer: { type: 'Digits', individual_digits: true } } }))).toThrow(
      /pre-tokenizer type "Digits" is not supported \(supported: Sequence, Split/,
    );
    const pre = llamaSpec.pre_tokenizer as { pretokenizers: Record<string, unknown>[] };
    const oddBehavior = { ...llamaSpec, pre_tokenizer: { ...pre, pretokenizers: [{ ...pre.pretokenizers[0], behavior: 'Glued' }] } };
    expect(() => loadTokenizer(folderWith({ 'tokenizer.json': oddBehavior }))).toThrow(
      /Split behavior "Glued" is not supported \(supported: Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous\)/,
    );
    expect(() => loadTokenizer(folderWith({ 'tokenizer.json': llamaSpec, 'tokenizer_config.json': { padding_side: 'middle' } }))).toThrow(
      /padding_side "middle" is not one of "left", "right"/,
    );
    expect(() => loadTokenizer(folderWith({ 'tokenizer.json': llamaSpec, 'tokenizer_config.json': { truncation_side: 'left' } }))).toThrow(
      /truncation_side "left" is not supported \(supported: "right"\)/,
    );
    const filesDir = join(data, 'qwen2-tokenizer-files');
    const filesConfig = JSON.parse(readFileSync(join(filesDir, 'tokenizer_config.json'), 'utf-8')) as Record<string, unknown>;
    const qwenFiles = (extra: Record<string, unknown>) =>
      folderWith({
        'vocab.json': readFileSync(join(filesDir, 'vocab.json'), 'utf-8'),
        'merges.txt': readFileSync(join(filesDir, 'merges.txt'), 'utf-8'),
        ...extra,
      });
    expect(() => loadTokenizer(qwenFiles({ 'tokenizer_config.json': { ...filesConfig, eos_token: '<|nope|>' } }))).toThrow(
      /eos_token "<\|nope\|>" is neither in added_tokens_decoder nor in vocab.json/,
    );
    expect(() => loadTokenizer(qwenFiles({ 'tokenizer_config.json': filesConfig, 'added_tokens.json': { '<|extra|>': 5000 } }))).toThrow(
      /added_tokens.json: names "<\|extra\|>", which added_tokens_decoder of .* lacks/,
    );
    expect(() => loadTokenizer(qwenFiles({ 'tokenizer_config.json': { tokenizer_class: 'LlamaTokenizerFast' } }))).toThrow(
      /vocab.json \+ merges.txt of a LlamaTokenizerFast are not supported without a tokenizer.json \(supported: CLIPTokenizer, CLIPTokenizerFast, Qwen2Tokenizer, Qwen2TokenizerFast\)/,
    );
    const noDecoder = loadTokenizer(folderWith({ 'tokenizer.json': { ...llamaSpec, decoder: { type: 'WordPiece' } } }));
    expect(() => noDecoder.decode([1])).toThrow(/decoder type "WordPiece" is not supported for decoding \(supported: ByteLevel, Metaspace, BPEDecoder\)/);
    expect(() => llama.encodePadded('x', 8)).toThrow(/no pad token \(tokenizer_config.json names none; setPadToken sets one\)/);
    expect(() => llama.setPadToken('<nope>')).toThrow(/the pad token "<nope>" is not in the vocabulary/);
  });

  it('Oniguruma syntax a JavaScript RegExp cannot take as written', () => {
    expect(() => new Tokenizer(withPattern("(?i)'s|\\p{L}+"), {}, 'llama.json')).toThrow(
      /llama.json: pre_tokenizer.pretokenizers\[0\] \(Split\): pattern "\(\?i\)'s\|\\\\p\{L\}\+": the inline option "\(\?i\)" is not supported/,
    );
    expect(() => new Tokenizer(withPattern("(?i)'s|\\p{L}+"), {}, 'x')).toThrow(TokenizerError);
    expect(() => new Tokenizer(withPattern('(?i:[a-z]+)'), {}, 'x')).toThrow(/a character class inside a \(\?i:...\) group is not supported/);
    expect(() => new Tokenizer(withPattern('(?i:\\p{Lu})'), {}, 'x')).toThrow(/\\p inside a \(\?i:...\) group is not supported/);
    expect(() => new Tokenizer(withPattern('(?i:strasse)'), {}, 'x')).toThrow(/would also match a character that folds to "ss"/);
  });
});
