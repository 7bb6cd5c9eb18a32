// Residual stores: what a cached step adds to the Fn output in place of the Mn blocks, kept
// from the computed steps: the Mn residual of the last one (DBCache), or a TaylorSeer forecast
// from the last few.
import type { TaylorSeerExpansion } from './config.js';
import { sameShape, type TensorOps } from './tensor-ops.js';

export interface Forecast<T> {
  readonly value: T;
  /** The caller must release `value` (a new tensor) rather than leave it to the store. */
  readonly owned: boolean;
}

/**
 * Holds the Mn residuals of the computed steps (the tensors it is given become its own and are
 * released when replaced) and gives the residual to use at a cached step. With TaylorSeer in
 * 'hidden_states' mode it holds the Mn output instead, and gives the output to use.
 */
export interface ResidualStore<T> {
  readonly hasValue: boolean;
  /** Records the residual computed at `step`; the store takes ownership of it. */
  update(step: number, value: T): void;
  /** The residual to use at `step`. */
  predict(step: number): Forecast<T>;
  clear(): void;
}

/** Plain DBCache: reuse the residual of the last computed step as it is. */
export class LastResidualStore<T> implements ResidualStore<T> {
  private value: T | undefined;

  constructor(private readonly ops: TensorOps<T>) {}

  get hasValue(): boolean {
    return this.value !== undefined;
  }

  update(_step: number, value: T): void {
    this.clear();
    this.value = this.ops.retain(value);
  }

  predict(): Forecast<T> {
    if (this.value === undefined) throw new Error('LastResidualStore: nothing stored yet');
    return { value: this.value, owned: false };
  }

  clear(): void {
    if (this.value !== undefined) this.ops.release(this.value);
    this.value = undefined;
  }
}

/**
 * cache-dit's TaylorSeer: a ladder of backward differences divided by the step gap, summed as
 * a Taylor series in the steps elapsed since the last computed step. Exact for trajectories
 * linear in the step; for higher orders it is an approximation. As in a fresh cache-dit
 * context, differences are formed only from updates three or more steps after the first.
 */
export class CacheDitTaylorSeer<T> implements ResidualStore<T> {
  private ladder: T[] = [];
  private firstStep = 0;
  private lastStep = 0;

  constructor(
    private readonly ops: TensorOps<T>,
    private readonly order: number,
  ) {}

  get hasValue(): boolean {
    return this.ladder.length > 0;
  }

  update(step: number, value: T): void {
    if (this.ladder.length > 0 && !sameShape(this.ops.shape(this.ladder[0]), this.ops.shape(value))) this.clear();
    if (this.ladder.length === 0) this.firstStep = step;
    const next = [this.ops.retain(value)];
    if (step - this.firstStep >= 3) {
      const gap = step - this.lastStep;
      for (let i = 0; i < this.order && i < this.ladder.length; i++) {
        next.push(this.ops.retain(divide(this.ops, this.ops.sub(next[i], this.ladder[i]), gap)));
      }
    }
    this.clear();
    this.ladder = next;
    this.lastStep = step;
  }

  predict(step: number): Forecast<T> {
    const elapsed = step - this.lastStep;
    const coefficients = this.ladder.map((_, i) => elapsed ** i / factorial(i));
    return series(this.ops, this.ladder, coefficients);
  }

  clear(): void {
    for (const t of this.ladder) this.ops.release(t);
    this.ladder = [];
  }
}

/**
 * TaylorSeer by Newton's divided differences over the steps actually computed: exact for
 * trajectories that are polynomials of degree <= order in the step, whatever the gaps.
 */
export class NewtonTaylorSeer<T> implements ResidualStore<T> {
  /** f[x0], f[x0, x1], ... with x0 the latest computed step. */
  private differences: T[] = [];
  /** x0, x1, ...: the latest computed steps, newest first. */
  private nodes: number[] = [];

  constructor(
    private readonly ops: TensorOps<T>,
    private readonly order: number,
  ) {}

  get hasValue(): boolean {
    return this.differences.length > 0;
  }

  update(step: number, value: T): void {
    if (this.differences.length > 0 && !sameShape(this.ops.shape(this.differences[0]), this.ops.shape(value))) this.clear();
    const next = [this.ops.retain(value)];
    for (let j = 1; j <= this.order && j <= this.differences.length; j++) {
      const gap = step - this.nodes[j - 1];
      next.push(this.ops.retain(divide(this.ops, this.ops.sub(next[j - 1], this.differences[j - 1]), gap)));
    }
    const nodes = [step, ...this.nodes].slice(0, this.order);
    this.clear();
    this.differences = next;
    this.nodes = nodes;
  }

  predict(step: number): Forecast<T> {
    let product = 1;
    const coefficients = this.differences.map((_, j) => {
      if (j > 0) product *= step - this.nodes[j - 1];
      return product;
    });
    return series(this.ops, this.differences, coefficients);
  }

  clear(): void {
    for (const t of this.differences) this.ops.release(t);
    this.differences = [];
    this.nodes = [];
  }
}

export function taylorSeerResidualStore<T>(ops: TensorOps<T>, order: number, expansion: TaylorSeerExpansion): ResidualStore<T> {
  return expansion === 'newton' ? new NewtonTaylorSeer(ops, order) : new CacheDitTaylorSeer(ops, order);
}

/** terms[0] * c[0] + terms[1] * c[1] + ..., with c[0] = 1. */
function series<T>(ops: TensorOps<T>, terms: readonly T[], coefficients: readonly number[]): Forecast<T> {
  if (terms.length === 0) throw new Error('TaylorSeer: nothing stored yet');
  let value = terms[0];
  let owned = false;
  for (let i = 1; i < terms.length; i++) {
    const next = ops.addScaled(value, terms[i], coefficients[i]);
    if (owned) ops.release(value);
    value = next;
    owned = true;
  }
  return { value, owned };
}

/** `difference / gap`, consuming `difference`. */
function divide<T>(ops: TensorOps<T>, difference: T, gap: number): T {
  if (gap === 1) return difference;
  const out = ops.scale(difference, 1 / gap);
  ops.release(difference);
  return out;
}

function factorial(n: number): number {
  return n <= 1 ? 1 : n * factorial(n - 1);
}
