// Async jobs on the in-process queue: progress events in step order, cancellation of running
// and queued jobs, results as GET /v1/jobs/:id shows them, and the metrics they leave.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { createServer, type DitcacheServer, type JobView } from '../src/index.js';
import { MODEL, postJson, readEvents } from './helpers.js';

let service: DitcacheServer;
let base: string;

beforeAll(async () => {
  service = await createServer({ model: MODEL, rateLimitPerMinute: 1000 });
  const { port } = await service.listen(0);
  base = `http://127.0.0.1:${port}`;
}, 60_000);
afterAll(() => service.close());

async function submit(body: Record<string, unknown>): Promise<JobView> {
  const res = await postJson(base, '/v1/jobs', body);
  expect(res.status).toBe(202);
  return (await res.json()) as JobView;
}

async function job(id: string): Promise<JobView> {
  return (await (await fetch(`${base}/v1/jobs/${id}`)).json()) as JobView;
}

describe('jobs', () => {
  it('streams one progress event per step, in order, then the final state; the result follows', async () => {
    // A job ahead of it keeps it queued, so its stream starts before its first step.
    const ahead = await submit({ prompt: 'a red circle', size: '32x32', steps: 8 });
    const watched = await submit({ prompt: 'a blue square', size: '16x16', steps: 10, n: 2, cache: 'balanced', seed: 5 });
    expect(watched.state).toBe('queued');
    const events = await readEvents(`${base}/v1/jobs/${watched.id}/events`);
    expect(events[0]).toEqual({ event: 'state', data: { id: watched.id, state: 'queued' } });
    const progress = events.filter((e) => e.event === 'progress').map((e) => e.data);
    expect(progress.map((p) => [p.image, p.step])).toEqual([0, 1].flatMap((image) => Array.from({ length: 10 }, (_, step) => [image, step])));
    // Cached steps only grow, and the residual diffs of the cached run come with the steps.
    const cached = progress.map((p) => p.cachedSteps);
    expect(cached).toEqual([...cached].sort((a, b) => a - b));
    expect(cached.at(-1)).toBeGreaterThan(0);
    expect(Object.keys(progress[9].residualDiffs).length).toBeGreaterThan(0);
    expect(progress[9].threshold).toBe(0.2);
    expect(events.at(-1)?.event).toBe('succeeded');
    expect(events.filter((e) => e.event !== 'progress')).toHaveLength(2);

    const done = await job(watched.id);
    expect(done.state).toBe('succeeded');
    expect(done.fraction).toBe(1);
    expect(done.result?.images.map((i) => i.seed)).toEqual([5, 6]);
    expect(done.result?.cachedSteps).toBe(cached.at(-1));
    expect((await job(ahead.id)).state).toBe('succeeded');
  });

  it('cancels a running job at its next step and a queued one at once', async () => {
    const running = await submit({ prompt: 'a red circle', size: '32x32', steps: 100 });
    const queued = await submit({ prompt: 'a red circle', size: '32x32', steps: 100 });
    // Wait for the first job's second step, then cancel both.
    for (let v = await job(running.id); (v.progress?.step ?? -1) < 1; v = await job(running.id)) await new Promise((r) => setTimeout(r, 20));
    const cancelledQueued = await fetch(`${base}/v1/jobs/${queued.id}`, { method: 'DELETE' });
    expect(cancelledQueued.status).toBe(202);
    expect(((await cancelledQueued.json()) as JobView).state).toBe('cancelled');
    expect((await fetch(`${base}/v1/jobs/${running.id}`, { method: 'DELETE' })).status).toBe(202);
    const events = await readEvents(`${base}/v1/jobs/${running.id}/events`);
    expect(events.at(-1)?.event).toBe('cancelled');
    const end = await job(running.id);
    expect(end.state).toBe('cancelled');
    expect(end.result).toBeUndefined();
    expect(end.progress!.step).toBeLessThan(99);
    // The pipeline is free again: the next job runs.
    const next = await postJson(base, '/v1/images/generations', { prompt: 'a red circle', size: '16x16', steps: 2 });
    expect(next.status).toBe(200);
    expect((await fetch(`${base}/v1/jobs/${running.id}`, { method: 'DELETE' })).status).toBe(202);
    expect((await fetch(`${base}/v1/jobs/no-such-job`)).status).toBe(404);
  });

  it('reports the queue and the finished jobs in Prometheus format', async () => {
    const text = await (await fetch(`${base}/metrics`)).text();
    expect(text).toMatch(/^ditcache_queue_depth 0$/m);
    expect(text).toMatch(/^ditcache_workers 1$/m);
    expect(text).toMatch(/^ditcache_jobs\{state="cancelled"\} 2$/m);
    expect(text).toMatch(/^ditcache_jobs_finished_total\{state="succeeded"\} 3$/m);
    const [, steps] = /^ditcache_step_seconds_count (\d+)$/m.exec(text)!;
    expect(Number(steps)).toBe(8 + 20 + 2);
    expect(Number(/^ditcache_cached_fraction (\S+)$/m.exec(text)![1])).toBeGreaterThan(0);
  });
});
