// The cache state of one enabled target (a pipeline, a transformer or a BlockAdapter): its
// cache contexts, the signals pipelines send about their calls, and how to undo everything.
import type { BlockAdapter } from './block-adapter.js';
import { parseCacheConfig, resolveConfig, type CacheConfig, type CacheConfigInput, type ParsedCacheConfig } from './config.js';
import type { CacheContext, CallAnnouncement, CallSignals } from './context.js';
import type { UndoStack } from './patch.js';
import { contextStats, summarize, type CacheSummary, type ContextStats } from './stats.js';

const BRANCHES = ['cond', 'uncond', 'batched'];

export class CacheHandle<T = unknown> {
  private serial = 0;

  /** @internal Built by enableCache. */
  constructor(
    readonly adapter: BlockAdapter<T>,
    readonly contexts: readonly CacheContext<T>[],
    private readonly signals: CallSignals,
    private readonly undo: UndoStack,
    private parsed: ParsedCacheConfig,
    /** Resolves the config of each context from a parsed config (base, modifiers, chain checks). */
    private readonly configsFor: (parsed: ParsedCacheConfig) => CacheConfig[],
  ) {}

  /** The config given to enableCache, before per-context modifiers. */
  get baseConfig(): CacheConfig {
    return resolveConfig(this.parsed.base);
  }

  /** A new generate call: every context starts fresh (the previous run's tensors are released). */
  beginRun(): void {
    for (const c of this.contexts) c.reset();
  }

  /**
   * Says which pipeline step and CFG branch the next transformer call belongs to: 'cond' and
   * 'uncond' keep separate state, 'batched' (cond and uncond in one call) shares one decision.
   */
  beginCall(call: CallAnnouncement): void {
    if (!Number.isInteger(call.step) || call.step < 0) throw new TypeError(`beginCall: step must be an integer >= 0, got ${call.step}`);
    if (!BRANCHES.includes(call.branch)) throw new TypeError(`beginCall: branch must be one of ${BRANCHES.join(', ')}, got ${String(call.branch)}`);
    this.serial += 1;
    this.signals.announcement = { step: call.step, branch: call.branch, serial: this.serial };
  }

  /** Resets every context by hand, optionally under a new config (validated before anything changes). */
  refresh(config?: CacheConfigInput | string): void {
    if (config === undefined) {
      this.beginRun();
      return;
    }
    const parsed = parseCacheConfig(config);
    const configs = this.configsFor(parsed);
    this.parsed = parsed;
    this.contexts.forEach((c, i) => c.reconfigure(configs[i]));
  }

  stats(): ContextStats[] {
    return this.contexts.map((c) => contextStats(c.snapshot(), this.adapter.flops !== undefined));
  }

  summary(details = false): CacheSummary {
    return summarize(this.stats(), details);
  }

  /** @internal Called by the transformer forward wrapper with the call's timestep. */
  noteTimestep(value: number): void {
    this.serial += 1;
    this.signals.timestep = { value, serial: this.serial };
  }

  /** @internal Restores the model and releases every tensor the contexts hold. */
  dispose(): void {
    this.undo.undoAll();
    for (const c of this.contexts) c.reset();
  }
}
