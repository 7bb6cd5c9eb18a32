// Value parsers of the CLI's flags, shared by its own options and those model families declare,
// so that `--steps 0` and a family's `--frames 0` fail with the same kind of message.
import { InvalidArgumentError } from 'commander';

import type { CliOptionType } from '@ditcache/diffusion/cli';

/** Decimal digits only, above 0: Number() would also take '', ' ', '1e3' and '0x10'. */
export const positiveInt =
  (flag: string) =>
  (v: string): number => {
    const n = Number(v);
    if (!/^\s*\d+\s*$/.test(v) || !Number.isSafeInteger(n) || n <= 0) throw new InvalidArgumentError(`${flag} must be a positive integer`);
    return n;
  };

export const nonNegativeInt =
  (flag: string) =>
  (v: string): number => {
    const n = Number(v);
    if (!/^\s*\d+\s*$/.test(v) || !Number.isSafeInteger(n)) throw new InvalidArgumentError(`${flag} must be a non-negative integer (at most 2^53 - 1)`);
    return n;
  };

export const finite =
  (flag: string) =>
  (v: string): number => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isFinite(n)) throw new InvalidArgumentError(`${flag} must be a number`);
    return n;
  };

/** The parser of each type a family option may declare. */
export const OPTION_PARSERS: Record<CliOptionType, (flag: string) => (value: string) => string | number> = {
  'positive-integer': positiveInt,
  number: finite,
  string: () => (v) => v,
};

/** A finite number above 0: what a prompts file's guidance_scale must be for bench to read it. */
export const positiveNumber =
  (flag: string) =>
  (v: string): number => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isFinite(n) || n <= 0) throw new InvalidArgumentError(`${flag} must be a number above 0`);
    return n;
  };
