// The cache state of one enabled target (a pipeline, a transformer or a BlockAdapter): its
// cache contexts, the scope in which pipelines run their transformer calls, and how to undo everything.
import type { BlockAdapter } from './block-adapter.js';
import { parseCacheConfig, resolveConfig, type CacheConfig, type CacheConfigInput, type ParsedCacheConfig } from './config.js';
import type { CacheContext } from './context.js';
import type { UndoStack } from './patch.js';
import { contextStats, summarize, type CacheSummary, type ContextStats } from './stats.js';
import { checkCallInfo, type TransformerCallInfo, type TransformerCallScope } from './transformer-call.js';

export class CacheHandle<T = unknown> {
  /** @internal Built by enableCache. */
  constructor(
    readonly adapter: BlockAdapter<T>,
    readonly contexts: readonly CacheContext<T>[],
    private readonly calls: TransformerCallScope,
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
   * Runs `forward` (the transformer call) as the call `call` describes: its pipeline step and
   * CFG branch ('cond' and 'uncond' keep separate state, 'batched', cond and uncond in one
   * call, shares one decision). The cached chains the call reaches read it; it is cleared when
   * `forward` returns or throws. A policy that acts around whole calls (FasterCache) does so in
   * the context of `transformer` (the first context when it is not one of the adapter's).
   * Returns what `forward` returns.
   */
  runCall<R>(call: TransformerCallInfo, forward: () => R, transformer?: object): R {
    checkCallInfo(call, 'runTransformerCall');
    const index = transformer === undefined ? 0 : Math.max(0, this.adapter.transformers.indexOf(transformer));
    const context = this.contexts.find((c) => c.layout.transformerIndex === index);
    return this.calls.run(call, context ? () => context.runCall(call, forward) : forward);
  }

  /** Resets every context by hand, optionally under a new config (validated before anything changes). */
  refresh(config?: CacheConfigInput | string): void {
    if (config === undefined) {
      this.beginRun();
      return;
    }
    const parsed = parseCacheConfig(config);
    const configs = this.configsFor(parsed);
    // A policy a context refuses (one that needs attention sites the model lacks) throws here,
    // at the first context, before anything changed.
    this.contexts.forEach((c, i) => c.reconfigure(configs[i]));
    this.parsed = parsed;
  }

  stats(): ContextStats[] {
    return this.contexts.map((c) => contextStats(c.snapshot(), this.adapter.flops !== undefined));
  }

  summary(details = false): CacheSummary {
    return summarize(this.stats(), details);
  }

  /** @internal Restores the model and releases every tensor the contexts hold. */
  dispose(): void {
    this.undo.undoAll();
    for (const c of this.contexts) c.reset();
  }
}
