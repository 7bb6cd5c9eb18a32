// What the server's tests share: the model and the CLI they run, child processes they start and
// always stop (ditcache serve / worker, redis-server), HTTP and server-sent-event clients.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createServer as createNetServer } from 'node:net';
import { fileURLToPath } from 'node:url';

import { afterAll } from 'vitest';

export const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
export const MODEL = `${ROOT}models/flux-shapes`;
export const CLI = `${ROOT}packages/cli/dist/cli.js`;

const children = new Set<ChildProcess>();
// Last started, first stopped: services go before the Redis they use, so that they can close cleanly.
afterAll(async () => {
  for (const child of [...children].reverse()) await stopChild(child);
}, 60_000);

export interface Child {
  process: ChildProcess;
  /** Everything written to stdout and stderr so far. */
  output(): string;
  /** Resolves with the first match of `pattern` in the output. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
}

/** Starts a process that the file's tests stop at the end, whatever happens. */
export function startChild(command: string, args: readonly string[], env: Record<string, string> = {}): Child {
  const child = spawn(command, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  children.add(child);
  child.once('exit', () => children.delete(child));
  let text = '';
  const waiters = new Set<() => void>();
  const take = (b: Buffer) => {
    text += b.toString();
    for (const w of waiters) w();
  };
  child.stdout?.on('data', take);
  child.stderr?.on('data', take);
  return {
    process: child,
    output: () => text,
    waitFor: (pattern, timeoutMs = 30_000) =>
      new Promise((resolve, reject) => {
        const check = () => {
          const m = pattern.exec(text);
          if (m) done(() => resolve(m));
          else if (child.exitCode !== null) done(() => reject(new Error(`exited (${child.exitCode}) before ${pattern}:\n${text}`)));
        };
        const timer = setTimeout(() => done(() => reject(new Error(`no ${pattern} in ${timeoutMs} ms:\n${text}`))), timeoutMs);
        const done = (f: () => void) => {
          clearTimeout(timer);
          waiters.delete(check);
          child.off('exit', check);
          f();
        };
        waiters.add(check);
        child.on('exit', check);
        check();
      }),
  };
}

/** Stops a child with `signal`, and with SIGKILL if it is still there after 10 s. */
export function stopChild(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const force = setTimeout(() => child.kill('SIGKILL'), 10_000);
    child.once('exit', () => {
      clearTimeout(force);
      resolve();
    });
    child.kill(signal);
  });
}

/** `ditcache ARGS` to the end; its status and output. */
export function runDitcache(args: readonly string[]): { status: number | null; output: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { cwd: ROOT, encoding: 'utf-8', timeout: 60_000 });
  return { status: r.status, output: `${r.stdout}${r.stderr}` };
}

/** `ditcache serve ARGS` on a free port; its base URL once it listens. */
export async function startServe(args: readonly string[], env: Record<string, string> = {}): Promise<{ child: Child; base: string }> {
  const child = startChild(process.execPath, [CLI, 'serve', '--port', '0', ...args], env);
  const [, base] = await child.waitFor(/listening on (http:\/\/\S+?)\/ /);
  return { child, base };
}

export async function freePort(): Promise<number> {
  const server = createNetServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** A redis-server of the test's own on a free loopback port, without persistence; stopped after the file's tests. */
export async function startRedis(): Promise<string> {
  if (spawnSync('redis-server', ['--version']).error) {
    throw new Error("redis-server is not installed: install Debian's redis-server package (apt-get install redis-server)");
  }
  const port = await freePort();
  const child = startChild('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no']);
  await child.waitFor(/Ready to accept connections/);
  return `redis://127.0.0.1:${port}`;
}

export async function postJson(base: string, path: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${base}${path}`, { method: 'POST', headers: { 'Content-Type': 'application/json', ...headers }, body: JSON.stringify(body) });
}

export interface SseEvent {
  event: string;
  // biome-ignore lint/suspicious/noExplicitAny: each event's payload has its own shape, which the tests assert field by field
  data: any;
}

/** The server-sent events of `url` until the server ends the stream. */
export async function readEvents(url: string, headers: Record<string, string> = {}): Promise<SseEvent[]> {
  const res = await fetch(url, { headers });
  if (res.status !== 200) throw new Error(`${url}: ${res.status} ${await res.text()}`);
  const text = await res.text();
  return text
    .split('\n\n')
    .filter((block) => block.trim())
    .map((block) => {
      const event = /^event: (.*)$/m.exec(block)?.[1] ?? 'message';
      const data = /^data: (.*)$/m.exec(block)?.[1] ?? '';
      return { event, data: JSON.parse(data) };
    });
}

/** A PNG without its text chunks (the CLI adds how it made the image; the server does not). */
export function pngWithoutText(png: Buffer): Buffer {
  const parts = [png.subarray(0, 8)];
  for (let at = 8; at < png.length; ) {
    const length = png.readUInt32BE(at);
    const type = png.toString('latin1', at + 4, at + 8);
    const end = at + 12 + length;
    if (!['tEXt', 'iTXt', 'zTXt'].includes(type)) parts.push(png.subarray(at, end));
    at = end;
  }
  return Buffer.concat(parts);
}
