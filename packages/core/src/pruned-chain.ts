// The chain's per-block path, for a policy whose deciders prune single blocks (DBPrune): every
// block the decider may prune is either computed, keeping its input (the next step's reference)
// and its residuals on both streams, or replaced by adding the residuals it left at its last
// computed step to its input. Blocks it may not prune (Fn, Bn, listed ids) are computed plainly.
import type { Streams } from './block-chain.js';
import type { PatternShape } from './forward-pattern.js';
import type { BlockPruningDecider } from './policy.js';
import { sameShape, type TensorOps } from './tensor-ops.js';

/** What a computed block left for the steps that prune it. */
interface BlockReference<T> {
  /** Its hidden input: the diff compares the next input with it. */
  readonly input: T;
  readonly hiddenResidual: T;
  /** Absent where the block did not pass an encoder stream on. */
  readonly encoderResidual: T | undefined;
}

/** One branch's references, per block index; each tensor is its own and released when replaced. */
export class PrunedBlockStore<T> {
  private readonly byBlock = new Map<number, BlockReference<T>>();
  /** The inputs kept, so the chain neither releases one nor keeps one twice. */
  private readonly inputs = new Set<T>();

  constructor(private readonly ops: TensorOps<T>) {}

  get(block: number): BlockReference<T> | undefined {
    return this.byBlock.get(block);
  }

  set(block: number, reference: BlockReference<T>): void {
    this.release(block);
    this.byBlock.set(block, reference);
    this.inputs.add(reference.input);
  }

  /** Whether `t` is the kept input of some block. */
  holds(t: T): boolean {
    return this.inputs.has(t);
  }

  clear(): void {
    for (const block of [...this.byBlock.keys()]) this.release(block);
  }

  private release(block: number): void {
    const old = this.byBlock.get(block);
    if (!old) return;
    this.inputs.delete(old.input);
    this.ops.release(old.input);
    this.ops.release(old.hiddenResidual);
    if (old.encoderResidual !== undefined) this.ops.release(old.encoderResidual);
    this.byBlock.delete(block);
  }
}

/** What the per-block path needs of its chain and call. */
export interface PrunedChainRun<T> {
  readonly ops: TensorOps<T>;
  readonly shape: PatternShape;
  readonly blockCount: number;
  readonly step: number;
  readonly decider: BlockPruningDecider;
  /** The main branch's decider, for a call of the CFG branch. */
  readonly main: BlockPruningDecider | undefined;
  readonly store: PrunedBlockStore<T>;
  /** Runs block `index` on `streams` (releasing nothing it was given). */
  runBlock(index: number, streams: Streams<T>): Streams<T>;
  /** Tensors the chain's caller passed in: never released or kept without a copy. */
  readonly callerArgs: readonly unknown[];
}

/** Runs every block of the chain, pruning where the decider says; returns the output and the pruned blocks. */
export function runPrunedChain<T>(run: PrunedChainRun<T>, start: Streams<T>): { out: Streams<T>; pruned: number[] } {
  const { ops, decider, blockCount, step } = run;
  decider.enterStep(step);
  const pruned: number[] = [];
  let current = start;
  for (let i = 0; i < blockCount; i++) {
    let next: Streams<T>;
    if (!decider.prunable(i, blockCount)) {
      next = run.runBlock(i, current);
    } else {
      const reference = run.store.get(i);
      const measure = () => (reference && sameShape(ops.shape(reference.input), ops.shape(current.h)) ? ops.relL1(reference.input, current.h) : undefined);
      // The decider never prunes a block without a reference; the check only narrows the type.
      if (decider.pruneBlock(step, i, reference !== undefined, measure, run.main) && reference) {
        pruned.push(i);
        next = reuse(run, current, reference);
      } else {
        next = run.runBlock(i, current);
        run.store.set(i, { input: keep(run, current.h), ...residuals(run, current, next) });
      }
    }
    releaseReplaced(run, current, next);
    current = next;
  }
  return { out: current, pruned };
}

/** A pruned block: its input plus the residuals it left, on each stream it changed. */
function reuse<T>(run: PrunedChainRun<T>, input: Streams<T>, reference: BlockReference<T>): Streams<T> {
  const h = run.ops.add(input.h, reference.hiddenResidual);
  const e = reference.encoderResidual !== undefined && input.e != null ? run.ops.add(input.e, reference.encoderResidual) : input.e;
  return { h, e };
}

/** What a computed block added to each stream; the encoder's only where the pattern returns it. */
function residuals<T>(run: PrunedChainRun<T>, input: Streams<T>, output: Streams<T>): { hiddenResidual: T; encoderResidual: T | undefined } {
  const { ops } = run;
  const hiddenResidual = ops.retain(ops.sub(output.h, input.h));
  const passesEncoder = run.shape.returnsEncoder && input.e != null && output.e != null;
  return { hiddenResidual, encoderResidual: passesEncoder ? ops.retain(ops.sub(output.e as T, input.e as T)) : undefined };
}

/**
 * The block's input as the store keeps it: the chain's own tensor, or a copy of one the caller
 * owns or another block keeps already (a block that returned its input unchanged).
 */
function keep<T>(run: PrunedChainRun<T>, input: T): T {
  return run.ops.retain(run.callerArgs.includes(input) || run.store.holds(input) ? run.ops.clone(input) : input);
}

/** Releases the inputs a block replaced, unless the caller owns them, they live on, or the store keeps them. */
function releaseReplaced<T>(run: PrunedChainRun<T>, input: Streams<T>, output: Streams<T>): void {
  const releasable = (t: T | null | undefined, successor: T | null | undefined): t is T =>
    t != null && t !== successor && !run.store.holds(t) && !run.callerArgs.includes(t);
  if (releasable(input.h, output.h)) run.ops.release(input.h);
  if (releasable(input.e, output.e)) run.ops.release(input.e);
}
