/**
 * A small CLIP-style BPE vocabulary: every byte symbol, with and without the end-of-word
 * marker, a few merges, and the special tokens, laid out as the Hugging Face files are.
 */
function byteSymbols(): string[] {
  const printable: number[] = [];
  for (let b = 33; b <= 126; b++) printable.push(b);
  for (let b = 161; b <= 172; b++) printable.push(b);
  for (let b = 174; b <= 255; b++) printable.push(b);
  const codes = printable.slice();
  let extra = 0;
  for (let b = 0; b < 256; b++) if (!printable.includes(b)) codes.push(256 + extra++);
  return codes.map((c) => String.fromCodePoint(c));
}

export const TINY_MERGES = ['c a', 'ca t</w>', 'd o', 'do g</w>', 'a </w>', "' s</w>", 'r e', 're d</w>'];

export function tinyVocab(): Record<string, number> {
  const vocab: Record<string, number> = {};
  const add = (token: string): void => {
    if (!(token in vocab)) vocab[token] = Object.keys(vocab).length;
  };
  const symbols = byteSymbols();
  for (const s of symbols) add(s);
  for (const s of symbols) add(`${s}</w>`);
  for (const merge of TINY_MERGES) add(merge.replace(' ', ''));
  add('<|startoftext|>');
  add('<|endoftext|>');
  return vocab;
}

export function tinyMergesFile(): string {
  return ['#version: 0.2', ...TINY_MERGES].join('\n') + '\n';
}
