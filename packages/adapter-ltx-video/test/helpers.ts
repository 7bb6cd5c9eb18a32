// Where the tests find this package's reference data (tools/make_references.py wrote it; goldens/README.md describes it).
export const goldens = new URL('./goldens/', import.meta.url).pathname;

export { relativeL2, relativeL2Values } from '@ditcache/cuda-runtime';
