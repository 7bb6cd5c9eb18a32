import { CacheConfigError, parseCacheConfig, type CacheConfigInput, type CacheSettings } from './config.js';

/**
 * Overrides of any config field for one cache context (one block list or chain, e.g. one of
 * Wan 2.2's experts), applied over the base config given to `enableCache`.
 */
export class ParamsModifier {
  readonly settings: Readonly<CacheSettings>;

  constructor(overrides: CacheConfigInput | string) {
    const parsed = parseCacheConfig(overrides);
    if (parsed.modifiers) throw new CacheConfigError('a ParamsModifier cannot hold paramsModifiers of its own', 'paramsModifiers');
    this.settings = Object.freeze({ ...parsed.base });
  }
}

/** A modifier, or the plain overrides object a modifier would be made from. */
export type ParamsModifierLike = ParamsModifier | CacheConfigInput;

export function modifierSettings(m: ParamsModifierLike): Readonly<CacheSettings> {
  return m instanceof ParamsModifier ? m.settings : new ParamsModifier(m).settings;
}
