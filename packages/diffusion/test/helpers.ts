export const goldens = new URL('../../../testdata/goldens/', import.meta.url).pathname;

export { relativeL2, relativeL2Values } from '@ditcache/cuda-runtime';
