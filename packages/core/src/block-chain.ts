// The cached block chain that takes the place of a block list on a transformer instance: one
// call runs the whole chain as the README's semantics say, following the chain's
// ForwardPattern: the Fn blocks, the decision, then either the Mn blocks (a computed step,
// whose residuals go to the residual stores) or the stored residual (a cached step), then the
// Bn blocks. A policy whose deciders prune single blocks takes the per-block path instead
// (pruned-chain.ts).
import type { ActiveCall, CacheContext } from './context.js';
import type { Decision } from './decision.js';
import type { Forecast } from './residual-store.js';
import { ForwardPattern, patternName, patternShape, type PatternShape } from './forward-pattern.js';
import { prunesBlocks, type BlockPruningDecider } from './policy.js';
import { runPrunedChain } from './pruned-chain.js';
import { sameShape, type TensorOps } from './tensor-ops.js';

/** A transformer block: anything with a forward method. */
export interface Block {
  forward(...args: any[]): unknown;
}

/** Counts what blocks cost, so `summary` can report the fraction of FLOPs that caching skipped. */
export interface FlopsCounter {
  /** FLOPs of block `index` of chain `chain` for one call with the chain's arguments (h, e, ...rest). */
  block(chain: string, index: number, args: readonly unknown[]): number;
  /**
   * FLOPs the same transformer call spends outside every cached chain (embeddings, output
   * layers); report them for one chain per transformer only, e.g. its first.
   */
  outsideBlocks?(chain: string, args: readonly unknown[]): number;
}

/**
 * The two streams between blocks. `e` is absent (null or undefined) for patterns without an
 * encoder stream, and after a block that ends it: a block of a pattern that returns the
 * encoder stream may return null or undefined in its place (as SD3's last joint block,
 * `context_pre_only`, does), and the blocks after it receive what it returned.
 */
export interface Streams<T> {
  h: T;
  e: T | null | undefined;
}

export class CachedBlockChain<T> implements Block {
  private readonly shape: PatternShape;

  constructor(
    readonly context: CacheContext<T>,
    /** The chain's original blocks, in order. */
    readonly blocks: readonly Block[],
    readonly pattern: ForwardPattern,
    private readonly ops: TensorOps<T>,
    private readonly flops?: FlopsCounter,
  ) {
    this.shape = patternShape(pattern);
  }

  forward(...args: unknown[]): unknown {
    const shape = this.shape;
    if (args.length < (shape.takesEncoder ? 2 : 1)) {
      throw new TypeError(
        `${this.context.layout.name}: ${patternName(this.pattern)} blocks take ${shape.takesEncoder ? '(h, e, ...)' : '(h, ...)'}, got ${args.length} argument(s)`,
      );
    }
    const call = this.context.placeCall();
    const input: Streams<T> = { h: args[0] as T, e: shape.takesEncoder ? (args[1] as T) : undefined };
    const rest = args.slice(shape.takesEncoder ? 2 : 1);
    if (!this.context.cachingPossible) return this.runStraight(call, input, rest, args);
    const decider = call.branch.decider;
    if (prunesBlocks(decider)) return this.runPruned(call, decider, input, rest, args);

    const fnOut = this.runFn(input, rest, args);
    const { decision, fnResidual } = this.decide(call, input, fnOut);
    const mnOut = decision.cache ? this.reuseMn(call, fnOut, fnResidual) : this.runMn(call, input, fnOut, fnResidual, rest, args);
    this.releaseReplaced(fnOut, mnOut, args);
    const out = this.runBn(mnOut, rest, args);
    this.countWork(decision.cache, args);
    return this.pack(out);
  }

  /** Nothing can be cached in this run: every block, no residual measured or stored. */
  private runStraight(call: ActiveCall<T>, input: Streams<T>, rest: unknown[], callerArgs: readonly unknown[]): unknown {
    this.context.decide(call, false, () => {
      throw new Error('unreachable: no diff is measured while caching is off');
    });
    const out = this.runBlocks(0, this.blocks.length, input, rest, callerArgs, false);
    this.countWork(false, callerArgs);
    return this.pack(out);
  }

  /** Block by block, each block the decider may prune computed or replaced by its stored residuals. */
  private runPruned(call: ActiveCall<T>, decider: BlockPruningDecider, input: Streams<T>, rest: unknown[], callerArgs: readonly unknown[]): unknown {
    const main = this.context.mainDeciderOf(call);
    const { out, pruned } = runPrunedChain(
      {
        ops: this.ops,
        shape: this.shape,
        blockCount: this.blocks.length,
        step: call.step,
        decider,
        main: main && prunesBlocks(main) ? main : undefined,
        store: call.branch.buffers.prunedBlocks,
        runBlock: (index, streams) => this.runBlocks(index, index + 1, streams, rest, callerArgs, false),
        callerArgs,
      },
      input,
    );
    this.context.recordPrunedCall(call, pruned);
    const skipped = new Set(pruned);
    this.countBlocks(this.blocks.length - pruned.length, (i) => skipped.has(i), callerArgs);
    return this.pack(out);
  }

  /** Fn: the first blocks, always computed; their residual decides. */
  private runFn(input: Streams<T>, rest: unknown[], callerArgs: readonly unknown[]): Streams<T> {
    return this.runBlocks(0, this.context.config.fnComputeBlocks, input, rest, callerArgs, false);
  }

  /**
   * The decision rules for this call; the diff, when they ask for it, compares the Fn residual
   * `R = h_F - h_in` with the branch's reference. Returns R when it was computed.
   */
  private decide(call: ActiveCall<T>, input: Streams<T>, fnOut: Streams<T>): { decision: Decision; fnResidual: T | undefined } {
    const buffers = call.branch.buffers;
    let fnResidual: T | undefined;
    const decision = this.context.decide(call, buffers.hasReference(), () => {
      fnResidual = this.ops.sub(fnOut.h, input.h);
      const reference = buffers.fnResidual as T;
      if (!sameShape(this.ops.shape(reference), this.ops.shape(fnResidual))) return undefined;
      return this.ops.relL1(reference, fnResidual);
    });
    return { decision, fnResidual };
  }

  /**
   * Mn on a computed step: keeps R as the branch's new reference, runs the middle blocks and
   * puts what they did (their residuals) in the residual stores.
   */
  private runMn(
    call: ActiveCall<T>,
    input: Streams<T>,
    fnOut: Streams<T>,
    fnResidual: T | undefined,
    rest: unknown[],
    callerArgs: readonly unknown[],
  ): Streams<T> {
    const buffers = call.branch.buffers;
    const { fnComputeBlocks: fn, bnComputeBlocks: bn } = this.context.config;
    buffers.setFnResidual(fnResidual ?? this.ops.sub(fnOut.h, input.h));
    const mnOut = this.runBlocks(fn, this.blocks.length - bn, fnOut, rest, callerArgs, false);
    buffers.hiddenResidual.update(call.step, this.mnResidual(fnOut.h, mnOut.h, this.context.policy.storesResidual('hidden')));
    // A stream the Mn blocks ended (or never received) leaves nothing to store.
    buffers.mnReturnsEncoder = this.shape.returnsEncoder && mnOut.e != null && fnOut.e != null;
    if (buffers.mnReturnsEncoder) {
      buffers.encoderResidual.update(call.step, this.mnResidual(fnOut.e as T, mnOut.e as T, this.context.policy.storesResidual('encoder')));
    } else {
      buffers.encoderResidual.clear();
    }
    return mnOut;
  }

  /** Mn on a cached step: the stored (or forecast) residual added to the Fn output, no block run. */
  private reuseMn(call: ActiveCall<T>, fnOut: Streams<T>, fnResidual: T | undefined): Streams<T> {
    const buffers = call.branch.buffers;
    if (fnResidual !== undefined) this.ops.release(fnResidual);
    const h = this.addResidual(fnOut.h, buffers.hiddenResidual.predict(call.step), this.context.policy.storesResidual('hidden'));
    if (!this.shape.returnsEncoder) return { h, e: fnOut.e };
    const e =
      buffers.mnReturnsEncoder && fnOut.e != null
        ? this.addResidual(fnOut.e as T, buffers.encoderResidual.predict(call.step), this.context.policy.storesResidual('encoder'))
        : undefined;
    return { h, e };
  }

  /** Bn: the last blocks, always computed, on what Mn (or the stored residual) gave. */
  private runBn(mnOut: Streams<T>, rest: unknown[], callerArgs: readonly unknown[]): Streams<T> {
    const n = this.blocks.length;
    return this.runBlocks(n - this.context.config.bnComputeBlocks, n, mnOut, rest, callerArgs, true);
  }

  /** Blocks [from, to) on `start`; intermediates are released, `start` only if `releaseStart`. */
  private runBlocks(from: number, to: number, start: Streams<T>, rest: unknown[], callerArgs: readonly unknown[], releaseStart: boolean): Streams<T> {
    const shape = this.shape;
    let { h, e } = start;
    for (let i = from; i < to; i++) {
      const block = this.blocks[i];
      const out = shape.takesEncoder ? block.forward(h, e, ...rest) : block.forward(h, ...rest);
      let nextH: T;
      let nextE = e;
      if (shape.returnsEncoder) {
        if (!Array.isArray(out) || out.length !== 2) throw this.outputError(i, out);
        [nextH, nextE] = shape.hiddenFirst ? (out as [T, T]) : [out[1] as T, out[0] as T];
        if (nextH == null) throw this.outputError(i, out);
      } else {
        if (Array.isArray(out)) throw this.outputError(i, out);
        nextH = out as T;
      }
      if (releaseStart || h !== start.h) this.releaseIfOwned(h, nextH, callerArgs);
      if (nextE !== e && (releaseStart || e !== start.e)) this.releaseIfOwned(e, nextE, callerArgs);
      h = nextH;
      e = nextE;
    }
    return { h, e };
  }

  /** What the residual store keeps of the Mn blocks' work: their residual, or a copy of their output. */
  private mnResidual(before: T, after: T, asResidual: boolean): T {
    return asResidual ? this.ops.sub(after, before) : this.ops.clone(after);
  }

  /** The Fn output plus the stored (or forecast) residual; or the stored output itself. */
  private addResidual(fnOutput: T, stored: Forecast<T>, asResidual: boolean): T {
    if (!asResidual) return stored.owned ? stored.value : this.ops.clone(stored.value);
    const out = this.ops.add(fnOutput, stored.value);
    if (stored.owned) this.ops.release(stored.value);
    return out;
  }

  /** Releases the Fn outputs that Mn (or the stored residual) replaced. */
  private releaseReplaced(fnOut: Streams<T>, mnOut: Streams<T>, callerArgs: readonly unknown[]): void {
    this.releaseIfOwned(fnOut.h, mnOut.h, callerArgs);
    if (fnOut.e !== mnOut.e) this.releaseIfOwned(fnOut.e, mnOut.e, callerArgs);
  }

  /** Releases `t` unless the caller passed it in or it lives on as `successor`. */
  private releaseIfOwned(t: T | null | undefined, successor: T | null | undefined, callerArgs: readonly unknown[]): void {
    if (t == null || t === successor || callerArgs.includes(t)) return;
    this.ops.release(t);
  }

  private pack({ h, e }: Streams<T>): unknown {
    const shape = this.shape;
    if (!shape.returnsEncoder) return h;
    return shape.hiddenFirst ? [h, e] : [e, h];
  }

  /** Counts the blocks run, and their FLOPs when the adapter can count them. */
  private countWork(cached: boolean, args: readonly unknown[]): void {
    const n = this.blocks.length;
    const { fnComputeBlocks: fn, bnComputeBlocks: bn } = this.context.config;
    this.countBlocks(cached ? fn + bn : n, (i) => cached && i >= fn && i < n - bn, args);
  }

  /** Counts `computedBlocks` blocks run, and the FLOPs of those run and of those `skipped`. */
  private countBlocks(computedBlocks: number, skipped: (index: number) => boolean, args: readonly unknown[]): void {
    const counter = this.flops;
    if (!counter) {
      this.context.countWork(computedBlocks);
      return;
    }
    const chain = this.context.layout.name;
    let computedFlops = 0;
    let skippedFlops = 0;
    for (let i = 0; i < this.blocks.length; i++) {
      const f = counter.block(chain, i, args);
      if (skipped(i)) skippedFlops += f;
      else computedFlops += f;
    }
    this.context.countWork(computedBlocks, { computed: computedFlops, skipped: skippedFlops, outside: counter.outsideBlocks?.(chain, args) ?? 0 });
  }

  private outputError(index: number, out: unknown): TypeError {
    const expected = this.shape.returnsEncoder
      ? `${this.shape.hiddenFirst ? '[h, e]' : '[e, h]'} (e may be null where the block ends the encoder stream, h may not)`
      : 'a single tensor';
    const got = !Array.isArray(out) ? 'a single value' : this.shape.returnsEncoder && out.length === 2 ? 'a pair without h' : `an array of ${out.length}`;
    return new TypeError(`${this.context.layout.name}: block ${index} returned ${got}, but ${patternName(this.pattern)} blocks return ${expected}`);
  }
}
