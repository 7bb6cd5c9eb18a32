// GPT-2's reversible map from bytes to printable characters, the alphabet of byte-level BPE
// (CLIP, GPT-2, Llama 3): printable Latin-1 bytes stand for themselves, the rest are shifted
// past U+0100 in byte order.
function byteToChar(): string[] {
  const printable = (b: number) => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  const map: string[] = new Array(256);
  let shifted = 0;
  for (let b = 0; b < 256; b++) map[b] = String.fromCodePoint(printable(b) ? b : 256 + shifted++);
  return map;
}

export const BYTE_TO_CHAR: readonly string[] = byteToChar();
