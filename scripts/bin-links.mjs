// Why: `npx ditcache` in a checkout failed, as tsc writes bins without the run bit and npm links no bin missing at install.
// Run after tsc in a package's build: makes its bin files executable (a turbo cache restore also brings back the mode of the
// build that filled the cache), and links each into the workspace's node_modules/.bin where npm skipped that because the
// file did not exist yet at install, so that `npx NAME` works in a checkout.
import { chmodSync, existsSync, lstatSync, mkdirSync, readFileSync, realpathSync, symlinkSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

const pkgDir = process.cwd();
const pkg = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf-8'));
const bins = typeof pkg.bin === 'string' ? { [pkg.name.replace(/^@[^/]+\//, '')]: pkg.bin } : (pkg.bin ?? {});

/** The node_modules folder above the package through which Node.js resolves it (npm's workspace link), or null. */
function linkingNodeModules() {
  for (let d = dirname(pkgDir); ; d = dirname(d)) {
    const link = join(d, 'node_modules', pkg.name);
    if (existsSync(link) && realpathSync(link) === realpathSync(pkgDir)) return join(d, 'node_modules');
    if (dirname(d) === d) return null;
  }
}

const nodeModules = linkingNodeModules();
for (const [name, file] of Object.entries(bins)) {
  const target = resolve(pkgDir, file);
  if (!existsSync(target)) throw new Error(`${pkg.name}: bin ${name} names ${file}, which the build did not write`);
  chmodSync(target, 0o755);
  // npm links bins only on POSIX systems as symlinks (Windows gets cmd shims at install, which need no run bit).
  if (!nodeModules || process.platform === 'win32') continue;
  const link = join(nodeModules, '.bin', name);
  let present = false;
  try {
    lstatSync(link);
    present = true;
  } catch {
    // missing: link it below
  }
  if (present) continue;
  mkdirSync(dirname(link), { recursive: true });
  symlinkSync(relative(dirname(link), join(nodeModules, pkg.name, file)), link);
}
