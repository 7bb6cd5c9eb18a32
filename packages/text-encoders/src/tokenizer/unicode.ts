// Character classes as the Rust tokenizers library sees them, where JavaScript's differ, and
// Oniguruma patterns (tokenizers' Regex) translated to JavaScript RegExps.
import { caseVariants, multiCharacterFolds } from './case-fold.js';

/**
 * Unicode White_Space: Rust's char::is_whitespace and Oniguruma's \s. JavaScript's \s also
 * matches U+FEFF and misses U+0085, so patterns use this set instead.
 */
export const WHITESPACE_CLASS = '\\t\\n\\v\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';

const WHITESPACE = new RegExp(`^[${WHITESPACE_CLASS}]$`, 'u');

export function isWhitespace(char: string): boolean {
  return WHITESPACE.test(char);
}

const escapeInClass = (c: string) => c.replace(/[\\\]^[-]/g, '\\$&');

/** `(` opening a group: its syntax in the pattern, what it becomes, and whether it is case-insensitive. */
function groupOpening(pattern: string, at: number, caseless: boolean): { syntax: string; out: string; caseless: boolean } {
  const rest = pattern.slice(at);
  if (rest.startsWith('(?i:')) return { syntax: '(?i:', out: '(?:', caseless: true };
  const known = /^\((?:\?(?::|=|!|<=|<!|<[A-Za-z]\w*>))?/.exec(rest);
  const syntax = known ? known[0] : '(';
  if (rest.startsWith('(?') && syntax === '(') {
    const flags = /^\(\?[^:)]*[:)]?/.exec(rest)?.[0] ?? '(?';
    throw new SyntaxError(
      `pattern ${JSON.stringify(pattern)}: the inline option ${JSON.stringify(flags)} is not supported (supported: (?i:...) groups, (?:, (?=, (?!, (?<=, (?<!, (?<name>)`,
    );
  }
  return { syntax, out: syntax, caseless };
}

/**
 * An Oniguruma pattern (tokenizers' Regex) as a JavaScript RegExp with the `u` flag: \s and \S
 * take Oniguruma's meaning, and `(?i:...)` groups (Llama 3's and Qwen2's contractions), which
 * JavaScript before Node 23 cannot write inline, become a class of each literal's case variants,
 * folded as Oniguruma folds them. The rest of the syntax these tokenizers use is shared.
 */
export function oniguruma(pattern: string, flags = 'gu'): RegExp {
  let out = '';
  let inClass = false;
  // Per open group: whether it is case-insensitive.
  const groups: boolean[] = [];
  let run = '';
  const caseless = () => groups.length > 0 && groups[groups.length - 1];
  const endRun = () => {
    if (!run) return;
    const folded = run.toLowerCase();
    const multi = multiCharacterFolds().find((f) => folded.includes(f));
    if (multi) {
      throw new SyntaxError(
        `pattern ${JSON.stringify(pattern)}: (?i:${run}) would also match a character that folds to ${JSON.stringify(multi)}, which is not supported`,
      );
    }
    run = '';
  };
  const refuseInCaseless = (what: string) => {
    if (caseless()) throw new SyntaxError(`pattern ${JSON.stringify(pattern)}: ${what} inside a (?i:...) group is not supported (only literal characters are)`);
  };
  for (let i = 0; i < pattern.length; ) {
    const c = String.fromCodePoint(pattern.codePointAt(i) as number);
    if (c === '\\' && i + 1 < pattern.length) {
      const next = pattern[i + 1];
      i += 2;
      if (/[A-Za-z0-9]/.test(next)) {
        if (!inClass) refuseInCaseless(`\\${next}`);
        if (next === 's') out += inClass ? WHITESPACE_CLASS : `[${WHITESPACE_CLASS}]`;
        else if (next === 'S') {
          if (inClass) throw new SyntaxError(`pattern ${JSON.stringify(pattern)}: \\S inside a character class is not supported`);
          out += `[^${WHITESPACE_CLASS}]`;
        } else out += c + next;
        if (!inClass) endRun();
      } else {
        // An escaped punctuation character is a literal without case.
        out += c + next;
        if (caseless() && !inClass) run += next;
      }
      continue;
    }
    i += c.length;
    if (inClass) {
      if (c === ']') inClass = false;
      out += c;
      continue;
    }
    if (c === '[') {
      refuseInCaseless('a character class');
      endRun();
      inClass = true;
      out += c;
    } else if (c === '(') {
      endRun();
      const group = groupOpening(pattern, i - 1, caseless());
      groups.push(group.caseless);
      out += group.out;
      i += group.syntax.length - 1;
    } else if (c === ')') {
      endRun();
      groups.pop();
      out += c;
    } else if ('|*+?{}.^$'.includes(c)) {
      endRun();
      out += c;
    } else if (caseless()) {
      const variants = caseVariants(c);
      out += variants.length > 1 ? `[${variants.map(escapeInClass).join('')}]` : c;
      run += c;
    } else out += c;
  }
  return new RegExp(out, flags);
}
