// The preparation runs of `ditcache tune`: a policy whose configs need something measured on the
// model first (PolicyTuning.preparation, e.g. MagCache's calibration of its magnitude ratios)
// gets that run once, before the search, and its prepared keys go into every variant's config.
// Pure over the runner, which a test replaces.
import type { CacheSummary, PolicyTuning, TuningRun } from '@ditcache/core';

import type { TuneSpace } from './search.js';

/** Runs a preparation config on each tuning prompt for `policy`; the cache summaries, one per prompt. */
export type Prepare = (policy: string, config: Readonly<Record<string, unknown>>) => Promise<readonly CacheSummary[]>;

/**
 * The spaces with each variant's config completed by its policy's preparation (the variants of a
 * policy without one unchanged); each preparation runs once, and only for a policy with variants.
 */
export async function preparedSpaces(
  spaces: readonly TuneSpace[],
  policies: readonly { name: string; tuning?: PolicyTuning }[],
  run: TuningRun,
  prepare: Prepare,
): Promise<TuneSpace[]> {
  const prepared = new Map<string, Readonly<Record<string, unknown>>>();
  for (const { name, tuning } of policies) {
    const preparation = tuning?.preparation?.(run);
    if (!preparation || !spaces.some((s) => s.policy === name)) continue;
    prepared.set(name, preparation.prepared(await prepare(name, preparation.config)));
  }
  return spaces.map((space) => {
    const keys = prepared.get(space.policy);
    return keys ? { ...space, variant: { ...space.variant, config: { ...space.variant.config, ...keys } } } : space;
  });
}
