// The prebuilt addons published beside @ditcache/cuda-runtime, one package per platform (as
// sharp, esbuild and swc ship theirs): npm installs the one whose `os` / `cpu` / `libc` fit, as
// an optional dependency. Shared by the loader and the install script.

/** Platform package names by `${process.platform}-${process.arch}`. */
export const PLATFORM_PACKAGES: Readonly<Record<string, string>> = {
  'linux-x64': '@ditcache/cuda-runtime-linux-x64',
};

/** How to build the addon where no prebuilt binary fits. */
export const BUILD_FROM_SOURCE =
  'build from source: install CMake >= 3.18 and a C++17 compiler (and nvcc for the CUDA kernels), add the build tools to your project with ' +
  '`npm install --save-dev cmake-js@8.0.0 node-addon-api@8.9.2`, then run `npm rebuild @ditcache/cuda-runtime`';
