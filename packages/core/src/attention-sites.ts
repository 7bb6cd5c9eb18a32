// Attention sites: the attention modules of a model that a cache policy may skip one call at a
// time (Pyramid Attention Broadcast reuses an attention output, FasterCache forecasts one),
// where block-level caching skips whole blocks. An adapter declares where its attention modules
// are; while the cache is enabled each one's `forward` is wrapped (undone by disableCache), and
// every call of a site asks the policy of its transformer's cache context whether to compute.
//
// API, for adapters and policies:
// - An adapter declares sites with `BlockAdapterOptions.attentionSites(transformer, index)`,
//   returning one `AttentionSite` per attention module: `name` in diffusers' module naming
//   relative to the transformer (e.g. 'transformer_blocks.0.attn', 'blocks.3.attn2'), `kind`
//   ('spatial' | 'temporal' | 'cross', as diffusers classifies the module for PAB and
//   FasterCache: self-attention over space, over time, or attention to the text), and `module`,
//   the object whose `forward` the engine wraps. It is called at enableCache, after the
//   adapter's patch functor.
// - A policy acts on sites through `CachePolicy.attention` (`AttentionPolicy`): `createHook`
//   makes, once per cache context and run, an `AttentionHook` whose `run(call, compute)` returns
//   the output of one call of a site: `compute()` (the module's own forward), or a reused or
//   forecast output instead. `requiresSites`: enableCache refuses a model whose adapter
//   declares no sites. A policy that also acts around whole transformer calls gets that run's
//   `TransformerCallHook` (FasterCache's attention rule reads what its call hook decided).
// - `AttentionSiteCall` says which call it is: the site, the CFG branch, how many calls of the
//   site that branch made before in the run (`callIndex`, the count PAB's rule uses), the
//   pipeline step and the timestep (0..1000 scale), and `key`, the same string for every call of
//   one (site, branch) in a run, for a hook that keeps state per site and branch.
// - Ownership: `compute()`'s output belongs to the caller of the module, as it would without
//   the cache; a hook that keeps it must keep its own copy (ops.retain(ops.clone(t))), and an
//   output it returns in place of `compute()` must be a new tensor (or array of new tensors)
//   that the caller may release. The hook releases what it keeps in `clear()`.
// - The engine counts, per (site, branch), the calls and the calls where `compute()` was not
//   run; `summary` reports them per site kind.
// - A site called before its context placed the running transformer call (outside the cached
//   block lists, e.g. in a text embedder) is computed without asking the policy, and not recorded:
//   the call's branch and step are not known there.
// - The state of every site follows its cache context's runs: a new pipeline run, a bare call
//   whose timestep rises, or a pipeline whose step count starts again clears it.
import type { ResolvedChain } from './block-adapter.js';
import type { TransformerCallHook } from './policy.js';
import { wrapMethod, type UndoStack } from './patch.js';
import type { TensorOps } from './tensor-ops.js';
import type { CfgBranch } from './transformer-call.js';

/** How diffusers classifies an attention module for PAB and FasterCache. */
export type AttentionKind = 'spatial' | 'temporal' | 'cross';

export const ATTENTION_KINDS: readonly AttentionKind[] = ['spatial', 'temporal', 'cross'];

/** What an attention module returns: one tensor, or several (a joint attention's image and text outputs). */
export type AttentionOutput<T> = T | readonly T[];

/** One attention module of a transformer, as its adapter declares it. */
export interface AttentionSite {
  /** diffusers' module name relative to the transformer, e.g. 'transformer_blocks.0.attn'. */
  readonly name: string;
  readonly kind: AttentionKind;
  /** The object whose `forward` is wrapped while the cache is enabled. */
  readonly module: { forward(...args: unknown[]): unknown };
}

/** The running call of the transformer, as the cache context placed it. */
export interface PlacedCall {
  readonly branch: CfgBranch;
  readonly pipelineStep: number | undefined;
  readonly timestep: number | undefined;
}

/** One call of an attention site. */
export interface AttentionSiteCall {
  /** `transformer`: the name of its transformer in stats (e.g. 'transformer', 'transformer_2'), at `transformerIndex`. */
  readonly site: { readonly name: string; readonly kind: AttentionKind; readonly transformerIndex: number; readonly transformer: string };
  readonly branch: CfgBranch;
  /** Calls of this site by this branch earlier in the run. */
  readonly callIndex: number;
  readonly pipelineStep: number | undefined;
  /** The call's timestep (0..1000 scale), when the pipeline announced it or the adapter read it. */
  readonly timestep: number | undefined;
  /** The same for every call of this (site, branch) in a run. */
  readonly key: string;
}

/** A policy's decisions on the attention sites of one cache context in one run. */
export interface AttentionHook<T> {
  /** The output of one call: `compute()`, or an output the hook made without running it. */
  run<O extends AttentionOutput<T>>(call: AttentionSiteCall, compute: () => O): O;
  /** Releases every tensor the hook keeps. */
  clear(): void;
}

/** The part of a cache policy that acts on attention sites. */
export interface AttentionPolicy {
  /** true: enableCache refuses a model whose adapter declares no attention sites. */
  readonly requiresSites: boolean;
  /** `calls`: the same context's call hook of this run, when the policy has one and a pipeline announced the call. */
  createHook<T>(ops: TensorOps<T>, calls: TransformerCallHook<T> | undefined): AttentionHook<T>;
}

/** What one (site, branch) did in a run. */
export interface AttentionSiteRecord {
  readonly site: string;
  readonly kind: AttentionKind;
  readonly transformerIndex: number;
  /** The name of its transformer in stats, e.g. 'transformer' or Wan 2.2's 'transformer_2'. */
  readonly transformer: string;
  readonly branch: CfgBranch;
  readonly calls: number;
  /** The call indices (see AttentionSiteCall.callIndex) at which compute() was not run. */
  readonly skippedCalls: readonly number[];
}

interface SiteState {
  readonly record: {
    site: string;
    kind: AttentionKind;
    transformerIndex: number;
    transformer: string;
    branch: CfgBranch;
    calls: number;
    skippedCalls: number[];
  };
  readonly site: AttentionSiteCall['site'];
}

/**
 * The attention state of one cache context in one run: the policy's hook (made at the run's
 * first site call) and each (site, branch)'s call count and skipped calls.
 */
export class AttentionRun<T> {
  private hook: AttentionHook<T> | undefined;
  private readonly states = new Map<string, SiteState>();

  constructor(
    private readonly policy: AttentionPolicy,
    private readonly ops: TensorOps<T>,
  ) {}

  run<O extends AttentionOutput<T>>(site: AttentionSiteCall['site'], placed: PlacedCall, calls: TransformerCallHook<T> | undefined, compute: () => O): O {
    const key = `${site.transformerIndex}:${site.name}:${placed.branch}`;
    let state = this.states.get(key);
    if (!state) {
      state = {
        site,
        record: {
          site: site.name,
          kind: site.kind,
          transformerIndex: site.transformerIndex,
          transformer: site.transformer,
          branch: placed.branch,
          calls: 0,
          skippedCalls: [],
        },
      };
      this.states.set(key, state);
    }
    const callIndex = state.record.calls;
    state.record.calls += 1;
    this.hook ??= this.policy.createHook(this.ops, calls);
    let computed = false;
    const output = this.hook.run({ site, branch: placed.branch, callIndex, pipelineStep: placed.pipelineStep, timestep: placed.timestep, key }, () => {
      computed = true;
      return compute();
    });
    if (!computed) state.record.skippedCalls.push(callIndex);
    return output;
  }

  records(): AttentionSiteRecord[] {
    return [...this.states.values()].map(({ record }) => ({ ...record, skippedCalls: [...record.skippedCalls] }));
  }

  clear(): void {
    this.hook?.clear();
    this.hook = undefined;
    this.states.clear();
  }
}

/** The cache context's side of the wrapping: where a site's calls go. */
export interface AttentionSiteHost {
  /** Runs one call of `site`, through the policy's hook when it has one. */
  runAttention<O>(site: AttentionSiteCall['site'], compute: () => O): O;
  /** Tells the context how many sites its transformer declared (for policies that require them). */
  declareAttentionSites(count: number): void;
}

/** Declares a transformer's attention sites. */
export type AttentionSiteDeclaration = (transformer: object, index: number) => readonly AttentionSite[];

/**
 * Wraps the `forward` of every site the adapter declares, each transformer's sites going to the
 * first cache context of that transformer (the one its calls are placed by), and tells every
 * context how many sites its transformer has. Each wrap is pushed on `undo`.
 */
export function wrapAttentionSites(
  declare: AttentionSiteDeclaration | undefined,
  transformers: readonly object[],
  transformerNames: readonly string[],
  chains: readonly ResolvedChain[],
  hosts: readonly AttentionSiteHost[],
  undo: UndoStack,
): void {
  transformers.forEach((transformer, index) => {
    const sites = declare ? declare(transformer, index) : [];
    const hostsOfTransformer = hosts.filter((_, i) => chains[i].transformerIndex === index);
    for (const host of hostsOfTransformer) host.declareAttentionSites(sites.length);
    if (sites.length === 0 || hostsOfTransformer.length === 0) return;
    const host = hostsOfTransformer[0];
    const seen = new Map<string, object>();
    for (const site of sites) {
      const where = `${transformerNames[index]}.${site.name}`;
      if (!ATTENTION_KINDS.includes(site.kind)) {
        throw new TypeError(`attention site ${where}: kind must be one of ${ATTENTION_KINDS.join(', ')}, got ${String(site.kind)}`);
      }
      if (seen.has(site.name)) throw new TypeError(`attention site ${where} is declared twice`);
      if ([...seen.values()].includes(site.module)) throw new TypeError(`attention site ${where}: its module is already declared under another name`);
      seen.set(site.name, site.module);
      const placed = { name: site.name, kind: site.kind, transformerIndex: index, transformer: transformerNames[index] };
      undo.push(
        wrapMethod(
          site.module,
          'forward',
          (original) =>
            (...args: unknown[]) =>
              host.runAttention(placed, () => original(...args)),
        ),
      );
    }
  });
}

/** The error for a policy that requires attention sites on a model whose adapter declares none. */
export function missingSitesError(policy: string, context: string): Error {
  return new TypeError(
    `cache policy '${policy}' acts on attention modules, but the adapter of ${context} declares no attention sites: ` +
      'its BlockAdapter must declare them (BlockAdapterOptions.attentionSites: name, kind and module of each attention module)',
  );
}
