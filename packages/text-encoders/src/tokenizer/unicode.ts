// Character classes as the Rust tokenizers library sees them, where JavaScript's differ.

/**
 * Unicode White_Space: Rust's char::is_whitespace and Oniguruma's \s. JavaScript's \s also
 * matches U+FEFF and misses U+0085, so patterns use this set instead.
 */
export const WHITESPACE_CLASS = '\\t\\n\\v\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';

const WHITESPACE = new RegExp(`^[${WHITESPACE_CLASS}]$`, 'u');

export function isWhitespace(char: string): boolean {
  return WHITESPACE.test(char);
}

/**
 * An Oniguruma pattern (tokenizers' Regex) as a JavaScript RegExp with the `u` flag: \s and \S
 * take Oniguruma's meaning; the rest of the syntax these tokenizers use is shared.
 */
export function oniguruma(pattern: string, flags = 'gu'): RegExp {
  let out = '';
  let inClass = false;
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === '\\' && i + 1 < pattern.length) {
      const next = pattern[i + 1];
      i++;
      if (next === 's') out += inClass ? WHITESPACE_CLASS : `[${WHITESPACE_CLASS}]`;
      else if (next === 'S') {
        if (inClass) throw new SyntaxError(`pattern ${JSON.stringify(pattern)}: \\S inside a character class is not supported`);
        out += `[^${WHITESPACE_CLASS}]`;
      } else out += c + next;
      continue;
    }
    if (c === '[' && !inClass) inClass = true;
    else if (c === ']' && inClass) inClass = false;
    out += c;
  }
  return new RegExp(out, flags);
}
