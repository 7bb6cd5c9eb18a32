// Loads the compiled addon and describes its raw interface. Everything else in this package
// talks to the addon through `native` and the types declared here.
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { BUILD_FROM_SOURCE, PLATFORM_PACKAGES } from './platform-packages.js';

export type DType = 'float32' | 'float16' | 'bfloat16' | 'int32';
/** The CPU kernels' instruction-set levels, lowest first; each includes the ones before it. */
export const CPU_ISAS = ['scalar', 'avx2', 'avx512', 'avx512bf16'] as const;
export type CpuIsa = (typeof CPU_ISAS)[number];

export interface NativeTensor {
  readonly shape: number[];
  readonly strides: number[];
  readonly dtype: DType;
  readonly device: string;
  readonly byteOffset: number;
  readonly isContiguous: boolean;
  readonly disposed: boolean;
  readonly readOnly: boolean;
  dispose(): void;
  toFloat32Array(): Float32Array;
  toInt32Array(): Int32Array;
  toBytes(): Buffer;
}

export interface NativeMapping {
  readonly byteLength: number;
  read(offset: number, length: number): Buffer;
  close(): void;
}

export interface MemoryStats {
  /** Tensor handles created and not yet disposed (or collected). */
  liveTensors: number;
  /** Bytes of host memory owned by live tensors. */
  hostBytes: number;
  /** Bytes of CUDA memory owned by live tensors. */
  deviceBytes: number;
  /** Bytes of files mapped into memory (weights viewed in place). */
  mappedBytes: number;
  /** Live memory blocks of any kind. */
  storages: number;
}

export interface CudaDeviceInfo {
  device: string;
  name: string;
  totalMemory: number;
  computeCapability: string;
  multiprocessors: number;
}

export interface DeviceReport {
  cpu: {
    name: string;
    threads: number;
    isa: CpuIsa;
    detectedIsa: CpuIsa;
    gemm: 'blas' | 'builtin';
    /** Whether OpenBLAS was found and loaded at run time. */
    blasLoaded: boolean;
    /** What runs 16-bit products: the built-in kernels, or oneDNN (the default where it has AMX). */
    gemm16: 'builtin' | 'onednn';
    /** oneDNN's version, ISA and file, or "none: " and why it is not loaded. */
    onednn: string;
    onednnLoaded: boolean;
    /** OpenBLAS's build description and file, or 'none: ' and why. */
    blas: string;
  };
  cuda: {
    compiled: boolean;
    available: boolean;
    reason: string;
    driverVersion?: number;
    runtimeVersion?: number;
    gemm?: string;
    /** Whether float32 products may run on TF32 tensor cores (setAllowTf32, DITCACHE_CUDA_TF32=1). */
    tf32?: boolean;
    devices: CudaDeviceInfo[];
  };
}

type T = NativeTensor;
type OptT = NativeTensor | null;

export interface NativeBinding {
  fromArray(data: Float32Array | Float64Array | Int32Array | Uint16Array, shape: number[], dtype: DType, device: string): T;
  full(shape: number[], value: number, dtype: DType, device: string): T;
  arange(start: number, end: number, step: number, dtype: DType, device: string): T;
  to(t: T, device: string): T;
  cast(t: T, dtype: DType): T;
  contiguous(t: T): T;
  clone(t: T): T;
  reshape(t: T, shape: number[]): T;
  permute(t: T, dims: number[]): T;
  transpose(t: T, d0: number, d1: number): T;
  slice(t: T, dim: number, start: number, end: number, step: number): T;
  expand(t: T, shape: number[]): T;
  squeeze(t: T, dim: number): T;
  unsqueeze(t: T, dim: number): T;
  split(t: T, sizes: number[], dim: number): T[];
  concat(ts: T[], dim: number): T;
  binary(op: string, a: T, b: T | number, swap: boolean): T;
  unary(op: string, x: T, p0?: number, p1?: number): T;
  reduce(op: string, x: T, dims: number[] | null, keepdim: boolean): T;
  meanAbs(x: T): number;
  relL1(a: T, b: T): number;
  softmax(x: T, dim: number): T;
  layerNorm(x: T, w: OptT, b: OptT, eps: number): T;
  rmsNorm(x: T, w: OptT, eps: number): T;
  groupNorm(x: T, groups: number, w: OptT, b: OptT, eps: number): T;
  linear(x: T, w: T, b: OptT): T;
  matmul(a: T, b: T): T;
  attention(q: T, k: T, v: T, mask: OptT, scale: number | null, headsLast: boolean): T;
  rope(x: T, cos: T, sin: T, interleaved: boolean): T;
  embedding(w: T, idx: T): T;
  conv2d(x: T, w: T, b: OptT, stride: number[], padding: number[], dilation: number[], groups: number): T;
  conv3d(x: T, w: T, b: OptT, stride: number[], padding: number[], dilation: number[], groups: number): T;
  topk(x: T, k: number, dim: number, largest: boolean): [T, T];
  upsampleNearest2d(x: T, height: number, width: number): T;
  mapFile(path: string): NativeMapping;
  fromMapping(m: NativeMapping, byteOffset: number, dtype: DType, shape: number[]): T;
  memoryStats(): MemoryStats;
  devices(): DeviceReport;
  buildInfo(): { blas: string; cuda: string; onednn: string; napiVersion: number };
  setNumThreads(n: number): number;
  numThreads(): number;
  setGemmBackend(name: 'blas' | 'builtin'): void;
  gemmBackend(): 'blas' | 'builtin';
  hostCachedBytes(): number;
  setHalfGemmBackend(name: 'builtin' | 'onednn'): void;
  halfGemmBackend(): 'builtin' | 'onednn';
  setCpuIsa(name: CpuIsa): void;
  cpuIsa(): CpuIsa;
  setAllowTf32(on: boolean): void;
  allowTf32(): boolean;
}

/** Where the native addon was loaded from: this package's own build, or the prebuilt platform package. */
export interface NativeAddonLocation {
  readonly path: string;
  readonly source: 'local-build' | 'platform-package';
}

function locateAddon(): NativeAddonLocation {
  // src/ (tests) and dist/src/ (the package as installed) both resolve relative to the package root.
  const here = dirname(fileURLToPath(import.meta.url));
  const packageRoot = existsSync(join(here, '..', 'package.json')) ? join(here, '..') : join(here, '..', '..');
  const localBuild = join(packageRoot, 'build', 'Release', 'ditcache_native.node');
  if (existsSync(localBuild)) return { path: localBuild, source: 'local-build' };

  const platform = `${process.platform}-${process.arch}`;
  const platformPackage = PLATFORM_PACKAGES[platform];
  if (!platformPackage) {
    throw new Error(
      `@ditcache/cuda-runtime: no prebuilt native addon exists for ${platform} (only for ${Object.keys(PLATFORM_PACKAGES).join(', ')}), ` +
        `and there is no local build at ${localBuild}. To fix it, ${BUILD_FROM_SOURCE}.`,
    );
  }
  try {
    return { path: createRequire(import.meta.url).resolve(platformPackage), source: 'platform-package' };
  } catch {
    throw new Error(
      `@ditcache/cuda-runtime: the native addon is missing: no local build at ${localBuild}, and the prebuilt package ${platformPackage} ` +
        'is not installed (npm skips it with --omit=optional or --no-optional, or on a system that is not glibc-based). ' +
        `To fix it, reinstall with optional dependencies (\`npm install ${platformPackage}\` adds it explicitly), or ${BUILD_FROM_SOURCE}. ` +
        'In the ditcache repository: `npx turbo run build --filter=@ditcache/cuda-runtime`.',
    );
  }
}

/** What the prebuilt binary needs of the system, as its package.json states (its packing checks the binary against it). */
function prebuiltRequirements(binary: string): string {
  const { config } = JSON.parse(readFileSync(join(dirname(binary), 'package.json'), 'utf-8')) as { config: { glibc: string; glibcxx: string } };
  return `glibc >= ${config.glibc} and a libstdc++ with GLIBCXX_${config.glibcxx}`;
}

function load(): { binding: NativeBinding; location: NativeAddonLocation } {
  const location = locateAddon();
  try {
    return { binding: createRequire(import.meta.url)(location.path) as NativeBinding, location };
  } catch (e) {
    const needs =
      location.source === 'platform-package' ? ` The prebuilt binary needs ${prebuiltRequirements(location.path)}; elsewhere, ${BUILD_FROM_SOURCE}.` : '';
    throw new Error(`@ditcache/cuda-runtime: the native addon ${location.path} failed to load: ${(e as Error).message.trim()}.${needs}`, { cause: e });
  }
}

const loaded = load();

export const native: NativeBinding = loaded.binding;

/** The file the native addon was loaded from, and whether it is a local build or the prebuilt binary. */
export const nativeAddonLocation: NativeAddonLocation = loaded.location;
