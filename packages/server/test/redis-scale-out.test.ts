// Scale-out over Redis as users run it: one `ditcache serve --redis` process without a model, two
// `ditcache worker` processes. Forty jobs submitted at once all complete, once each, with the
// images a single process makes, though one worker is killed in the middle of a job; progress
// events and cancellation cross the processes.
import { beforeAll, describe, expect, it } from 'vitest';

import { ModelRunner, type GenerationSpec, type JobView } from '../src/index.js';
import { CLI, MODEL, postJson, readEvents, startChild, startRedis, startServe, type Child } from './helpers.js';

let base: string;
let workers: Child[];

beforeAll(async () => {
  const redis = await startRedis();
  // A dead worker's job goes back to the queue once its 2 s lock lapses.
  workers = [0, 1].map(() => startChild(process.execPath, [CLI, 'worker', '--model', MODEL, '--redis', redis, '--lock-duration', '2000']));
  ({ base } = await startServe(['--redis', redis, '--rate-limit', '1000']));
  await Promise.all(workers.map((w) => w.waitFor(/taking jobs from/)));
}, 60_000);

const PROMPTS = ['a red circle', 'a blue square on a yellow background', 'a green triangle', 'two white circles'];
const specs: GenerationSpec[] = Array.from({ length: 40 }, (_, i) => ({
  prompt: PROMPTS[i % PROMPTS.length],
  seed: 1000 + i,
  n: 1,
  steps: 12,
  width: 16,
  height: 16,
  cache: i % 2 ? 'fast' : 'none',
}));
const body = (s: GenerationSpec) => ({ prompt: s.prompt, seed: s.seed, steps: s.steps, size: `${s.width}x${s.height}`, cache: s.cache });

async function view(id: string): Promise<JobView> {
  return (await (await fetch(`${base}/v1/jobs/${id}`)).json()) as JobView;
}

async function until(id: string, done: (v: JobView) => boolean, timeoutMs = 120_000): Promise<JobView> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await view(id);
    if (done(v) || Date.now() > end) return v;
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('ditcache serve --redis with two ditcache workers', () => {
  it('completes 40 concurrent jobs once each, with a worker killed mid-job, as one process would', { timeout: 180_000 }, async () => {
    const ids = await Promise.all(
      specs.map(async (s) => {
        const res = await postJson(base, '/v1/jobs', body(s));
        expect(res.status).toBe(202);
        return ((await res.json()) as JobView).id;
      }),
    );
    // Kill the first worker while it runs a job: after it starts one it has not finished. Under
    // load it may finish that job before the signal lands, so the job it died on is read from
    // its whole output once it is gone: the one it started and never said it finished (a worker
    // says so before BullMQ records the completion).
    const [victim, survivor] = workers;
    await victim.waitFor(/started (\S+)\n(?![\s\S]*finished)/);
    victim.process.kill('SIGKILL');
    await new Promise((r) => victim.process.once('close', r));
    const finished = new Set([...victim.output().matchAll(/finished (\S+)/g)].map((m) => m[1]));
    const killedJob = [...victim.output().matchAll(/started (\S+)/g)]
      .map((m) => m[1])
      .reverse()
      .find((id) => !finished.has(id));
    expect(killedJob, `a job the killed worker had started and not finished:\n${victim.output()}`).toBeDefined();
    expect(victim.output()).not.toContain(`completed ${killedJob}`);

    const views = await Promise.all(ids.map((id) => until(id, (v) => v.state === 'succeeded' || v.state === 'failed')));
    expect(views.map((v) => v.state)).toEqual(ids.map(() => 'succeeded'));
    // The killed worker's job ran again elsewhere.
    expect(views[ids.indexOf(killedJob as string)].attempts).toBeGreaterThanOrEqual(2);
    expect(survivor.output()).toContain(`completed ${killedJob}`);
    // Each job completed exactly once over both workers.
    const completions = [...victim.output().matchAll(/completed (\S+)/g), ...survivor.output().matchAll(/completed (\S+)/g)].map((m) => m[1]);
    expect(completions.sort()).toEqual([...ids].sort());

    // The images of one in-process pipeline running the same requests.
    const runner = await ModelRunner.open({ model: MODEL });
    try {
      for (const [i, s] of specs.entries()) {
        const alone = await runner.run(s);
        expect(views[i].result?.images[0].b64_json, `job ${i}`).toBe(alone.images[0].b64_json);
        expect(views[i].result?.cachedSteps, `job ${i}`).toBe(alone.cachedSteps);
      }
    } finally {
      await runner.close();
    }
  });

  it('streams the progress of a job a worker runs, in step order, then its end', async () => {
    const job = (await (await postJson(base, '/v1/jobs', { prompt: 'a red circle', size: '32x32', steps: 30, cache: 'balanced' })).json()) as JobView;
    const events = await readEvents(`${base}/v1/jobs/${job.id}/events`);
    const steps = events.filter((e) => e.event === 'progress').map((e) => e.data.step as number);
    expect(steps.length).toBeGreaterThan(0);
    expect(steps).toEqual([...new Set(steps)].sort((a, b) => a - b));
    expect(steps.at(-1)).toBe(29);
    expect(events.at(-1)?.event).toBe('succeeded');
    expect(events.at(-1)?.data.result.cachedSteps).toBeGreaterThan(0);
  });

  it('cancels a job running in a worker process at its next step, and a queued one at once', async () => {
    const submit = async () => ((await (await postJson(base, '/v1/jobs', { prompt: 'a red circle', size: '64x64', steps: 100 })).json()) as JobView).id;
    const running = await submit();
    const queued = await submit();
    await until(running, (v) => (v.progress?.step ?? -1) >= 1);
    const deleted = await fetch(`${base}/v1/jobs/${queued}`, { method: 'DELETE' });
    expect(((await deleted.json()) as JobView).state).toBe('cancelled');
    expect((await fetch(`${base}/v1/jobs/${running}`, { method: 'DELETE' })).status).toBe(202);
    const end = await until(running, (v) => v.state !== 'running');
    expect(end.state).toBe('cancelled');
    expect(end.progress!.step).toBeLessThan(99);
    expect((await view(queued)).state).toBe('cancelled');
    const metrics = await (await fetch(`${base}/metrics`)).text();
    expect(metrics).toMatch(/^ditcache_workers 1$/m);
    expect(metrics).toMatch(/^ditcache_queue_depth 0$/m);
  });
});
