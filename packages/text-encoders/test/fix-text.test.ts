import { readFileSync } from 'node:fs';

import { describe, expect, it } from 'vitest';

import { fixText } from '../src/index.js';

const data = JSON.parse(readFileSync(new URL('./data/fix-text.json', import.meta.url), 'utf-8')) as {
  cases: { text: string; fixed: string }[];
  mojibake: { text: string; ftfy: string }[];
};

describe('fixText', () => {
  it.each(data.cases.map((c) => [JSON.stringify(c.text), c] as const))('gives what ftfy.fix_text gives for %s', (_name, { text, fixed }) => {
    expect(fixText(text)).toBe(fixed);
  });

  it('leaves mojibake as it is: ftfy re-decodes it, fixText does not', () => {
    for (const { text, ftfy } of data.mojibake) {
      expect(ftfy).not.toBe(text);
      expect(fixText(text)).toBe(text);
    }
  });
});
