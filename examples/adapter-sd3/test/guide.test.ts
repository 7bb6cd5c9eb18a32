// docs/writing-an-adapter.md against this package: every code block that names a file is an
// excerpt of that file, every other TypeScript block compiles against the real packages, every
// command refers to scripts, packages and files that exist, and every path it mentions exists.
// When the code moves on and the guide does not, this fails.
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';

import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const here = new URL('..', import.meta.url).pathname;
const repo = resolve(here, '../..');
const guidePath = join(repo, 'docs/writing-an-adapter.md');
const guide = readFileSync(guidePath, 'utf-8');
const pkg = JSON.parse(readFileSync(join(here, 'package.json'), 'utf-8')) as {
  scripts: Record<string, string>;
  peerDependencies: Record<string, string>;
  devDependencies: Record<string, string>;
};

interface CodeBlock {
  lang: string;
  info: string;
  body: string;
  line: number;
}

const blocks: CodeBlock[] = [...guide.matchAll(/^```(\w*)([^\n]*)\n([\s\S]*?)^```$/gm)].map((m) => ({
  lang: m[1],
  info: m[2].trim(),
  body: m[3],
  line: guide.slice(0, m.index).split('\n').length,
}));
const fileOf = (b: CodeBlock): string | undefined => /file=(\S+)/.exec(b.info)?.[1];
const label = (b: CodeBlock): string => `the ${b.lang} block at line ${b.line}`;

/** A value contains `part` when every key of `part` holds the same (recursively contained) value. */
function contains(value: unknown, part: unknown): boolean {
  if (part === null || typeof part !== 'object') return value === part;
  if (value === null || typeof value !== 'object') return false;
  return Object.entries(part).every(([k, v]) => contains((value as Record<string, unknown>)[k], v));
}

describe('docs/writing-an-adapter.md', () => {
  it('has only code blocks this test checks', () => {
    expect(blocks.length).toBeGreaterThan(10);
    for (const b of blocks) {
      const checked = (['ts', 'json'].includes(b.lang) && fileOf(b)) || (b.lang === 'ts' && b.info === 'compile') || b.lang === 'sh';
      expect(checked, `${label(b)} is neither an excerpt (file=...), a compiled block (compile) nor commands (sh)`).toBeTruthy();
    }
  });

  it('quotes the files it names: each excerpt appears in the file as it is', () => {
    const excerpts = blocks.filter(fileOf);
    expect(excerpts.length).toBeGreaterThan(8);
    for (const b of excerpts) {
      const path = join(repo, fileOf(b) as string);
      expect(existsSync(path), `${label(b)} names ${fileOf(b)}, which does not exist`).toBe(true);
      const text = readFileSync(path, 'utf-8');
      if (b.lang === 'json') {
        expect(contains(JSON.parse(text), JSON.parse(b.body)), `${label(b)} does not match ${fileOf(b)}`).toBe(true);
      } else {
        const lines = (s: string) => s.split('\n').map((l) => l.trimEnd());
        expect(lines(text).join('\n'), `${label(b)} is no longer in ${fileOf(b)}`).toContain(lines(b.body).join('\n').trimEnd());
      }
    }
  });

  it('has TypeScript examples that compile against the packages as published', () => {
    const snippets = blocks.filter((b) => b.info === 'compile');
    expect(snippets.length).toBeGreaterThanOrEqual(3);
    // Inside this package, so that imports resolve as they do for a user of the built packages.
    const dir = mkdtempSync(join(here, '.guide-snippets-'));
    try {
      const files = snippets.map((b) => {
        const file = join(dir, `line-${b.line}.ts`);
        writeFileSync(file, b.body);
        return file;
      });
      const base = JSON.parse(readFileSync(join(repo, 'tsconfig.base.json'), 'utf-8')) as { compilerOptions: object };
      const { options, errors } = ts.convertCompilerOptionsFromJson(base.compilerOptions, repo);
      expect(errors).toEqual([]);
      const program = ts.createProgram(files, { ...options, noEmit: true });
      const diagnostics = ts.getPreEmitDiagnostics(program).map((d) => {
        const where = d.file ? `${d.file.fileName.replace(dir, 'guide')}:${d.file.getLineAndCharacterOfPosition(d.start ?? 0).line + 1}` : '';
        return `${where} ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`;
      });
      expect(diagnostics).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('runs commands that exist: npm scripts, peer packages, test files and tools', () => {
    const commands = blocks.filter((b) => b.lang === 'sh').flatMap((b) => b.body.split('\n').filter((l) => l.trim() !== ''));
    expect(commands.length).toBeGreaterThan(5);
    const inPackage = (path: string) => existsSync(join(here, path));
    for (const command of commands) {
      const words = command.trim().split(/\s+/);
      const [program, verb] = [words[0], words[1]];
      if (program === 'mkdir' || (program === 'npm' && verb === 'init') || (program.endsWith('python3') && verb === '-m')) continue;
      if (program === 'npm' && verb === 'install') {
        const field = words.includes('--save-peer') ? 'peerDependencies' : words.includes('--save-dev') ? 'devDependencies' : undefined;
        if (field === undefined) throw new Error(`${command}: installs with neither --save-peer nor --save-dev`);
        for (const spec of words.slice(2).filter((w) => !w.startsWith('-'))) {
          const at = spec.lastIndexOf('@');
          const [name, version] = at > 0 ? [spec.slice(0, at), spec.slice(at + 1)] : [spec, undefined];
          expect(pkg[field][name], `${command}: ${name} is not in ${field}`).toBeDefined();
          if (version !== undefined) expect(pkg[field][name], `${command}: ${name}'s version`).toBe(version);
        }
      } else if (program === 'npm' && (verb === 'run' || verb === 'test')) {
        const script = verb === 'run' ? words[2] : 'test';
        expect(pkg.scripts[script], `${command}: no script ${script}`).toBeDefined();
      } else if (program === 'npx' && verb === 'vitest') {
        for (const file of words.slice(3)) expect(inPackage(file), `${command}: no ${file}`).toBe(true);
      } else if (program.endsWith('/bin/pip') && verb === 'install') {
        // The reference tools' Python packages: what tools/make_references.py imports.
        const script = readFileSync(join(here, 'tools/make_references.py'), 'utf-8');
        for (const name of words.slice(2))
          expect(script, `${command}: the tool does not use ${name}`).toMatch(new RegExp(`^(import|from) ${name.replace('-', '_')}\\b`, 'm'));
      } else if (program.endsWith('/bin/python')) {
        for (const path of words.slice(1)) expect(inPackage(path), `${command}: no ${path}`).toBe(true);
      } else {
        throw new Error(`the guide runs '${command}', which this test does not know how to check`);
      }
    }
  });

  it('mentions paths that exist', () => {
    const mentioned = [...guide.matchAll(/`((?:examples|packages|docs|testdata|src|test|tools)\/[\w./-]+)`/g)].map((m) => m[1]);
    const linked = [...guide.matchAll(/\]\((\.\.?\/[^)\s]+)\)/g)].map((m) => resolve(dirname(guidePath), m[1]));
    expect(mentioned.length).toBeGreaterThan(10);
    for (const path of mentioned) {
      const root = /^(src|test|tools)\//.test(path) ? here : repo;
      expect(existsSync(join(root, path)), `the guide mentions ${path}`).toBe(true);
    }
    for (const path of linked) expect(existsSync(path), `the guide links ${path}`).toBe(true);
  });
});
