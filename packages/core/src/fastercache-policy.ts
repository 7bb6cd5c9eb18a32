// FasterCache (Lv et al.) as a cache policy, with diffusers' semantics adapted to pipelines that
// make separate cond and uncond transformer calls: on the steps diffusers' denoiser hook would
// run only the cond half of its batched call, the uncond call is not run, and its output is
// rebuilt from the same step's cond output and the frequency bands of uncond − cond kept at the
// last computed step. The chains' blocks always run (no step-level block caching).
import { boolean, integer, nullable, oneOf, timestepRange, type Check, type KeySpec } from './config-keys.js';
import type { CacheConfig } from './config.js';
import type { Decision } from './decision.js';
import type { AttentionHook, AttentionOutput, AttentionPolicy, AttentionSiteCall } from './attention-sites.js';
import { AttentionForecaster, type AttentionCall } from './fastercache-attention.js';
import { frequencyWeights, skipsUncond, uncondSkippingPossible, type FasterCacheOptions } from './fastercache-rules.js';
import { FrequencyDeltas } from './fastercache-uncond.js';
import { registerPolicy, type CachePolicy, type CachePolicyFactory, type StepDecider, type TransformerCallHook } from './policy.js';
import { LastResidualStore, type ResidualStore } from './residual-store.js';
import type { TensorOps } from './tensor-ops.js';
import type { TransformerCallInfo } from './transformer-call.js';

export const FASTERCACHE_POLICY = 'fastercache';

const finite: Check = (v) => (typeof v === 'number' && Number.isFinite(v) ? undefined : 'a finite number');
/** diffusers' FasterCacheConfig keys (its callbacks as their default constants); Fn and Bn are unused and default to 0. */
export const FASTERCACHE_KEYS: Readonly<Record<string, KeySpec>> = {
  fnComputeBlocks: { snake: 'Fn_compute_blocks', check: integer(0) },
  bnComputeBlocks: { snake: 'Bn_compute_blocks', check: integer(0) },
  spatialAttentionBlockSkipRange: { snake: 'spatial_attention_block_skip_range', check: nullable(integer(1)) },
  temporalAttentionBlockSkipRange: { snake: 'temporal_attention_block_skip_range', check: nullable(integer(1)) },
  spatialAttentionTimestepSkipRange: { snake: 'spatial_attention_timestep_skip_range', check: timestepRange },
  temporalAttentionTimestepSkipRange: { snake: 'temporal_attention_timestep_skip_range', check: timestepRange },
  lowFrequencyWeightUpdateTimestepRange: { snake: 'low_frequency_weight_update_timestep_range', check: timestepRange },
  highFrequencyWeightUpdateTimestepRange: { snake: 'high_frequency_weight_update_timestep_range', check: timestepRange },
  alphaLowFrequency: { snake: 'alpha_low_frequency', check: finite },
  alphaHighFrequency: { snake: 'alpha_high_frequency', check: finite },
  unconditionalBatchSkipRange: { snake: 'unconditional_batch_skip_range', check: integer(1) },
  unconditionalBatchTimestepSkipRange: { snake: 'unconditional_batch_timestep_skip_range', check: timestepRange },
  attentionWeight: { snake: 'attention_weight', check: finite },
  isGuidanceDistilled: { snake: 'is_guidance_distilled', check: boolean },
  tensorFormat: { snake: 'tensor_format', check: oneOf('BCFHW', 'BFCHW', 'BCHW') },
};

/** diffusers' defaults (attention_weight: its default callback's constant). */
export const FASTERCACHE_DEFAULTS = Object.freeze({
  fnComputeBlocks: 0,
  bnComputeBlocks: 0,
  spatialAttentionBlockSkipRange: 2,
  temporalAttentionBlockSkipRange: null,
  spatialAttentionTimestepSkipRange: [-1, 681],
  temporalAttentionTimestepSkipRange: [-1, 681],
  lowFrequencyWeightUpdateTimestepRange: [99, 901],
  highFrequencyWeightUpdateTimestepRange: [-1, 301],
  alphaLowFrequency: 1.1,
  alphaHighFrequency: 1.1,
  unconditionalBatchSkipRange: 5,
  unconditionalBatchTimestepSkipRange: [-1, 641],
  attentionWeight: 0.5,
  isGuidanceDistilled: false,
  tensorFormat: 'BCFHW',
});

/** The chains' deciders: FasterCache never reuses a chain's blocks. */
class BlocksAlwaysRun implements StepDecider {
  readonly cachedSteps: readonly number[] = [];
  readonly residualDiffs: ReadonlyMap<number, number> = new Map();

  decide(): Decision {
    return { cache: false, reason: 'fastercache-runs-blocks' };
  }
}

/**
 * One context's FasterCache state in one run, around each announced call: counts the steps,
 * keeps a copy of each step's cond output until its uncond call, and there either runs the call
 * and updates the frequency deltas, or rebuilds its output. While a call runs, its self-attention
 * sites go through `runAttention`, each site's forecaster deciding from the running call.
 */
export class FasterCacheCalls<T> implements TransformerCallHook<T> {
  /** The pipeline steps whose uncond call was rebuilt. */
  readonly uncondSkippedSteps: number[] = [];
  private lastStep: number | undefined;
  private iteration = -1;
  /** The call running now, for the attention sites; undefined between calls. */
  private running: AttentionCall | undefined;
  private readonly forecasters = new Map<string, AttentionForecaster<T> | null>();
  private readonly deltas: FrequencyDeltas<T> | undefined;
  /** A copy of the running step's cond output (engine-owned), for its uncond call. */
  private cond: { step: number; output: T } | undefined;

  constructor(
    private readonly ops: TensorOps<T>,
    private readonly options: FasterCacheOptions,
    /** Emits a process warning; the policy passes one that speaks once per enabled config. */
    private readonly warn: (message: string) => void = (message) => process.emitWarning(message, 'DitcacheFasterCacheWarning'),
  ) {
    this.deltas = uncondSkippingPossible(options) ? new FrequencyDeltas(ops, options.tensorFormat) : undefined;
  }

  /**
   * Runs one call of the self-attention site `site` (`kind`: spatial or temporal) inside the
   * running transformer call: computed by `compute`, or forecast. Outside an announced call, or
   * for a kind whose block skip range is null, it is computed.
   */
  runAttention<O extends AttentionOutput<T>>(site: string, kind: 'spatial' | 'temporal', compute: () => O): O {
    const forecaster = this.running && this.forecasterFor(site, kind);
    return forecaster ? forecaster.run(this.running as AttentionCall, compute) : compute();
  }

  run(call: TransformerCallInfo, forward: () => T): { output: T; skipped: boolean } {
    if (call.timestep === undefined) {
      throw new Error("cache policy 'fastercache' needs each call's timestep: run the transformer from a pipeline that announces it");
    }
    if (call.step !== this.lastStep) {
      this.iteration += 1;
      this.lastStep = call.step;
    }
    const deltas = this.deltas;
    const uncondRebuilt = deltas?.hasValue === true && skipsUncond(this.options, this.iteration, call.timestep);
    const running: AttentionCall = { pipelineStep: call.step, branch: call.branch, iteration: this.iteration, timestep: call.timestep, uncondRebuilt };
    const run = () => this.within(running, forward);
    if (deltas !== undefined && call.branch === 'batched') {
      this.warnNothingRebuilt(`step ${call.step} is one call on the batch [uncond, cond], which cannot be halved`);
    }
    if (deltas === undefined || call.branch === 'batched') return { output: run(), skipped: false };
    if (call.branch === 'cond') {
      const output = run();
      this.keepCond(call.step, output);
      return { output, skipped: false };
    }
    const cond = this.cond?.step === call.step ? this.cond.output : undefined;
    try {
      if (cond !== undefined && uncondRebuilt) {
        const output = deltas.rebuild(cond, frequencyWeights(this.options, call.timestep));
        this.uncondSkippedSteps.push(call.step);
        return { output, skipped: true };
      }
      const output = run();
      if (cond !== undefined) deltas.update(cond, output);
      return { output, skipped: false };
    } finally {
      this.releaseCond();
    }
  }

  report(): Readonly<Record<string, unknown>> {
    const forecastAttention = Object.fromEntries([...this.forecasters].flatMap(([site, f]) => (f ? [[site, [...f.forecastSteps]]] : [])));
    return { uncondSkippedSteps: [...this.uncondSkippedSteps], forecastAttention };
  }

  clear(): void {
    this.releaseCond();
    this.deltas?.clear();
    for (const f of this.forecasters.values()) f?.clear();
    this.forecasters.clear();
    this.running = undefined;
  }

  private within<R>(running: AttentionCall, forward: () => R): R {
    this.running = running;
    try {
      return forward();
    } finally {
      this.running = undefined;
    }
  }

  /**
   * The site's forecaster, made at its first call; null where its kind's block skip range is null
   * or no step can forecast (neither guidance-distilled nor any uncond prediction rebuilt).
   */
  private forecasterFor(site: string, kind: 'spatial' | 'temporal'): AttentionForecaster<T> | null {
    let forecaster = this.forecasters.get(site);
    if (forecaster === undefined) {
      const o = this.options;
      const [blockSkipRange, timestepSkipRange] =
        kind === 'spatial'
          ? [o.spatialAttentionBlockSkipRange, o.spatialAttentionTimestepSkipRange]
          : [o.temporalAttentionBlockSkipRange, o.temporalAttentionTimestepSkipRange];
      forecaster =
        blockSkipRange === null || (!o.isGuidanceDistilled && this.deltas === undefined)
          ? null
          : new AttentionForecaster(this.ops, { blockSkipRange, timestepSkipRange, weight: o.attentionWeight, isGuidanceDistilled: o.isGuidanceDistilled });
      this.forecasters.set(site, forecaster);
    }
    return forecaster;
  }

  private keepCond(step: number, output: T): void {
    // The last step's cond output still kept: no uncond call came, so nothing can ever be rebuilt.
    if (this.cond !== undefined) this.warnNothingRebuilt(`step ${this.cond.step} made no uncond call`);
    this.releaseCond();
    this.cond = { step, output: this.ops.retain(this.ops.clone(output)) };
  }

  /** Says why no uncond prediction can be rebuilt (and so no attention forecast), through the policy's warning. */
  private warnNothingRebuilt(why: string): void {
    this.warn(
      `cache policy 'fastercache': ${why}, so no uncond prediction can be rebuilt and attention is never forecast; ` +
        'for a model run without classifier-free guidance set is_guidance_distilled: true',
    );
  }

  private releaseCond(): void {
    if (this.cond !== undefined) this.ops.release(this.cond.output);
    this.cond = undefined;
  }
}

/**
 * FasterCache on the attention sites: spatial and temporal self-attention go to the call hook's
 * forecasters (which know the running step); cross attention, and a call no pipeline announced,
 * are computed. The call hook owns and clears what the forecasters keep.
 */
class FasterCacheAttention<T> implements AttentionHook<T> {
  constructor(private readonly calls: FasterCacheCalls<T> | undefined) {}

  run<O extends AttentionOutput<T>>(call: AttentionSiteCall, compute: () => O): O {
    if (this.calls === undefined || call.site.kind === 'cross') return compute();
    return this.calls.runAttention(call.site.name, call.site.kind, compute);
  }

  // Nothing of its own to release: the forecasters belong to the call hook, which clears them.
  clear(): void {}
}

class FasterCachePolicy implements CachePolicy {
  readonly cachingPossible = false;
  readonly attention: AttentionPolicy;
  private readonly options: FasterCacheOptions;
  /** Whether a run under this config already warned (once is enough, not once per run). */
  private warned = false;

  constructor(config: CacheConfig) {
    const o = config.policyOptions as unknown as FasterCacheOptions;
    this.options = o;
    this.attention = {
      // Guidance-distilled, the attention part is all FasterCache does.
      requiresSites: o.isGuidanceDistilled,
      createHook: <T>(_ops: TensorOps<T>, calls: unknown) =>
        new FasterCacheAttention<T>(calls instanceof FasterCacheCalls ? (calls as FasterCacheCalls<T>) : undefined),
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

  createCallHook<T>(ops: TensorOps<T>): FasterCacheCalls<T> {
    return new FasterCacheCalls(ops, this.options, (message) => {
      if (this.warned) return;
      this.warned = true;
      process.emitWarning(message, 'DitcacheFasterCacheWarning');
    });
  }
}

@registerPolicy({ name: FASTERCACHE_POLICY, keys: FASTERCACHE_KEYS, defaults: FASTERCACHE_DEFAULTS })
export class FasterCachePolicyFactory implements CachePolicyFactory {
  create(config: CacheConfig): CachePolicy {
    return new FasterCachePolicy(config);
  }
}
