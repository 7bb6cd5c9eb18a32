// A FLUX.1 pipeline folder that has text encoders: the flux-tiny-guidance golden's transformer, VAE
// and scheduler beside the tiny CLIP and T5 of @ditcache/text-encoders' reference data, linked
// into a test's own folder. The prompt tests of the built bin (prompt.test.ts,
// encode-prompts.test.ts) run on it.
import { mkdirSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';

export const repositoryRoot = new URL('../../../', import.meta.url).pathname;
export const goldens = join(repositoryRoot, 'testdata/goldens');
export const textData = join(repositoryRoot, 'packages/text-encoders/test/data');

/** Makes the folder at `path` (which must not exist) and returns it. */
export function fluxTextFolder(path: string): string {
  mkdirSync(path);
  for (const entry of ['transformer', 'vae', 'scheduler']) symlinkSync(join(goldens, 'flux-tiny-guidance', entry), join(path, entry));
  const text = { tokenizer: 'clip-tokenizer', tokenizer_2: 't5-tokenizer', text_encoder: 'clip-text-model', text_encoder_2: 't5-encoder' };
  for (const [entry, source] of Object.entries(text)) symlinkSync(join(textData, source), join(path, entry));
  return path;
}
