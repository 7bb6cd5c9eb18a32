// Cache policies: what decides, per step of each branch, whether a chain's middle (Mn) blocks
// are computed or their work is reused or forecast, and what keeps that work between steps.
// The engine (block-chain.ts) runs Fn, asks the policy, then runs Mn or takes the policy's
// stored residual, then runs Bn; a policy whose deciders prune single blocks (DBPrune) is asked
// block by block instead (pruned-chain.ts). Core brings four (dbcache-, scm-, magcache- and
// dbprune-policy.ts); others register by decorator the way adapters do, can ship in their own
// package, and are picked by name with the config's `policy` key.
import { injectable } from 'tsyringe';

import type { AttentionPolicy } from './attention-sites.js';
import type { KeySpec } from './config-keys.js';
import type { CacheConfig } from './config.js';
import type { Decision, MeasureDiff } from './decision.js';
import { ditcacheContainer } from './registry.js';
import type { ResidualStore } from './residual-store.js';
import type { TensorOps } from './tensor-ops.js';
import type { TransformerCallInfo } from './transformer-call.js';
import type { PolicyTuning } from './tuning.js';

/** One branch's decisions during one run (a fresh one per branch and run). */
export interface StepDecider {
  /**
   * Decides `step`. `hasReference`: a computed step left what a cached step needs;
   * `measure` gives the relative L1 change of the Fn residual against the last computed step
   * (undefined when shapes differ), and costs a subtraction and a reduction: call it only when
   * the rule needs it.
   */
  decide(step: number, hasReference: boolean, measure: MeasureDiff): Decision;
  /** The steps cached so far, in order. */
  readonly cachedSteps: readonly number[];
  /** step -> the diff the rule measured (read by a CFG branch that shares the other's diff). */
  readonly residualDiffs: ReadonlyMap<number, number>;
  /**
   * What else the policy recorded for this branch during the run (e.g. MagCache's calibrated
   * ratios), plain data shown by `summary` as the branch's `report`. Optional.
   */
  report?(): Readonly<Record<string, unknown>>;
}

/**
 * A decider that prunes single blocks instead of deciding for the whole Mn range: each block it
 * may prune is either computed (its input and residuals kept per block) or replaced by the
 * residuals it left at its last computed step. `decide` then only answers for runs in which
 * nothing can be cached (the chain runs straight).
 */
export interface BlockPruningDecider extends StepDecider {
  /** A call of this branch starts `step` (before any of its blocks is decided). */
  enterStep(step: number): void;
  /** Whether block `block` of a chain of `blockCount` may ever be pruned; others are computed, nothing kept. */
  prunable(block: number, blockCount: number): boolean;
  /**
   * Whether block `block` reuses its residuals at `step`. `hasReference`: the block was computed
   * at an earlier step of this branch; `measure` gives the relative L1 change of the block's
   * input against its input then (undefined when shapes differ). `main`: given to the CFG
   * branch's decider, the main branch's decider of the same context.
   */
  pruneBlock(step: number, block: number, hasReference: boolean, measure: MeasureDiff, main: BlockPruningDecider | undefined): boolean;
  /** step -> the blocks pruned there, for every step this branch ran. */
  readonly prunedBlocks: ReadonlyMap<number, readonly number[]>;
}

/** Whether a branch's decider prunes single blocks (the chain then asks it block by block). */
export function prunesBlocks(decider: StepDecider): decider is BlockPruningDecider {
  return typeof (decider as Partial<BlockPruningDecider>).pruneBlock === 'function';
}

/** What a policy knows of the run a branch's decider is made for. */
export interface RunInfo {
  /** The run's step count: announced by the pipeline, else the config's numInferenceSteps, else undefined. */
  readonly numSteps: number | undefined;
}

/** Which stream of the chain a store keeps: the hidden states or the encoder (text) stream. */
export type Stream = 'hidden' | 'encoder';

/** A policy under one resolved config: the same for every run of its cache context. */
export interface CachePolicy {
  /** false when no step of a run can be cached: the chain then runs every block, untracked. */
  readonly cachingPossible: boolean;
  createDecider(run: RunInfo): StepDecider;
  /**
   * What keeps the Mn blocks' work on a stream between computed steps, and predicts it for cached
   * ones. `decider` is the branch's own (made by createDecider; the engine always passes it), for
   * a store that measures what it is given on the decider's behalf.
   */
  createStore<T>(ops: TensorOps<T>, stream: Stream, decider?: StepDecider): ResidualStore<T>;
  /** true: the store holds the Mn residual (added to the Fn output); false: the Mn output itself. */
  storesResidual(stream: Stream): boolean;
  /** Optional: acts around each announced transformer call (see TransformerCallHook). */
  createCallHook?<T>(ops: TensorOps<T>): TransformerCallHook<T>;
  /** Optional: decides each call of the model's attention sites (attention-sites.ts). */
  readonly attention?: AttentionPolicy;
}

/**
 * A policy's part around whole transformer calls that a pipeline announced (FasterCache rebuilds
 * the unconditional prediction from the same step's conditional one instead of running the call).
 * One per cache context and run, made at the run's first announced call of the context's
 * transformer; the call's output must be the model's output tensor.
 */
export interface TransformerCallHook<T> {
  /**
   * Runs the call `call` describes: `forward` computes it. Returns its output, or a new tensor in
   * its place (`skipped`: forward was not run; the caller owns the tensor either way).
   */
  run(call: TransformerCallInfo, forward: () => T): { output: T; skipped: boolean };
  /** What it did in the run, plain data shown by `summary` as the context's `callReport`. */
  report(): Readonly<Record<string, unknown>>;
  /** Drops the run's state, releasing its tensors. */
  clear(): void;
}

/**
 * Builds a policy from a resolved config: the engine's keys are the config's fields, the
 * policy's own keys are in `config.policyOptions` (DBCache's are the config's fields too).
 */
export interface CachePolicyFactory {
  create(config: CacheConfig): CachePolicy;
}

export interface PolicyRegistration {
  /** The value of the config's `policy` key that selects it, e.g. 'dbcache'. */
  readonly name: string;
  /** The policy's own config keys, camelCase name -> spelling and check. */
  readonly keys: Readonly<Record<string, KeySpec>>;
  /** Values of the keys a config leaves out (DBCache's keys have theirs in DEFAULT_CACHE_CONFIG). */
  readonly defaults: Readonly<Record<string, unknown>>;
  /** How `ditcache tune` searches its configs (tuning.ts); absent: the policy is not tuned. */
  readonly tuning?: PolicyTuning;
}

type PolicyClass = new (...args: any[]) => CachePolicyFactory;

export interface RegisteredPolicy extends PolicyRegistration {
  readonly factory: PolicyClass;
}

@injectable()
export class PolicyRegistry {
  private readonly byName = new Map<string, RegisteredPolicy>();

  add(registration: PolicyRegistration, factory: PolicyClass): void {
    const owner = this.byName.get(registration.name);
    if (owner && owner.factory !== factory) {
      throw new TypeError(`registerPolicy(${factory.name}): policy '${registration.name}' is already registered by ${owner.factory.name}`);
    }
    this.byName.set(registration.name, { ...registration, factory });
  }

  get(name: string): RegisteredPolicy | undefined {
    return this.byName.get(name);
  }

  names(): string[] {
    return [...this.byName.keys()].sort();
  }
}

ditcacheContainer.registerSingleton(PolicyRegistry);

/**
 * Registers a cache policy factory class, e.g.
 * `@registerPolicy({ name: 'my-policy', keys: { ... }, defaults: { ... } })`.
 * The factory is built by `ditcacheContainer`: its constructor parameters are injected.
 */
export function registerPolicy(registration: PolicyRegistration) {
  return <C extends PolicyClass>(factory: C): C => {
    injectable()(factory);
    policyRegistry().add(registration, factory);
    return factory;
  };
}

export function policyRegistry(): PolicyRegistry {
  return ditcacheContainer.resolve(PolicyRegistry);
}

/** The policy a resolved config names, built by its registered factory. */
export function createPolicy(config: CacheConfig): CachePolicy {
  const registered = policyRegistry().get(config.policy);
  if (!registered) throw new Error(`cache policy '${config.policy}' is not registered (registered: ${policyRegistry().names().join(', ')})`);
  return ditcacheContainer.resolve(registered.factory).create(config);
}
