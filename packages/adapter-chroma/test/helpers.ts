// Shared by the tests: where this package's reference data lies (tools/make_references.py wrote
// it; goldens/README.md describes it) and the error measure they use.
export { relativeL2 } from '@ditcache/cuda-runtime';

export const goldens = new URL('./goldens/', import.meta.url).pathname;

/** The two reference folders: non-square (with the cache traces) and square. */
export const SETS = ['chroma-tiny', 'chroma-tiny-square'] as const;
