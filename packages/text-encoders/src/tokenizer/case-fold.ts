// The characters a literal matches under Oniguruma's case-insensitive `(?i:...)`, for patterns
// translated to JavaScript RegExps, which (before Node 23) have no inline modifiers. Oniguruma
// folds with Unicode's case folding, so `(?i:'s)` also matches "'ſ" (U+017F folds to "s"); a
// JavaScript RegExp with the `iu` flags folds single characters with the same table, so it tells
// which characters fold together. Multi-character folds (ß ~ ss, ﬅ ~ st) are not expanded: a
// pattern that needs them is refused in unicode.ts.

// Every character with a case mapping or fold lies below U+1F000 (the last cased script, Adlam, ends at U+1E95F).
const LAST_CASED = 0x1efff;

const variants = new Map<string, string[]>();

/** The characters that fold to the same character as `char` (itself included), in code point order. */
export function caseVariants(char: string): readonly string[] {
  const known = variants.get(char);
  if (known) return known;
  // Whatever folds to a character is a case mapping of it, so one with neither folds alone.
  if (char.toLowerCase() === char && char.toUpperCase() === char) return [char];
  const same = new RegExp(`^${char.replace(/[.*+?^${}()|[\]\\/-]/g, '\\$&')}$`, 'iu');
  const out: string[] = [];
  for (let cp = 0; cp <= LAST_CASED; cp++) {
    if (cp >= 0xd800 && cp <= 0xdfff) continue;
    const c = String.fromCodePoint(cp);
    if (same.test(c)) out.push(c);
  }
  if (!out.includes(char)) out.push(char);
  variants.set(char, out);
  return out;
}

let multiFolds: string[] | null = null;

/**
 * The strings that one character folds to when folding takes several (ß: "ss", ﬅ: "st", İ: "i̇"),
 * lowercased: Oniguruma's `(?i:ss)` matches "ß" too, which a class per character cannot.
 */
export function multiCharacterFolds(): readonly string[] {
  if (multiFolds) return multiFolds;
  const found = new Set<string>();
  for (let cp = 0; cp <= LAST_CASED; cp++) {
    if (cp >= 0xd800 && cp <= 0xdfff) continue;
    const c = String.fromCodePoint(cp);
    const upper = c.toUpperCase();
    const lower = c.toLowerCase();
    if (Array.from(upper).length > 1) found.add(upper.toLowerCase());
    if (Array.from(lower).length > 1) found.add(lower);
  }
  multiFolds = [...found];
  return multiFolds;
}
