// Runs when this package is packed (`npm pack`, `npm publish`): copies the addon that
// @ditcache/cuda-runtime's build compiled into this folder, after checking that it is fit to ship
// to other machines. The binary is never committed; `postpack` removes the copy again.
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const packageDir = join(dirname(fileURLToPath(import.meta.url)), '..');
const built = join(packageDir, '..', 'cuda-runtime', 'build', 'Release', 'ditcache_native.node');
const { config } = JSON.parse(readFileSync(join(packageDir, 'package.json'), 'utf-8'));

function fail(message) {
  console.error(`@ditcache/cuda-runtime-linux-x64: cannot pack: ${message}`);
  process.exit(1);
}

function run(command, args) {
  try {
    return execFileSync(command, args, { encoding: 'utf-8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    if (e.code === 'ENOENT') fail(`no ${command} on the PATH (install binutils)`);
    fail(`${command} ${args[0]} ... failed:\n${(e.stderr || e.message).trim()}`);
  }
}

/** -1, 0 or 1 as dotted version a is below, equal to or above b. */
function compareVersions(a, b) {
  const x = a.split('.').map(Number),
    y = b.split('.').map(Number);
  for (let i = 0; i < Math.max(x.length, y.length); ++i) if ((x[i] ?? 0) !== (y[i] ?? 0)) return (x[i] ?? 0) < (y[i] ?? 0) ? -1 : 1;
  return 0;
}

if (process.platform !== 'linux' || process.arch !== 'x64') fail(`it holds a linux-x64 binary, and this is ${process.platform}-${process.arch}`);
if (!existsSync(built)) fail(`no build of the runtime at ${built}; run \`npx turbo run build --filter=@ditcache/cuda-runtime\` first`);

// Only libraries every glibc system has: OpenBLAS and cuBLAS are loaded at run time, cudart is linked in.
const SYSTEM_LIBRARY = /^(libc|libm|libdl|libpthread|librt|libgcc_s|libstdc\+\+)\.so\.\d+$|^ld-linux-x86-64\.so\.2$/;
const needed = [...run('readelf', ['-d', '--wide', built]).matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1]);
const foreign = needed.filter((lib) => !SYSTEM_LIBRARY.test(lib));
if (foreign.length) fail(`${built} links ${foreign.join(', ')}, which users' machines may not have (only libc, libstdc++ and their kind may be linked)`);

// The newest glibc and libstdc++ symbol versions it uses must not exceed what package.json promises.
const symbols = run('objdump', ['-T', built]);
for (const [tag, promised] of [
  ['GLIBC', config.glibc],
  ['GLIBCXX', config.glibcxx],
]) {
  const newest = [...symbols.matchAll(new RegExp(`\\b${tag}_([0-9.]+)\\b`, 'g'))]
    .map((m) => m[1])
    .sort(compareVersions)
    .at(-1);
  if (newest && compareVersions(newest, promised) > 0) {
    fail(
      `${built} needs ${tag}_${newest}, newer than the ${tag}_${promised} package.json promises: build on an older system, or raise config.${tag.toLowerCase()} (and the requirements in the READMEs)`,
    );
  }
}

// It must load in a plain Node.js process, and carry the CUDA kernels unless told otherwise.
const probe = `const a = require(${JSON.stringify(built)}); console.log(JSON.stringify({ cuda: a.buildInfo().cuda, reason: a.devices().cuda.reason }))`;
const { cuda } = JSON.parse(run(process.execPath, ['-e', probe]));
if (cuda === 'none' && process.env.DITCACHE_PACK_CPU_ONLY !== '1') {
  fail(
    `${built} was compiled without the CUDA kernels (no nvcc at build time); build where nvcc is, or set DITCACHE_PACK_CPU_ONLY=1 to pack a CPU-only binary on purpose`,
  );
}

copyFileSync(built, join(packageDir, 'ditcache_native.node'));
console.error(`@ditcache/cuda-runtime-linux-x64: packed ${built} (CUDA kernels: ${cuda === 'none' ? 'none' : cuda}; links ${needed.join(', ')})`);
