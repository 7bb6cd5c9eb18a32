// Text-encoder weights stay in the dtype they are stored in unless asked otherwise (FLUX.1's
// T5-XXL: bfloat16, 9.5 GB): on the CPU each is a read-only view of the memory-mapped file, so
// loading copies nothing and the process never holds the model twice; on a GPU each is copied
// over once, still 16-bit. In float32 (the default) the runtime's ops read 16-bit weights and
// compute in float32, widening one weight at a time; with `dtype` bfloat16 / float16 (diffusers'
// torch_dtype, which its pipelines pass on to their text encoders) weights are held in that dtype
// and the encoders compute in it, as transformers does.
import { WeightFolder } from '@ditcache/cuda-runtime';
import { ParameterStore, WeightReader, type LoadOptions } from '@ditcache/diffusion';

/**
 * Opens a transformers model folder (config.json + model.safetensors, or shards and their
 * index), builds the model with `build` and closes the folder: the weights keep their mappings
 * alive. The store is freed if building fails.
 */
export function loadEncoderFolder<M>(dir: string, opts: LoadOptions, build: (folder: WeightFolder, weights: WeightReader, store: ParameterStore) => M): M {
  using folder = new WeightFolder(dir);
  const store = new ParameterStore();
  try {
    return build(folder, new WeightReader(folder, store, { device: opts.device, weightDtype: opts.weightDtype ?? 'stored', dtype: opts.dtype }), store);
  } catch (e) {
    store.dispose();
    throw e;
  }
}
