import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));

export const PACKAGE_DIR = join(here, '..', '..');
export const DATA_DIR = join(PACKAGE_DIR, 'test', 'data');
export const FIXTURES_DIR = join(DATA_DIR, 'fixtures');
/** The repository's copy of the goldens (testdata/goldens/README.md describes them). */
export const GOLDENS_DIR = join(PACKAGE_DIR, '..', '..', 'testdata', 'goldens', 'metrics');
export const CLI = join(PACKAGE_DIR, 'dist', 'cli.js');
