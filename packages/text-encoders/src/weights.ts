// Text-encoder weights stay in the dtype they are stored in (FLUX.1's T5-XXL: bfloat16, 9.5 GB):
// on the CPU each is a read-only view of the memory-mapped file, so loading copies nothing and
// the process never holds the model twice; on a GPU each is copied over once, still 16-bit.
// The runtime's ops read 16-bit weights and compute in float32, widening one weight at a time.
import { WeightFolder, type Device, type Tensor } from '@ditcache/cuda-runtime';
import { ParameterStore, WeightMismatchError, WeightReader, type LoadOptions } from '@ditcache/diffusion';

/** A WeightReader that keeps every weight in its stored dtype instead of widening it to float32. */
export class StoredDtypeWeightReader extends WeightReader {
  constructor(folder: WeightFolder, store: ParameterStore, opts: { device?: Device; prefix?: string } = {}) {
    super(folder, store, opts);
  }

  override at(name: string | number): StoredDtypeWeightReader {
    return new StoredDtypeWeightReader(this.folder, this.store, { device: this.device, prefix: `${this.prefix}${name}.` });
  }

  override tensor(name: string, shape?: readonly number[]): Tensor {
    const full = this.prefix + name;
    const entry = this.folder.entry(full);
    if (!entry) throw new WeightMismatchError(`${this.folder.dir}: no weight named '${full}' (does config.json match these weights?)`);
    if (shape && (entry.shape.length !== shape.length || entry.shape.some((d, i) => d !== shape[i]))) {
      throw new WeightMismatchError(`${this.folder.dir}: weight '${full}' has shape (${entry.shape.join(', ')}) but config.json implies (${shape.join(', ')})`);
    }
    return this.store.adopt(this.folder.get(full, { device: this.device }));
  }

  /** The first of `names` the folder holds (checkpoints name tied embeddings either way). */
  firstOf(names: readonly string[], shape: readonly number[]): Tensor {
    const found = names.find((n) => this.folder.has(this.prefix + n));
    if (!found) throw new WeightMismatchError(`${this.folder.dir}: none of the weights ${names.map((n) => `'${this.prefix}${n}'`).join(', ')} is there`);
    return this.tensor(found, shape);
  }
}

/**
 * Opens a transformers model folder (config.json + model.safetensors, or shards and their
 * index), builds the model with `build` and closes the folder: the weights keep their mappings
 * alive. The store is freed if building fails.
 */
export function loadEncoderFolder<M>(dir: string, opts: LoadOptions, build: (folder: WeightFolder, weights: StoredDtypeWeightReader, store: ParameterStore) => M): M {
  using folder = new WeightFolder(dir);
  const store = new ParameterStore();
  try {
    return build(folder, new StoredDtypeWeightReader(folder, store, { device: opts.device }), store);
  } catch (e) {
    store.dispose();
    throw e;
  }
}
