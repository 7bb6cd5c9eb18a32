// What the runtime runs on, and the few settings it has.
import { CPU_ISAS, native, nativeAddonLocation, type CpuIsa, type DeviceReport, type MemoryStats, type NativeAddonLocation } from './native.js';

export { CPU_ISAS };
export type { CpuIsa, CudaDeviceInfo, DeviceReport, MemoryStats, NativeAddonLocation } from './native.js';

/** The CPU (always) and the CUDA devices (when built with CUDA and a driver answers). */
export function devices(): DeviceReport {
  return native.devices();
}

/** Live tensor handles and the bytes they own, per kind of memory. */
export function memoryStats(): MemoryStats {
  return native.memoryStats();
}

/** The native addon in use: its file, and whether it is a local build or the prebuilt platform package. */
export function nativeAddon(): NativeAddonLocation {
  return nativeAddonLocation;
}

/** What this build of the addon was compiled with. */
export function buildInfo(): { blas: string; cuda: string; napiVersion: number } {
  return native.buildInfo();
}

/** Threads of the CPU kernels' pool; 0 restores the default (cores, or DITCACHE_NUM_THREADS). */
export function setNumThreads(n: number): number {
  return native.setNumThreads(n);
}
export function numThreads(): number {
  return native.numThreads();
}

/**
 * CPU matrix products through the BLAS found at build time (OpenBLAS) or the built-in blocked
 * kernel. The default is the BLAS when there is one; DITCACHE_GEMM=builtin changes it.
 */
export function setGemmBackend(backend: 'blas' | 'builtin'): void {
  native.setGemmBackend(backend);
}
export function gemmBackend(): 'blas' | 'builtin' {
  return native.gemmBackend();
}

/**
 * Bytes of freed host blocks (128 KiB and more) kept for reuse by the next tensors of their
 * size, at most DITCACHE_HOST_CACHE_MB (default 1024; 0 turns the cache off). They belong to no
 * tensor, so memoryStats() leaves them out.
 */
export function hostCachedBytes(): number {
  return native.hostCachedBytes();
}

/**
 * What runs 16-bit products on the CPU: 'builtin' (AVX512-BF16 dot products, or widening) or
 * 'onednn' (oneDNN 2.x loaded at run time, the default where it has AMX tiles; DITCACHE_GEMM16
 * sets the start value). Attention always uses the built-in kernels.
 */
export function setHalfGemmBackend(backend: 'builtin' | 'onednn'): void {
  native.setHalfGemmBackend(backend);
}
export function halfGemmBackend(): 'builtin' | 'onednn' {
  return native.halfGemmBackend();
}

/** Lowers the vector ISA of the CPU kernels (for testing every code path on one machine). */
export function setCpuIsa(isa: CpuIsa): void {
  native.setCpuIsa(isa);
}
export function cpuIsa(): CpuIsa {
  return native.cpuIsa();
}

/**
 * Lets float32 matrix products on CUDA run on TF32 tensor cores (inputs rounded to 10-bit
 * mantissas, float32 accumulation), like PyTorch's `torch.backends.cuda.matmul.allow_tf32`. Off by
 * default, so float32 results stay those of plain FP32; DITCACHE_CUDA_TF32=1 turns it on at start.
 * It applies to cuBLAS products (the built-in CUDA kernel stays FP32) and changes nothing on the CPU.
 */
export function setAllowTf32(on: boolean): void {
  native.setAllowTf32(on);
}
export function allowTf32(): boolean {
  return native.allowTf32();
}

/** True when tensors can be placed on 'cuda:0'. */
export function cudaAvailable(): boolean {
  return native.devices().cuda.available;
}
