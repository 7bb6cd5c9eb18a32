// How a config key is spelled and checked, shared by the engine's own keys and by every cache
// policy's keys, so a plugin's settings are validated (and refused) exactly like core's.

/** A problem description ("an integer >= 1"), or undefined when the value is acceptable. */
export type Check = (v: unknown) => string | undefined;

export interface KeySpec {
  /** cache-dit's snake_case spelling, accepted as well as the camelCase name. */
  snake: string;
  /** Further cache-dit spellings (its calibrator config's names). */
  aliases?: readonly string[];
  check: Check;
}

export const integer =
  (min: number): Check =>
  (v) =>
    Number.isInteger(v) && (v as number) >= min ? undefined : `an integer >= ${min}`;
export const nonNegative: Check = (v) => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? undefined : 'a finite number >= 0');
export const boolean: Check = (v) => (typeof v === 'boolean' ? undefined : 'true or false');
export const oneOf =
  (...allowed: string[]): Check =>
  (v) =>
    allowed.includes(v as string) ? undefined : `one of ${allowed.map((a) => `'${a}'`).join(', ')}`;
/** An open timestep range lo < t < hi on the scheduler's 0-1000 scale, as diffusers' attention and FasterCache configs give them. */
export const timestepRange: Check = (v) =>
  Array.isArray(v) && v.length === 2 && v.every((x) => typeof x === 'number' && Number.isFinite(x)) && v[0] <= v[1]
    ? undefined
    : 'a list [lo, hi] of two finite numbers, lo <= hi (the open timestep range lo < t < hi)';
export const nullable =
  (check: Check): Check =>
  (v) =>
    v === null ? undefined : check(v) && `${check(v)} or null`;
export const mask: Check = (v) =>
  Array.isArray(v) && v.length > 0 && v.every((m) => m === 0 || m === 1)
    ? undefined
    : 'a non-empty list of 0 (may cache) and 1 (compute) per step (named cache-dit mask policies are not supported)';
