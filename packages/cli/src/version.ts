// Why: --version and the images' Software text both name this package's version, read once from its package.json.
import { readFileSync } from 'node:fs';

let version: string | undefined;

/** This package's version, from its package.json (one level above src/ and dist/). */
export function cliVersion(): string {
  version ??= (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf-8')) as { version: string }).version;
  return version;
}
