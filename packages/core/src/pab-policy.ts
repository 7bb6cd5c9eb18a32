// Pyramid Attention Broadcast (Zhao et al., "Real-Time Video Generation with Pyramid Attention
// Broadcast") as a cache policy, with diffusers' semantics: each attention site of a kind whose
// block skip range N is set computes its first call, every N-th call and every call whose
// timestep is outside the kind's open range (lo, hi), and in between returns its last output.
// Unlike diffusers, whose hook keeps one state per module, each CFG branch of a site counts its
// own calls and reuses its own output (diffusers' uncond call reuses the cond call's output of
// the same step). The chains' blocks always run.
import { integer, nullable, timestepRange, type KeySpec } from './config-keys.js';
import type { CacheConfig } from './config.js';
import type { Decision } from './decision.js';
import type { AttentionHook, AttentionKind, AttentionOutput, AttentionPolicy, AttentionSiteCall } from './attention-sites.js';
import { registerPolicy, type CachePolicy, type CachePolicyFactory, type StepDecider } from './policy.js';
import { LastResidualStore, type ResidualStore } from './residual-store.js';
import type { TensorOps } from './tensor-ops.js';

export const PAB_POLICY = 'pab';

type TimestepRange = readonly [number, number];

/** diffusers' PyramidAttentionBroadcastConfig keys (its module-name identifiers are the adapters' site kinds); Fn and Bn are unused and default to 0. */
export const PAB_KEYS: Readonly<Record<string, KeySpec>> = {
  fnComputeBlocks: { snake: 'Fn_compute_blocks', check: integer(0) },
  bnComputeBlocks: { snake: 'Bn_compute_blocks', check: integer(0) },
  spatialAttentionBlockSkipRange: { snake: 'spatial_attention_block_skip_range', check: nullable(integer(1)) },
  temporalAttentionBlockSkipRange: { snake: 'temporal_attention_block_skip_range', check: nullable(integer(1)) },
  crossAttentionBlockSkipRange: { snake: 'cross_attention_block_skip_range', check: nullable(integer(1)) },
  spatialAttentionTimestepSkipRange: { snake: 'spatial_attention_timestep_skip_range', check: timestepRange },
  temporalAttentionTimestepSkipRange: { snake: 'temporal_attention_timestep_skip_range', check: timestepRange },
  crossAttentionTimestepSkipRange: { snake: 'cross_attention_timestep_skip_range', check: timestepRange },
};

/** diffusers' defaults: every kind off (then spatial 2, with a warning), ranges (100, 800). */
export const PAB_DEFAULTS = Object.freeze({
  fnComputeBlocks: 0,
  bnComputeBlocks: 0,
  spatialAttentionBlockSkipRange: null,
  temporalAttentionBlockSkipRange: null,
  crossAttentionBlockSkipRange: null,
  spatialAttentionTimestepSkipRange: [100, 800],
  temporalAttentionTimestepSkipRange: [100, 800],
  crossAttentionTimestepSkipRange: [100, 800],
});

export interface PabOptions {
  readonly spatialAttentionBlockSkipRange: number | null;
  readonly temporalAttentionBlockSkipRange: number | null;
  readonly crossAttentionBlockSkipRange: number | null;
  readonly spatialAttentionTimestepSkipRange: TimestepRange;
  readonly temporalAttentionTimestepSkipRange: TimestepRange;
  readonly crossAttentionTimestepSkipRange: TimestepRange;
}

/** One site kind's rule: its block skip range and timestep range. */
export interface PabRule {
  readonly blockSkipRange: number;
  readonly timestepSkipRange: TimestepRange;
}

/** The rule of each kind that is on; all off means spatial at 2, as diffusers defaults. */
export function pabRules(o: PabOptions): Partial<Record<AttentionKind, PabRule>> {
  const rule = (blockSkipRange: number | null, timestepSkipRange: TimestepRange) =>
    blockSkipRange === null ? undefined : { blockSkipRange, timestepSkipRange };
  const spatial = rule(o.spatialAttentionBlockSkipRange, o.spatialAttentionTimestepSkipRange);
  const temporal = rule(o.temporalAttentionBlockSkipRange, o.temporalAttentionTimestepSkipRange);
  const cross = rule(o.crossAttentionBlockSkipRange, o.crossAttentionTimestepSkipRange);
  if (!spatial && !temporal && !cross) return { spatial: { blockSkipRange: 2, timestepSkipRange: o.spatialAttentionTimestepSkipRange } };
  return { ...(spatial && { spatial }), ...(temporal && { temporal }), ...(cross && { cross }) };
}

/** Whether the call at `callIndex` (the site's calls before it in its branch) and `timestep` reuses the last output. */
export function pabReuses(rule: PabRule, callIndex: number, timestep: number): boolean {
  const [lo, hi] = rule.timestepSkipRange;
  return callIndex > 0 && lo < timestep && timestep < hi && callIndex % rule.blockSkipRange !== 0;
}

/** One context's PAB state in one run: each (site, branch)'s last output, as copies the engine owns. */
export class PyramidAttentionBroadcast<T> implements AttentionHook<T> {
  private readonly kept = new Map<string, { tensors: readonly T[]; list: boolean }>();

  constructor(
    private readonly ops: TensorOps<T>,
    private readonly rules: Partial<Record<AttentionKind, PabRule>>,
  ) {}

  run<O extends AttentionOutput<T>>(call: AttentionSiteCall, compute: () => O): O {
    const rule = this.rules[call.site.kind];
    // A skip range of 1 computes every call: nothing to keep.
    if (rule === undefined || rule.blockSkipRange === 1) return compute();
    if (call.timestep === undefined) {
      throw new Error(
        `cache policy '${PAB_POLICY}' needs each call's timestep: run the transformer from a pipeline that announces it, or through an adapter that reads it`,
      );
    }
    const kept = this.kept.get(call.key);
    if (kept !== undefined && pabReuses(rule, call.callIndex, call.timestep)) {
      const copies = kept.tensors.map((t) => this.ops.clone(t));
      return (kept.list ? copies : copies[0]) as O;
    }
    const output = compute();
    // The next call of this site and branch is computed whatever its timestep when its index is a
    // multiple of the skip range: then nothing kept now could be reused, and no copy is made.
    if ((call.callIndex + 1) % rule.blockSkipRange !== 0) this.keep(call.key, output);
    return output;
  }

  clear(): void {
    for (const kept of this.kept.values()) for (const t of kept.tensors) this.ops.release(t);
    this.kept.clear();
  }

  private keep(key: string, output: AttentionOutput<T>): void {
    const list = Array.isArray(output);
    const tensors = (list ? (output as readonly T[]) : [output as T]).map((t) => this.ops.retain(this.ops.clone(t)));
    const previous = this.kept.get(key);
    if (previous) for (const t of previous.tensors) this.ops.release(t);
    this.kept.set(key, { tensors, list });
  }
}

/** The chains' deciders: PAB never reuses a chain's blocks. */
class BlocksAlwaysRun implements StepDecider {
  readonly cachedSteps: readonly number[] = [];
  readonly residualDiffs: ReadonlyMap<number, number> = new Map();

  decide(): Decision {
    return { cache: false, reason: 'pab-runs-blocks' };
  }
}

class PabPolicy implements CachePolicy {
  readonly cachingPossible = false;
  readonly attention: AttentionPolicy;

  constructor(rules: Partial<Record<AttentionKind, PabRule>>) {
    this.attention = {
      requiresSites: true,
      createHook: <T>(ops: TensorOps<T>) => new PyramidAttentionBroadcast(ops, rules),
    };
  }

  createDecider(): StepDecider {
    return new BlocksAlwaysRun();
  }

  createStore<T>(ops: TensorOps<T>): ResidualStore<T> {
    return new LastResidualStore(ops);
  }

  storesResidual(): boolean {
    return true;
  }
}

@registerPolicy({ name: PAB_POLICY, keys: PAB_KEYS, defaults: PAB_DEFAULTS })
export class PabPolicyFactory implements CachePolicyFactory {
  create(config: CacheConfig): CachePolicy {
    const options = config.policyOptions as unknown as PabOptions;
    if (options.spatialAttentionBlockSkipRange === null && options.temporalAttentionBlockSkipRange === null && options.crossAttentionBlockSkipRange === null) {
      process.emitWarning(
        `cache policy '${PAB_POLICY}': spatial_attention_block_skip_range, temporal_attention_block_skip_range and cross_attention_block_skip_range are all null; using spatial_attention_block_skip_range: 2, as diffusers does`,
        'DitcachePabWarning',
      );
    }
    return new PabPolicy(pabRules(options));
  }
}
