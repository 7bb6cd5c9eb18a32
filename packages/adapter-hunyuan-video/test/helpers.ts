// Where the tests find this package's reference data (tools/make_references.py wrote it;
// goldens/README.md describes every file), and the error measure they use.
import { loadSafetensors, type Tensor } from '@ditcache/cuda-runtime';

export { relativeL2 } from '@ditcache/cuda-runtime';

export const goldens = new URL('./goldens/', import.meta.url).pathname;

/** The tensors of references.safetensors whose names start with `prefix.`, by the rest of their names. */
export function references(prefix: string): Record<string, Tensor> {
  const all = loadSafetensors(`${goldens}/references.safetensors`);
  const out: Record<string, Tensor> = {};
  for (const [name, t] of Object.entries(all)) {
    if (name.startsWith(`${prefix}.`)) out[name.slice(prefix.length + 1)] = t;
    else t.dispose();
  }
  return out;
}
