// One cache context: the state of one cached block chain (one block list, or several joined),
// kept per branch (CFG) and per run. It places each transformer call in a step and a branch
// (from the running call its pipeline described, or by position), applies the decision rules
// and keeps the statistics. What each step does is its cache policy's call.
import {
  AttentionRun,
  missingSitesError,
  type AttentionSiteCall,
  type AttentionSiteHost,
  type AttentionSiteRecord,
  type PlacedCall,
} from './attention-sites.js';
import type { CacheConfig } from './config.js';
import type { Decision, MeasureDiff } from './decision.js';
import { createPolicy, prunesBlocks, type CachePolicy, type RunInfo, type StepDecider, type TransformerCallHook } from './policy.js';
import { PrunedBlockStore } from './pruned-chain.js';
import type { ResidualStore } from './residual-store.js';
import type { TensorOps } from './tensor-ops.js';
import type { CfgBranch, RunningCall, TransformerCallInfo, TransformerCallScope } from './transformer-call.js';

/**
 * cache-dit's two roles within a context: 'main' (its non-CFG branch, reported as
 * cachedSteps) and 'cfg' (reported as cfgCachedSteps).
 */
export type BranchRole = 'main' | 'cfg';

/** The tensors a branch keeps between steps. */
export class BranchBuffers<T> {
  /** The Fn residual of the last computed step: the reference for the diff. */
  fnResidual: T | undefined;
  /** The Mn residual of the hidden stream, stored (and forecast) for cached steps. */
  readonly hiddenResidual: ResidualStore<T>;
  /** The Mn residual of the encoder stream, likewise. */
  readonly encoderResidual: ResidualStore<T>;
  /**
   * Whether the Mn blocks passed an encoder stream on at the last computed step. A chain
   * may end that stream (SD3's last joint block returns none): then there is nothing to store
   * or forecast for it, and a cached step passes no encoder stream on either.
   */
  mnReturnsEncoder = false;
  /** Per block, what a policy that prunes single blocks keeps (empty under other policies). */
  readonly prunedBlocks: PrunedBlockStore<T>;

  constructor(
    private readonly ops: TensorOps<T>,
    policy: CachePolicy,
    decider: StepDecider,
  ) {
    this.hiddenResidual = policy.createStore(ops, 'hidden', decider);
    this.encoderResidual = policy.createStore(ops, 'encoder', decider);
    this.prunedBlocks = new PrunedBlockStore(ops);
  }

  /** A computed step left everything a cached step needs. */
  hasReference(): boolean {
    return this.fnResidual !== undefined && this.hiddenResidual.hasValue && (!this.mnReturnsEncoder || this.encoderResidual.hasValue);
  }

  setFnResidual(residual: T): void {
    if (this.fnResidual !== undefined) this.ops.release(this.fnResidual);
    this.fnResidual = this.ops.retain(residual);
  }

  clear(): void {
    if (this.fnResidual !== undefined) this.ops.release(this.fnResidual);
    this.fnResidual = undefined;
    this.hiddenResidual.clear();
    this.encoderResidual.clear();
    this.prunedBlocks.clear();
    this.mnReturnsEncoder = false;
  }
}

export class Branch<T> {
  readonly decider: StepDecider;
  readonly buffers: BranchBuffers<T>;
  /** How the pipeline named this branch, when it announced its calls. */
  announcedAs: CfgBranch | undefined;

  constructor(
    readonly role: BranchRole,
    ops: TensorOps<T>,
    policy: CachePolicy,
    run: RunInfo,
  ) {
    this.decider = policy.createDecider(run);
    this.buffers = new BranchBuffers(ops, policy, this.decider);
  }
}

export interface ActiveCall<T> {
  /** The context's step (cache-dit's numbering: steps this context has run, from 0). */
  readonly step: number;
  readonly branch: Branch<T>;
}

/** One decided step, for `summary(..., { details: true })` and tests. */
export interface StepRecord {
  readonly step: number;
  readonly pipelineStep: number | undefined;
  readonly role: BranchRole;
  readonly announcedAs: CfgBranch | undefined;
  readonly cached: boolean;
  readonly reason: Decision['reason'];
  readonly diff: number | undefined;
}

export interface ChainLayout {
  /** e.g. 'transformer.transformerBlocks' or 'transformer.transformerBlocks+singleTransformerBlocks'. */
  readonly name: string;
  readonly transformerIndex: number;
  readonly blockCount: number;
}

export class CacheContext<T> implements AttentionSiteHost {
  private branches = new Map<BranchRole, Branch<T>>();
  private step = -1;
  private lastPipelineStep: number | undefined;
  /** The run's step count as its pipeline announced it. */
  private announcedSteps: number | undefined;
  private rolesThisStep = new Set<BranchRole>();
  private callsThisStep = 0;
  private callsThisRun = 0;
  private lastTimestep: number | undefined;
  /** The running call this context placed last: a chain run twice within one call is placed once by it. */
  private lastPlaced: RunningCall | undefined;
  private pipelineSteps: (number | undefined)[] = [];
  private stepRecords: StepRecord[] = [];
  private computedBlocks = 0;
  private totalBlocks = 0;
  private computedFlops = 0;
  private skippedFlops = 0;
  private outsideFlops = 0;
  private currentPolicy: CachePolicy;
  /** The policy's part around whole transformer calls in this run, when it has one. */
  private callHook: TransformerCallHook<T> | undefined;
  /** The attention sites its transformer's adapter declared (set by enableCache). */
  private attentionSiteCount = 0;
  /** The policy's decisions on the attention sites in this run, when it acts on them. */
  private attentionRun: AttentionRun<T> | undefined;
  /** The transformer call this context placed last, for the attention sites it runs. */
  private placed: PlacedCall | undefined;

  constructor(
    readonly layout: ChainLayout,
    private currentConfig: CacheConfig,
    /** The adapter's hasSeparateCfg, used when the config leaves enableSeparateCfg null. */
    private readonly adapterSeparateCfg: boolean,
    /** The running transformer call, as the pipeline (or the adapter's timestepOf) described it. */
    private readonly calls: TransformerCallScope,
    private readonly ops: TensorOps<T>,
  ) {
    this.currentPolicy = createPolicy(currentConfig);
  }

  get config(): CacheConfig {
    return this.currentConfig;
  }

  get policy(): CachePolicy {
    return this.currentPolicy;
  }

  /** Whether any step of a run could be cached; when not, the chain runs without bookkeeping. */
  get cachingPossible(): boolean {
    return this.currentPolicy.cachingPossible;
  }

  get separateCfg(): boolean {
    return this.currentConfig.enableSeparateCfg ?? this.adapterSeparateCfg;
  }

  /** Drops all state of the current run (releasing its tensors); the next call starts a new run. */
  reset(): void {
    this.callHook?.clear();
    this.callHook = undefined;
    this.attentionRun?.clear();
    this.attentionRun = undefined;
    this.placed = undefined;
    for (const b of this.branches.values()) b.buffers.clear();
    this.branches = new Map();
    this.step = -1;
    this.lastPipelineStep = undefined;
    this.announcedSteps = undefined;
    this.rolesThisStep = new Set();
    this.callsThisStep = 0;
    this.callsThisRun = 0;
    this.lastTimestep = undefined;
    this.pipelineSteps = [];
    this.stepRecords = [];
    this.computedBlocks = 0;
    this.totalBlocks = 0;
    this.computedFlops = 0;
    this.skippedFlops = 0;
    this.outsideFlops = 0;
  }

  /** Starts a new run under another config. */
  reconfigure(config: CacheConfig): void {
    const policy = createPolicy(config);
    this.checkAttentionSites(policy, config.policy);
    this.reset();
    this.currentConfig = config;
    this.currentPolicy = policy;
  }

  declareAttentionSites(count: number): void {
    this.attentionSiteCount = count;
  }

  /** Refuses a policy that acts on attention sites when this context's transformer declares none. */
  checkAttentionSites(policy: CachePolicy, name = this.currentConfig.policy): void {
    if (policy.attention?.requiresSites && this.attentionSiteCount === 0) throw missingSitesError(name, this.layout.name);
  }

  /** Runs one call of an attention site of this context's transformer, as its policy decides. */
  runAttention<O>(site: AttentionSiteCall['site'], compute: () => O): O {
    const attention = this.currentPolicy.attention;
    // A site that runs before the chain placed the running call (e.g. in an embedder) is computed:
    // the call's branch and step are not known yet.
    if (!attention || this.placed === undefined || this.calls.current !== this.lastPlaced) return compute();
    this.attentionRun ??= new AttentionRun(attention, this.ops);
    return this.attentionRun.run(site, this.placed, this.callHook, compute as () => never) as O;
  }

  /**
   * Runs an announced transformer call of this context's transformer through the policy's call
   * hook, if it has one (else just `forward`). A call skipped by the hook counts as a call whose
   * blocks were all skipped.
   */
  runCall<R>(call: TransformerCallInfo, forward: () => R): R {
    if (!this.currentPolicy.createCallHook) return forward();
    // A pipeline that starts counting again has started a new run: reset before the hook acts,
    // not in the middle of its call.
    if (this.lastPipelineStep !== undefined && call.step < this.lastPipelineStep) this.reset();
    this.callHook ??= this.currentPolicy.createCallHook(this.ops);
    const { output, skipped } = this.callHook.run(call, forward as unknown as () => T);
    if (skipped) this.countWork(0);
    return output as unknown as R;
  }

  /** Places the transformer call that is starting in a step and a branch. */
  placeCall(): ActiveCall<T> {
    const running = this.calls.current;
    const fresh = running !== undefined && running !== this.lastPlaced;
    this.lastPlaced = running;
    const active =
      fresh && running.kind === 'announced'
        ? this.announcedCall(running.call)
        : this.inferredCall(fresh && running.kind === 'bare' ? running.timestep : undefined);
    this.placed = placedCall(running, active, this.pipelineSteps[active.step], this.separateCfg, this.currentConfig.cfgComputeFirst);
    return active;
  }

  /** Applies the decision rules to this call, sharing the other branch's diff where configured. */
  decide(call: ActiveCall<T>, hasReference: boolean, measure: MeasureDiff): Decision {
    let measureDiff = measure;
    if (call.branch.role === 'cfg' && !this.currentConfig.cfgDiffComputeSeparate) {
      const shared = this.branches.get('main')?.decider.residualDiffs.get(call.step);
      if (shared !== undefined) measureDiff = () => shared;
    }
    const decision = call.branch.decider.decide(call.step, hasReference, measureDiff);
    this.stepRecords.push({
      step: call.step,
      pipelineStep: this.pipelineSteps[call.step],
      role: call.branch.role,
      announcedAs: call.branch.announcedAs,
      cached: decision.cache,
      reason: decision.reason,
      diff: decision.diff,
    });
    return decision;
  }

  /** The main branch's decider, for a call of the CFG branch (a block-pruning rule may read its diffs). */
  mainDeciderOf(call: ActiveCall<T>): StepDecider | undefined {
    return call.branch.role === 'cfg' ? this.branches.get('main')?.decider : undefined;
  }

  /** Records a call decided block by block: cached when it pruned any block. */
  recordPrunedCall(call: ActiveCall<T>, prunedBlocks: readonly number[]): void {
    this.stepRecords.push({
      step: call.step,
      pipelineStep: this.pipelineSteps[call.step],
      role: call.branch.role,
      announcedAs: call.branch.announcedAs,
      cached: prunedBlocks.length > 0,
      reason: prunedBlocks.length > 0 ? `pruned blocks ${prunedBlocks.join(', ')}` : 'no block pruned',
      diff: undefined,
    });
  }

  /** Counts the blocks (and FLOPs, when known) one call ran and skipped. */
  countWork(computedBlocks: number, flops?: { computed: number; skipped: number; outside: number }): void {
    this.computedBlocks += computedBlocks;
    this.totalBlocks += this.layout.blockCount;
    if (flops) {
      this.computedFlops += flops.computed;
      this.skippedFlops += flops.skipped;
      this.outsideFlops += flops.outside;
    }
  }

  /** The current run's records, for statistics. */
  snapshot(): ContextSnapshot {
    const branch = (role: BranchRole): BranchSnapshot | undefined => {
      const b = this.branches.get(role);
      return (
        b && {
          role,
          announcedAs: b.announcedAs,
          cachedSteps: [...b.decider.cachedSteps],
          residualDiffs: new Map(b.decider.residualDiffs),
          prunedBlocks: prunesBlocks(b.decider) ? new Map(b.decider.prunedBlocks) : undefined,
          report: b.decider.report?.(),
        }
      );
    };
    return {
      layout: this.layout,
      config: this.currentConfig,
      steps: this.step + 1,
      transformerCalls: this.callsThisRun,
      pipelineSteps: [...this.pipelineSteps],
      main: branch('main'),
      cfg: branch('cfg'),
      stepRecords: [...this.stepRecords],
      computedBlocks: this.computedBlocks,
      totalBlocks: this.totalBlocks,
      flops: { computed: this.computedFlops, skipped: this.skippedFlops, outside: this.outsideFlops },
      callReport: this.callHook?.report(),
      attention: this.attentionRun?.records() ?? [],
    };
  }

  private announcedCall(a: TransformerCallInfo): ActiveCall<T> {
    // A pipeline that starts counting again without saying so has started a new run.
    if (this.lastPipelineStep !== undefined && a.step < this.lastPipelineStep) this.reset();
    const role = this.roleOf(a.branch);
    if (a.step !== this.lastPipelineStep || this.rolesThisStep.has(role)) this.advanceStep(a.step);
    this.rolesThisStep.add(role);
    this.announcedSteps = a.numSteps ?? this.announcedSteps;
    return this.enter(role, a.branch);
  }

  private inferredCall(timestep: number | undefined): ActiveCall<T> {
    let startsStep = this.startsStep(timestep);
    const limit = this.currentConfig.numInferenceSteps;
    const risen = timestep !== undefined && this.lastTimestep !== undefined && timestep > this.lastTimestep;
    if (risen || (startsStep && limit !== null && this.step + 1 >= limit)) {
      this.reset();
      startsStep = true;
    }
    const position = startsStep ? 0 : this.callsThisStep;
    if (startsStep) this.advanceStep(undefined);
    this.lastTimestep = timestep;
    // Without announcements, the branch follows from the call's position in its step, as in
    // cache-dit: the first call is the main branch unless cfgComputeFirst says the CFG one.
    const role: BranchRole = this.separateCfg && (position === 0) === this.currentConfig.cfgComputeFirst ? 'cfg' : 'main';
    return this.enter(role, undefined);
  }

  /** Whether an unannounced call begins a new step. */
  private startsStep(timestep: number | undefined): boolean {
    if (this.step < 0 || !this.separateCfg) return true;
    // The timestep tells steps apart when the adapter can read it; a guidance-free run then
    // still counts one step per call. Without it, calls pair up by parity.
    if (timestep !== undefined) return timestep !== this.lastTimestep || this.callsThisStep >= 2;
    return this.callsThisStep >= 2;
  }

  private advanceStep(pipelineStep: number | undefined): void {
    this.step += 1;
    this.lastPipelineStep = pipelineStep;
    this.rolesThisStep.clear();
    this.callsThisStep = 0;
    this.pipelineSteps.push(pipelineStep);
  }

  private enter(role: BranchRole, announcedAs: CfgBranch | undefined): ActiveCall<T> {
    let branch = this.branches.get(role);
    if (!branch) {
      branch = new Branch(role, this.ops, this.currentPolicy, { numSteps: this.announcedSteps ?? this.currentConfig.numInferenceSteps ?? undefined });
      this.branches.set(role, branch);
    }
    if (announcedAs) branch.announcedAs = announcedAs;
    this.callsThisStep += 1;
    this.callsThisRun += 1;
    return { step: this.step, branch };
  }

  /**
   * Announced branches keep separate state whatever enableSeparateCfg says; cfgComputeFirst
   * keeps its cache-dit meaning (the cond branch, called first, is the CFG role), so traces
   * and shared diffs line up with cache-dit's.
   */
  private roleOf(branch: CfgBranch): BranchRole {
    if (branch === 'batched') return 'main';
    return (branch === 'cond') === this.currentConfig.cfgComputeFirst ? 'cfg' : 'main';
  }
}

export interface BranchSnapshot {
  readonly role: BranchRole;
  readonly announcedAs: CfgBranch | undefined;
  readonly cachedSteps: readonly number[];
  readonly residualDiffs: ReadonlyMap<number, number>;
  /** step -> the blocks pruned there, under a policy that prunes single blocks. */
  readonly prunedBlocks: ReadonlyMap<number, readonly number[]> | undefined;
  readonly report: Readonly<Record<string, unknown>> | undefined;
}

export interface ContextSnapshot {
  readonly layout: ChainLayout;
  readonly config: CacheConfig;
  readonly steps: number;
  readonly transformerCalls: number;
  readonly pipelineSteps: readonly (number | undefined)[];
  readonly main: BranchSnapshot | undefined;
  readonly cfg: BranchSnapshot | undefined;
  readonly stepRecords: readonly StepRecord[];
  readonly computedBlocks: number;
  readonly totalBlocks: number;
  readonly flops: { readonly computed: number; readonly skipped: number; readonly outside: number };
  /** What the policy's call hook did in the run, when the policy has one. */
  readonly callReport: Readonly<Record<string, unknown>> | undefined;
  /** Per attention site and branch, its calls and the calls the policy skipped, when it acts on them. */
  readonly attention: readonly AttentionSiteRecord[];
}

/**
 * The branch and timestep of the call just placed. An unannounced call's branch follows from its
 * role: without separate CFG it is one batched call; with it, cache-dit's roles map back to the
 * cond call (the step's first) and the uncond call.
 */
function placedCall(
  running: RunningCall | undefined,
  active: ActiveCall<unknown>,
  pipelineStep: number | undefined,
  separateCfg: boolean,
  cfgComputeFirst: boolean,
): PlacedCall {
  if (running?.kind === 'announced') return { branch: running.call.branch, pipelineStep, timestep: running.call.timestep };
  const branch: CfgBranch = !separateCfg ? 'batched' : (active.branch.role === 'cfg') === cfgComputeFirst ? 'cond' : 'uncond';
  return { branch, pipelineStep, timestep: running?.kind === 'bare' ? running.timestep : undefined };
}
