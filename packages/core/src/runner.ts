// The cached runner that takes the place of a block list on a transformer instance: one call
// runs the whole chain (Fn blocks, decision, Mn blocks or the cached residual, Bn blocks)
// following the chain's ForwardPattern.
import type { CacheContext } from './context.js';
import { ForwardPattern, patternName, patternShape, type PatternShape } from './forward-pattern.js';
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
interface Streams<T> {
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
      throw new TypeError(`${this.context.layout.name}: ${patternName(this.pattern)} blocks take ${shape.takesEncoder ? '(h, e, ...)' : '(h, ...)'}, got ${args.length} argument(s)`);
    }
    const call = this.context.beginCall();
    const input: Streams<T> = { h: args[0] as T, e: shape.takesEncoder ? (args[1] as T) : undefined };
    const rest = args.slice(shape.takesEncoder ? 2 : 1);
    const n = this.blocks.length;

    if (!this.context.cachingPossible) {
      this.context.decide(call, false, () => {
        throw new Error('unreachable: no diff is measured while caching is off');
      });
      const out = this.run(0, n, input, rest, args, false);
      this.countWork(false, args);
      return this.pack(out);
    }

    const { fnComputeBlocks: fn, bnComputeBlocks: bn } = this.context.config;
    const first = this.run(0, fn, input, rest, args, false);
    const buffers = call.branch.buffers;
    let fnResidual: T | undefined;
    const decision = this.context.decide(call, buffers.hasReference(), () => {
      fnResidual = this.ops.sub(first.h, input.h);
      const reference = buffers.fnResidual as T;
      if (!sameShape(this.ops.shape(reference), this.ops.shape(fnResidual))) return undefined;
      return this.ops.relL1(reference, fnResidual);
    });

    const hiddenResidual = this.holdsResidual(this.context.config.enableTaylorseer);
    const encoderResidual = this.holdsResidual(this.encoderForecast());
    let middle: Streams<T>;
    if (decision.cache) {
      if (fnResidual !== undefined) this.ops.release(fnResidual);
      middle = {
        h: this.applyStored(first.h, buffers.hidden.predict(call.step), hiddenResidual),
        e: !shape.returnsEncoder
          ? first.e
          : buffers.middleReturnsEncoder && first.e != null
            ? this.applyStored(first.e as T, buffers.encoder.predict(call.step), encoderResidual)
            : undefined,
      };
    } else {
      buffers.setFnResidual(fnResidual ?? this.ops.sub(first.h, input.h));
      middle = this.run(fn, n - bn, first, rest, args, false);
      buffers.hidden.update(call.step, this.middleWork(first.h, middle.h, hiddenResidual));
      // A stream the middle blocks ended (or never received) leaves nothing to store.
      buffers.middleReturnsEncoder = shape.returnsEncoder && middle.e != null && first.e != null;
      if (buffers.middleReturnsEncoder) buffers.encoder.update(call.step, this.middleWork(first.e as T, middle.e as T, encoderResidual));
      else buffers.encoder.clear();
    }
    this.releaseReplaced(first, middle, args);
    const out = this.run(n - bn, n, middle, rest, args, true);
    this.countWork(decision.cache, args);
    return this.pack(out);
  }

  /** Blocks [from, to) on `start`; intermediates are released, `start` only if `releaseStart`. */
  private run(from: number, to: number, start: Streams<T>, rest: unknown[], callerArgs: readonly unknown[], releaseStart: boolean): Streams<T> {
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

  /** The stored (or forecast) work of the middle blocks applied to the Fn output. */
  private applyStored(fnOutput: T, forecast: { value: T; owned: boolean }, residual: boolean): T {
    if (!residual) return forecast.owned ? forecast.value : this.ops.clone(forecast.value);
    const out = this.ops.add(fnOutput, forecast.value);
    if (forecast.owned) this.ops.release(forecast.value);
    return out;
  }

  /** What to store of the middle blocks' work: their residual, or a copy of their output. */
  private middleWork(before: T, after: T, residual: boolean): T {
    return residual ? this.ops.sub(after, before) : this.ops.clone(after);
  }

  /** A stream's store holds residuals unless TaylorSeer forecasts the stream's hidden states. */
  private holdsResidual(forecast: boolean): boolean {
    return !forecast || this.context.config.taylorseerCacheType === 'residual';
  }

  private encoderForecast(): boolean {
    const c = this.context.config;
    return c.enableTaylorseer && c.enableEncoderTaylorseer;
  }

  /** Releases the Fn outputs the middle stage replaced. */
  private releaseReplaced(first: Streams<T>, middle: Streams<T>, callerArgs: readonly unknown[]): void {
    this.releaseIfOwned(first.h, middle.h, callerArgs);
    if (first.e !== middle.e) this.releaseIfOwned(first.e, middle.e, callerArgs);
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
    const computedBlocks = cached ? fn + bn : n;
    const counter = this.flops;
    if (!counter) {
      this.context.countWork(computedBlocks);
      return;
    }
    const chain = this.context.layout.name;
    let computed = 0;
    let skipped = 0;
    for (let i = 0; i < n; i++) {
      const f = counter.block(chain, i, args);
      if (cached && i >= fn && i < n - bn) skipped += f;
      else computed += f;
    }
    this.context.countWork(computedBlocks, { computed, skipped, outside: counter.outsideBlocks?.(chain, args) ?? 0 });
  }

  private outputError(index: number, out: unknown): TypeError {
    const expected = this.shape.returnsEncoder
      ? `${this.shape.hiddenFirst ? '[h, e]' : '[e, h]'} (e may be null where the block ends the encoder stream, h may not)`
      : 'a single tensor';
    const got = !Array.isArray(out) ? 'a single value' : this.shape.returnsEncoder && out.length === 2 ? 'a pair without h' : `an array of ${out.length}`;
    return new TypeError(`${this.context.layout.name}: block ${index} returned ${got}, but ${patternName(this.pattern)} blocks return ${expected}`);
  }
}
