// Deterministic release of native memory: every tensor created while a scope is open belongs
// to it and is disposed when the scope closes, unless it was returned from the scope or kept.

export interface Disposable_ {
  dispose(): void;
  readonly disposed: boolean;
}

const stack: Set<Disposable_>[] = [];

/** Registers a freshly created tensor with the innermost open scope, if any. */
export function track(t: Disposable_): void {
  stack[stack.length - 1]?.add(t);
}

/** Removes `t` from every open scope, so closing them leaves it alive. */
export function keep<T extends Disposable_>(t: T): T {
  for (const s of stack) s.delete(t);
  return t;
}

/**
 * A scope of tensors. Open it with `using scope = new TensorScope()` (or call `close()`):
 * tensors created while it is the innermost open scope are disposed when it closes.
 */
export class TensorScope implements Disposable {
  private readonly owned = new Set<Disposable_>();
  private closed = false;

  constructor() {
    stack.push(this.owned);
  }

  /** Moves `t` out of this scope into the enclosing one (or to nobody). */
  keep<T extends Disposable_>(t: T): T {
    if (this.owned.delete(t)) stack[stack.indexOf(this.owned) - 1]?.add(t);
    return t;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    const at = stack.lastIndexOf(this.owned);
    if (at !== stack.length - 1) {
      throw new Error('TensorScope: scopes must close in reverse order of opening');
    }
    stack.pop();
    for (const t of this.owned) if (!t.disposed) t.dispose();
    this.owned.clear();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

function collect(value: unknown, out: Set<Disposable_>, seen: Set<unknown>): void {
  if (value === null || typeof value !== 'object' || seen.has(value)) return;
  seen.add(value);
  if (isTracked(value)) {
    out.add(value);
    return;
  }
  if (Array.isArray(value)) for (const v of value) collect(v, out, seen);
  else if (value instanceof Map) for (const v of value.values()) collect(v, out, seen);
  else if (Object.getPrototypeOf(value) === Object.prototype) for (const v of Object.values(value)) collect(v, out, seen);
}

let isTracked: (v: object) => v is Disposable_ = (_v): _v is Disposable_ => false;
/** @internal Lets the Tensor module say which objects are tensors, without an import cycle. */
export function setTrackedPredicate(p: (v: object) => v is Disposable_): void {
  isTracked = p;
}

/**
 * Runs `fn` in a fresh scope and disposes every tensor it created except those in its result
 * (a tensor, or arrays, plain objects and Maps holding tensors), which pass to the caller's scope.
 * `fn` must be synchronous: a scope cannot follow an `await`.
 */
export function tidy<R>(fn: () => R): R {
  const scope = new TensorScope();
  let result: R;
  try {
    result = fn();
    if (result instanceof Promise) {
      throw new TypeError('tidy() takes a synchronous function; use TensorScope around awaited work');
    }
    const survivors = new Set<Disposable_>();
    collect(result, survivors, new Set());
    for (const t of survivors) scope.keep(t);
  } finally {
    scope.close();
  }
  return result;
}
