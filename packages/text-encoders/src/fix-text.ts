// The character-level repairs of ftfy's fix_text with its default settings, which diffusers runs
// on prompts of several video pipelines (Wan among them) when the ftfy package is installed:
// HTML character references that end in ';' (and upper-cased named ones), C1 control
// characters read as Windows-1252, Latin ligatures and half- / full-width forms unfolded, curly
// quotes straightened, line breaks unified, lone surrogates replaced, terminal escapes and
// unintended control characters removed, NFC; repeated line by line until nothing changes.
// ftfy's mojibake repair (re-decoding text that was decoded with the wrong codec, found by its
// "badness" heuristics) is not done here: text with mojibake comes out as it went in.
import { decodeHTML, decodeHTMLStrict } from 'entities';

/** Windows-1252's characters for the C1 control codes 0x80..0x9F; the five it leaves undefined stay. */
const WINDOWS_1252_C1 = '€\x81‚ƒ„…†‡ˆ‰Š‹Œ\x8dŽ\x8f\x90‘’“”•–—˜™š›œ\x9džŸ';

/** Latin ligatures and digraph letters, and what they stand for. */
const LIGATURES: Readonly<Record<string, string>> = {
  Ĳ: 'IJ',
  ĳ: 'ij',
  ŉ: 'ʼn',
  Ǳ: 'DZ',
  ǲ: 'Dz',
  ǳ: 'dz',
  Ǆ: 'DŽ',
  ǅ: 'Dž',
  ǆ: 'dž',
  Ǉ: 'LJ',
  ǈ: 'Lj',
  ǉ: 'lj',
  Ǌ: 'NJ',
  ǋ: 'Nj',
  ǌ: 'nj',
  ﬀ: 'ff',
  ﬁ: 'fi',
  ﬂ: 'fl',
  ﬃ: 'ffi',
  ﬄ: 'ffl',
  ﬅ: 'ſt',
  ﬆ: 'st',
};

const HTML_REFERENCE = /&#?[0-9A-Za-z]{1,24};/g;
const C1_CONTROL = /[\x80-\x9f]/g;
const LIGATURE = new RegExp(`[${Object.keys(LIGATURES).join('')}]`, 'g');
/** Half- and full-width forms (U+FF01..U+FFEF) and the ideographic space. */
const WIDTH_FORM = /[\u3000\uff01-\uffef]/g;
const SINGLE_QUOTE = /[\u02bc\u2018-\u201b]/g;
const DOUBLE_QUOTE = /[\u201c-\u201f]/g;
const LINE_BREAK = /\r\n|[\r\u2028\u2029\x85]/g;
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;
const TERMINAL_ESCAPE = /\x1b\[[\d;]*[a-zA-Z]/g;
/** Control characters nobody means to type: C0 ones but tab, line feed, form feed and carriage return; DEL; deprecated Arabic format controls; the BOM; interlinear annotation marks and the object replacement character. */
const CONTROL = /[\x00-\x08\x0b\x0e-\x1f\x7f\u206a-\u206f\ufeff\ufff9-\ufffc]/g;

/** One HTML character reference as ftfy decodes it: known names ending in ';', their upper-cased forms where unambiguous, numeric references; anything else stays. */
function decodeReference(reference: string): string {
  if (reference.startsWith('&#')) {
    const decoded = decodeHTML(reference);
    // Only a reference decoded whole, semicolon included, counts.
    return decoded.includes(';') ? reference : decoded;
  }
  const decoded = decodeHTMLStrict(reference);
  if (decoded !== reference) return decoded;
  // P&EACUTE;REZ: an upper-cased name whose lower-case form is an entity and which is none itself.
  const lower = reference.toLowerCase();
  if (reference !== reference.toUpperCase() || decodeHTML(reference) !== reference) return reference;
  const lowerDecoded = decodeHTMLStrict(lower);
  return lowerDecoded === lower ? reference : lowerDecoded.toUpperCase();
}

/** One line (with its line break) through one round of the repairs. */
function fixRound(segment: string, decodeHtml: boolean): string {
  const text = decodeHtml ? segment.replace(HTML_REFERENCE, decodeReference) : segment;
  return text
    .replace(C1_CONTROL, (c) => WINDOWS_1252_C1[c.charCodeAt(0) - 0x80])
    .replace(LIGATURE, (c) => LIGATURES[c])
    .replace(WIDTH_FORM, (c) => (c === '\u3000' ? ' ' : c.normalize('NFKC')))
    .replace(SINGLE_QUOTE, "'")
    .replace(DOUBLE_QUOTE, '"')
    .replace(LINE_BREAK, '\n')
    .replace(LONE_SURROGATE, '\ufffd')
    .replace(TERMINAL_ESCAPE, '')
    .replace(CONTROL, '')
    .normalize('NFC');
}

/** ftfy.fix_text(text) with its default settings, without the mojibake repair (see above). */
export function fixText(text: string): string {
  // ftfy stops decoding references from the first line with a '<' on: the text may be HTML source.
  let decodeHtml = true;
  return (text.match(/[^\n]*\n|[^\n]+$/g) ?? [])
    .map((line) => {
      decodeHtml &&= !line.includes('<');
      let segment = line;
      for (let fixed = fixRound(segment, decodeHtml); fixed !== segment; fixed = fixRound(segment, decodeHtml)) segment = fixed;
      return segment;
    })
    .join('');
}
