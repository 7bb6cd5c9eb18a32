// Changes to one object instance that can be undone exactly: the engine replaces block lists
// and wraps methods on the instance (never its class, never a global), and restores them.

/** Undoes one change. */
export type Undo = () => void;

/**
 * Rewrites a transformer instance whose forward does per-block work (e.g. feeds each block
 * its own extra inputs, or trims outputs between blocks) so that its block lists fit a
 * ForwardPattern: typically by wrapping each block so it does that work itself and replacing
 * the instance's forward with a plain loop over the lists. The patched instance must compute
 * exactly what the original does. Use `patchProperty` for every change so it can be undone.
 */
export interface PatchFunctor {
  apply(transformer: object): Undo;
}

/**
 * Sets `obj[key]` to `value` as an own property and returns how to put back exactly what was
 * there (the same own property descriptor, or no own property, so a prototype method shows
 * through again).
 */
export function patchProperty(obj: object, key: PropertyKey, value: unknown): Undo {
  const original = Object.getOwnPropertyDescriptor(obj, key);
  if (original && !original.configurable) {
    throw new TypeError(`cannot patch ${String(key)}: the property is not configurable`);
  }
  if (!Object.isExtensible(obj) && !original) throw new TypeError(`cannot patch ${String(key)}: the object is not extensible`);
  Object.defineProperty(obj, key, { value, writable: true, configurable: true, enumerable: original?.enumerable ?? true });
  return () => {
    if (original) Object.defineProperty(obj, key, original);
    else delete (obj as Record<PropertyKey, unknown>)[key];
  };
}

/** Replaces method `key` of `obj` by `wrap(original)`, bound to the instance. */
export function wrapMethod<F extends (...args: any[]) => any>(obj: object, key: string, wrap: (original: F) => F): Undo {
  const original = (obj as Record<string, unknown>)[key];
  if (typeof original !== 'function') throw new TypeError(`cannot wrap ${key}: it is not a method`);
  return patchProperty(obj, key, wrap((original as F).bind(obj) as F));
}

/** Runs undos in reverse order of the changes they undo. */
export class UndoStack {
  private readonly undos: Undo[] = [];

  push(undo: Undo): void {
    this.undos.push(undo);
  }

  undoAll(): void {
    while (this.undos.length > 0) (this.undos.pop() as Undo)();
  }
}
