// Where a model's parameters come from and who frees them: a WeightReader walks a diffusers
// component folder by name prefix and loads each weight once, on the model's device, into a
// ParameterStore that the model disposes as a whole.
import { WeightFolder, type Device, type Tensor } from '@ditcache/cuda-runtime';

/** Where a loaded model keeps its parameters. */
export interface LoadOptions {
  /** Device for the weights and every tensor the model creates (default 'cpu'). */
  device?: Device;
  /**
   * 'float32' (the default for diffusion models): bf16 / f16 weights are widened once at load.
   * 'stored': every weight keeps the dtype of the file, half the memory for a bf16 checkpoint
   * (on the CPU a read-only view of the mapped file, so loading copies nothing); the ops still
   * compute in float32, widening one weight at a time as they use it, so results are the same.
   */
  weightDtype?: 'float32' | 'stored';
  /**
   * The dtype the model computes in, as diffusers' `torch_dtype`: 'float32' (the default, where
   * `weightDtype` applies), 'bfloat16' or 'float16'. In 16-bit every weight is held in that dtype
   * (a checkpoint already stored in it stays a read-only view of the mapped file, with no widened
   * copy) except those the model keeps in float32 as diffusers does (`WeightReader.float32`).
   */
  dtype?: ComputeDtype;
}

/** The dtypes a model can compute in. */
export type ComputeDtype = 'float32' | 'bfloat16' | 'float16';
export const COMPUTE_DTYPES: readonly ComputeDtype[] = ['float32', 'bfloat16', 'float16'];

/** `dtype` checked: an unknown name is a TypeError that lists the valid ones. */
export function computeDtype(dtype: string | undefined, where = 'dtype'): ComputeDtype {
  if (dtype === undefined) return 'float32';
  if (!(COMPUTE_DTYPES as readonly string[]).includes(dtype)) {
    throw new TypeError(`${where}: unknown dtype '${dtype}' (valid: ${COMPUTE_DTYPES.join(', ')})`);
  }
  return dtype as ComputeDtype;
}

/** The tensors a model owns. They live outside every TensorScope until `dispose()`. */
export class ParameterStore implements Disposable {
  private readonly tensors: Tensor[] = [];

  /** Takes ownership of `t`, keeping it out of the open scopes. */
  adopt(t: Tensor): Tensor {
    this.tensors.push(t.keep());
    return t;
  }

  get count(): number {
    return this.tensors.length;
  }

  dispose(): void {
    for (const t of this.tensors) if (!t.disposed) t.dispose();
    this.tensors.length = 0;
  }
  [Symbol.dispose](): void {
    this.dispose();
  }
}

/** Weights that do not match the config: a missing weight or a wrong shape, named with its folder. */
export class WeightMismatchError extends TypeError {
  constructor(message: string) {
    super(message);
    this.name = 'WeightMismatchError';
  }
}

/**
 * Loads weights named `prefix + name` from an open WeightFolder into a ParameterStore, as float32
 * (bf16 / f16 weights widened once, here, rather than in every op) or in their stored dtype
 * (`weightDtype: 'stored'`). Weights already in the wanted dtype stay, on the CPU, read-only
 * views of the mapped file.
 */
export class WeightReader {
  readonly folder: WeightFolder;
  readonly store: ParameterStore;
  readonly device: Device;
  readonly weightDtype: 'float32' | 'stored';
  readonly dtype: ComputeDtype;
  readonly prefix: string;

  constructor(folder: WeightFolder, store: ParameterStore, opts: LoadOptions & { prefix?: string } = {}) {
    this.folder = folder;
    this.store = store;
    this.device = opts.device ?? 'cpu';
    this.weightDtype = opts.weightDtype ?? 'float32';
    this.dtype = computeDtype(opts.dtype);
    this.prefix = opts.prefix ?? '';
  }

  /** The reader for the sub-module `name` (diffusers' dotted module path). */
  at(name: string | number): WeightReader {
    return new WeightReader(this.folder, this.store, {
      device: this.device,
      weightDtype: this.weightDtype,
      dtype: this.dtype,
      prefix: `${this.prefix}${name}.`,
    });
  }

  /**
   * The same reader loading float32 weights whatever the compute dtype: for the parameters
   * diffusers keeps in float32 under a 16-bit `torch_dtype` (`_keep_in_fp32_modules`).
   */
  float32(): WeightReader {
    return new WeightReader(this.folder, this.store, { device: this.device, weightDtype: 'float32', prefix: this.prefix });
  }

  /** Loads `name`, checking its shape against `shape` (what the config implies) when given. */
  tensor(name: string, shape?: readonly number[]): Tensor {
    const full = this.prefix + name;
    const entry = this.folder.entry(full);
    if (!entry) {
      throw new WeightMismatchError(`${this.folder.dir}: no weight named '${full}' (does config.json match these weights?)`);
    }
    if (shape && (entry.shape.length !== shape.length || entry.shape.some((d, i) => d !== shape[i]))) {
      throw new WeightMismatchError(`${this.folder.dir}: weight '${full}' has shape (${entry.shape.join(', ')}) but config.json implies (${shape.join(', ')})`);
    }
    const dtype = this.dtype !== 'float32' ? this.dtype : this.weightDtype === 'stored' ? undefined : 'float32';
    return this.store.adopt(this.folder.get(full, { dtype, device: this.device }));
  }

  /** The first of `names` the folder holds (checkpoints name tied embeddings either way). */
  firstOf(names: readonly string[], shape: readonly number[]): Tensor {
    const found = names.find((n) => this.folder.has(this.prefix + n));
    if (!found) throw new WeightMismatchError(`${this.folder.dir}: none of the weights ${names.map((n) => `'${this.prefix}${n}'`).join(', ')} is there`);
    return this.tensor(found, shape);
  }
}

/**
 * Opens a component folder, builds a model from it with `build`, and closes the folder (the
 * loaded weights keep what they map alive). The store is freed if building fails.
 */
export function loadFromFolder<M>(dir: string, opts: LoadOptions, build: (folder: WeightFolder, weights: WeightReader, store: ParameterStore) => M): M {
  using folder = new WeightFolder(dir);
  const store = new ParameterStore();
  try {
    return build(folder, new WeightReader(folder, store, opts), store);
  } catch (e) {
    store.dispose();
    throw e;
  }
}
