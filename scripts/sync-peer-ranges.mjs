// Run after `changeset version` (`npm run version-packages` runs both): raises the lower bound of
// every peer range on a package of this repository to that package's new version.
//
// Why: the public packages are released together (one fixed group in .changeset/config.json).
// Below 1.0 a caret peer range such as ^0.1.0 excludes the next minor, and changesets answers a
// peer dependency leaving its range by releasing the dependent as a new major, which for a 0.x
// package is 1.0.0 (changesets/changesets#1228). So the peer ranges are written `>=X <1.0.0`,
// which changesets leaves alone while in range (onlyUpdatePeerDependentsWhenOutOfRange), and this
// script moves X up to the released version, so that an adapter of 0.3.0 asks for a core of at
// least 0.3.0. From 1.0 on it writes caret ranges, which changesets then handles by itself.
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const rootManifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf-8'));

const manifests = rootManifest.workspaces.flatMap((pattern) => {
  if (!pattern.endsWith('/*')) throw new Error(`sync-peer-ranges: workspace pattern ${pattern} is not of the form dir/*`);
  const parent = join(root, pattern.slice(0, -2));
  return readdirSync(parent)
    .map((entry) => join(parent, entry, 'package.json'))
    .filter((path) => existsSync(path));
});
const packages = manifests.map((path) => ({ path, json: JSON.parse(readFileSync(path, 'utf-8')) }));
const versions = new Map(packages.map(({ json }) => [json.name, json.version]));

const BELOW_ONE = /^>=\d+\.\d+\.\d+ <1\.0\.0$/;
for (const { path, json } of packages) {
  let changed = false;
  for (const [name, range] of Object.entries(json.peerDependencies ?? {})) {
    const version = versions.get(name);
    if (version === undefined || !BELOW_ONE.test(range)) continue;
    const synced = version.startsWith('0.') ? `>=${version} <1.0.0` : `^${version}`;
    if (synced !== range) {
      json.peerDependencies[name] = synced;
      changed = true;
    }
  }
  if (changed) writeFileSync(path, `${JSON.stringify(json, null, 2)}\n`);
}
