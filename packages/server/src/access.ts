// Who may call the service and how often: API keys compared in constant time (on their SHA-256
// digests, so neither the content nor the length of a key leaks through timing), and a token
// bucket per key (or per address when the service has no keys) on the routes that queue work.
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

import { HttpError } from './http-error.js';

const digest = (key: string): Buffer => createHash('sha256').update(key, 'utf-8').digest();

/** The key a request carries: `Authorization: Bearer KEY`, or Basic with the key as the password (browsers ask for it on the web page). */
function presentedKey(req: IncomingMessage): string | undefined {
  const header = req.headers.authorization ?? '';
  const bearer = /^Bearer\s+(.+)$/i.exec(header);
  if (bearer) return bearer[1].trim();
  const basic = /^Basic\s+([A-Za-z0-9+/=]+)$/i.exec(header);
  if (!basic) return undefined;
  const decoded = Buffer.from(basic[1], 'base64').toString('utf-8');
  return decoded.slice(decoded.indexOf(':') + 1);
}

export class ApiKeys {
  private readonly digests: Buffer[];

  constructor(keys: readonly string[]) {
    this.digests = keys.map(digest);
  }

  get required(): boolean {
    return this.digests.length > 0;
  }

  /**
   * The key a request authenticates with (its identity for the rate limit), or a 401. Every
   * stored key is compared, so the time taken says nothing about which one matched.
   */
  check(req: IncomingMessage): string | undefined {
    if (!this.required) return undefined;
    const key = presentedKey(req);
    const given = digest(key ?? '');
    let match = false;
    for (const d of this.digests) match = timingSafeEqual(d, given) || match;
    if (key === undefined || !match) {
      throw new HttpError(401, key === undefined ? 'an API key is required: Authorization: Bearer KEY' : 'the API key is not valid', undefined, {
        'WWW-Authenticate': 'Basic realm="ditcache", charset="UTF-8"',
      });
    }
    return key;
  }
}

/** A token bucket per client: `perMinute` requests a minute, up to `perMinute` at once after a quiet minute. */
export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  constructor(
    private readonly perMinute: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** Takes a token for `client`, or throws a 429 saying when to retry. */
  take(client: string): void {
    const t = this.now();
    const bucket = this.buckets.get(client) ?? { tokens: this.perMinute, at: t };
    bucket.tokens = Math.min(this.perMinute, bucket.tokens + ((t - bucket.at) / 60_000) * this.perMinute);
    bucket.at = t;
    this.buckets.set(client, bucket);
    if (bucket.tokens < 1) {
      const wait = Math.ceil(((1 - bucket.tokens) * 60) / this.perMinute);
      throw new HttpError(429, `rate limit: ${this.perMinute} jobs a minute; retry in ${wait} s`, undefined, { 'Retry-After': String(wait) });
    }
    bucket.tokens -= 1;
    // Full buckets carry no state: drop them so that the map does not grow with every client ever seen.
    for (const [c, b] of this.buckets) if (c !== client && b.tokens + ((t - b.at) / 60_000) * this.perMinute >= this.perMinute) this.buckets.delete(c);
  }
}
