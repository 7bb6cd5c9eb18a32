export const goldens = new URL('../../../testdata/goldens/', import.meta.url).pathname;

export { relativeL2, relativeL2Values } from '@ditcache/cuda-runtime';

/** This package's own reference data (tools/make_i2v_references.py wrote it; goldens/README.md describes it). */
export const localGoldens = new URL('./goldens/', import.meta.url).pathname;
