// A Redis connection speaking RESP2 over node:net, in the shape of Bun's RedisClient (send,
// connected, onconnect / onclose, duplicate), which BullMQ adapts to its own client interface
// (createBunRedisClient): BullMQ 6 leaves its Redis driver optional, and this keeps the server
// from needing one. BullMQ's adapter does the commands, scripts, transactions and reconnects;
// this does the wire: one socket, replies matched to requests in order.
import { Socket, connect } from 'node:net';
import { connect as connectTls } from 'node:tls';

type Reply = string | number | null | Error | Reply[];

/** Where a redis[s]:// URL points, and the AUTH and SELECT it asks for. */
interface Target {
  host: string;
  port: number;
  tls: boolean;
  username?: string;
  password?: string;
  db?: number;
}

function targetOf(url: string): Target {
  const u = new URL(url);
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') throw new Error(`${url}: expected redis://[user:password@]host:port[/db]`);
  const db = u.pathname.replace(/^\//, '');
  return {
    host: u.hostname.replace(/^\[|\]$/g, '') || '127.0.0.1',
    port: Number(u.port || 6379),
    tls: u.protocol === 'rediss:',
    username: u.username ? decodeURIComponent(u.username) : undefined,
    password: u.password ? decodeURIComponent(u.password) : undefined,
    db: db ? Number(db) : undefined,
  };
}

/** One complete reply at `at`, or undefined when the buffer ends first. */
function parseReply(buf: Buffer, at: number): { value: Reply; next: number } | undefined {
  const eol = buf.indexOf('\r\n', at);
  if (eol < 0) return undefined;
  const type = String.fromCharCode(buf[at]);
  const line = buf.toString('utf-8', at + 1, eol);
  const next = eol + 2;
  switch (type) {
    case '+':
      return { value: line, next };
    case '-':
      return { value: new Error(line), next };
    case ':':
      return { value: Number(line), next };
    case '$': {
      const length = Number(line);
      if (length < 0) return { value: null, next };
      if (buf.length < next + length + 2) return undefined;
      return { value: buf.toString('utf-8', next, next + length), next: next + length + 2 };
    }
    case '*': {
      const count = Number(line);
      if (count < 0) return { value: null, next };
      const items: Reply[] = [];
      let cursor = next;
      for (let i = 0; i < count; ++i) {
        const item = parseReply(buf, cursor);
        if (!item) return undefined;
        items.push(item.value);
        cursor = item.next;
      }
      return { value: items, next: cursor };
    }
    default:
      throw new Error(`Redis protocol error: unexpected reply type ${JSON.stringify(type)}`);
  }
}

function encodeCommand(command: string, args: readonly unknown[]): Buffer {
  const parts = [command, ...args].map((a) => (Buffer.isBuffer(a) ? a : Buffer.from(String(a), 'utf-8')));
  const chunks: Buffer[] = [Buffer.from(`*${parts.length}\r\n`)];
  for (const p of parts) chunks.push(Buffer.from(`$${p.length}\r\n`), p, Buffer.from('\r\n'));
  return Buffer.concat(chunks);
}

/** A reply's error as a rejection, with nested errors (EXEC's) left in place. */
const settle = (reply: Reply, resolve: (v: unknown) => void, reject: (e: Error) => void): void => (reply instanceof Error ? reject(reply) : resolve(reply));

export class RespConnection {
  connected = false;
  onconnect: () => void = () => {};
  onclose: (error?: Error) => void = () => {};
  onerror: (error: Error) => void = () => {};
  private socket: Socket | undefined;
  private buffer: Buffer = Buffer.alloc(0);
  private readonly pending: { resolve: (v: unknown) => void; reject: (e: Error) => void }[] = [];

  constructor(readonly url: string) {
    targetOf(url);
  }

  /** Connects, authenticates and selects the database; resolves when commands may be sent. */
  connect(): Promise<void> {
    const target = targetOf(this.url);
    return new Promise((resolve, reject) => {
      const socket = target.tls
        ? connectTls({ host: target.host, port: target.port, servername: target.host })
        : connect({ host: target.host, port: target.port });
      this.socket = socket;
      socket.setNoDelay(true);
      let opened = false;
      socket.once(target.tls ? 'secureConnect' : 'connect', async () => {
        opened = true;
        this.connected = true;
        try {
          if (target.password !== undefined) await this.send('AUTH', target.username ? [target.username, target.password] : [target.password]);
          if (target.db !== undefined) await this.send('SELECT', [target.db]);
        } catch (e) {
          socket.destroy();
          return reject(e);
        }
        this.onconnect();
        resolve();
      });
      socket.on('data', (chunk: Buffer) => this.receive(chunk));
      socket.on('error', (e) => {
        if (!opened) reject(e);
        else this.onerror(e);
      });
      socket.on('close', () => {
        const wasConnected = this.connected;
        this.connected = false;
        const closed = new Error('Connection closed');
        for (const p of this.pending.splice(0)) p.reject(closed);
        if (wasConnected) this.onclose(closed);
      });
    });
  }

  private receive(chunk: Buffer): void {
    this.buffer = this.buffer.length ? Buffer.concat([this.buffer, chunk]) : chunk;
    let at = 0;
    for (;;) {
      const reply = parseReply(this.buffer, at);
      if (!reply) break;
      at = reply.next;
      const p = this.pending.shift();
      if (p) settle(reply.value, p.resolve, p.reject);
    }
    this.buffer = this.buffer.subarray(at);
  }

  /** One command; replies come back in the order commands were sent. */
  send(command: string, args: readonly unknown[]): Promise<unknown> {
    if (!this.connected || !this.socket) return Promise.reject(new Error('Connection closed'));
    return new Promise((resolve, reject) => {
      this.pending.push({ resolve, reject });
      this.socket!.write(encodeCommand(command, args));
    });
  }

  /** A new, unconnected connection to the same server. */
  async duplicate(): Promise<RespConnection> {
    return new RespConnection(this.url);
  }

  close(): void {
    this.socket?.end();
    this.socket?.destroy();
  }

  disconnect(): void {
    this.close();
  }
}
