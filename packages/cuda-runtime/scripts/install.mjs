// The `install` hook of @ditcache/cuda-runtime. Users get the compiled addon from the prebuilt
// platform package (an optional dependency), so installing needs no CMake, compiler or nvcc; only
// where none fits (another platform, musl, optional dependencies left out) is the addon built
// from the sources this package ships, and what that build needs is checked first, so that a
// failure names what is missing instead of ending deep inside CMake.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { dirname, join, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const packageRoot = join(dirname(fileURLToPath(import.meta.url)), '..');

// In a checkout of the ditcache repository (`npm ci` links the workspace here instead of
// unpacking it into node_modules) the build compiles the addon (`npm run build`, which turbo
// runs before the tests); compiling it at install time too would double the time `npm ci` takes.
if (!packageRoot.split(sep).includes('node_modules')) process.exit(0);

if (existsSync(join(packageRoot, 'build', 'Release', 'ditcache_native.node'))) process.exit(0);

const { BUILD_FROM_SOURCE, PLATFORM_PACKAGES } = await import('../dist/src/platform-packages.js');
const require = createRequire(join(packageRoot, 'package.json'));
const resolves = (request) => {
  try {
    return require.resolve(request);
  } catch {
    return undefined;
  }
};
const platform = `${process.platform}-${process.arch}`;
const prebuilt = PLATFORM_PACKAGES[platform];
if (prebuilt && resolves(prebuilt)) process.exit(0);

const runs = (command) => !spawnSync(command, ['--version'], { stdio: 'ignore' }).error;
const cmakeJsManifest = resolves('cmake-js/package.json');
const missing = [];
if (!cmakeJsManifest) missing.push('the cmake-js package');
if (!resolves('node-addon-api')) missing.push('the node-addon-api package');
if (!runs('cmake')) missing.push('CMake >= 3.18 (no `cmake` on the PATH)');
const compilers = process.env.CXX ? [process.env.CXX] : ['c++', 'g++', 'clang++'];
if (!compilers.some(runs)) missing.push(`a C++17 compiler (none of ${compilers.join(', ')} on the PATH)`);

const why = prebuilt
  ? `the prebuilt addon ${prebuilt} is not installed (it needs glibc; npm leaves it out with --omit=optional)`
  : `no prebuilt addon exists for ${platform}`;
if (missing.length) {
  console.error(`@ditcache/cuda-runtime: ${why}, and building it from source needs ${missing.join(', ')}. To fix it, ${BUILD_FROM_SOURCE}.`);
  process.exit(1);
}

console.error(`@ditcache/cuda-runtime: ${why}; building the native addon from source (a few minutes)`);
const cmakeJs = join(dirname(cmakeJsManifest), require(cmakeJsManifest).bin['cmake-js']);
const build = spawnSync(process.execPath, [cmakeJs, 'compile', '--log-level', 'warn', '--parallel', String(availableParallelism())], {
  cwd: packageRoot,
  stdio: 'inherit',
});
if (build.status !== 0) {
  console.error(`@ditcache/cuda-runtime: the source build failed (its output is above); fix what it reports, then run \`npm rebuild @ditcache/cuda-runtime\`.`);
  process.exit(build.status ?? 1);
}
