// GET /v1/jobs/:id/events: server-sent events, one `progress` event per step in order, then one
// event named after the final state carrying the job's view; the stream then ends.
import type { ServerResponse } from 'node:http';

import { isFinal, type JobEvent, type JobQueue, type JobView } from './job.js';

function send(res: ServerResponse, event: string, data: unknown): void {
  res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
}

/** A job's view without its images (the stream says that it ended; GET /v1/jobs/:id gives the result). */
function withoutImages(view: JobView): JobView {
  return view.result
    ? { ...view, result: { ...view.result, images: view.result.images.map(({ content_type, seed }) => ({ content_type, seed, b64_json: '' })) } }
    : view;
}

/**
 * Streams a job's events to `res` until it ends or the client goes. False, with nothing written,
 * when there is no such job. The watch starts before the job is read, so no event falls between.
 */
export async function streamJobEvents(queue: JobQueue, id: string, res: ServerResponse): Promise<boolean> {
  const early: JobEvent[] = [];
  let opened = false;
  let lastStep = -1;
  const stop = await queue.watch(id, (e) => (opened ? onEvent(e) : early.push(e)));
  const current = await queue.view(id);
  if (!current) {
    stop();
    return false;
  }
  res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-store', Connection: 'keep-alive', 'X-Accel-Buffering': 'no' });
  res.on('close', stop);
  const end = (view: JobView): void => {
    stop();
    send(res, view.state, withoutImages(view));
    res.end();
  };
  // Each step at most once and in order, though the snapshot and an early event may both carry it.
  const key = (p: { image: number; numSteps: number; step: number }): number => p.image * p.numSteps + p.step;
  function onEvent(e: JobEvent): void {
    if (res.writableEnded) return;
    if (e.type === 'end') end(e.view);
    else if (key(e.progress) > lastStep) {
      lastStep = key(e.progress);
      send(res, 'progress', e.progress);
    }
  }
  if (isFinal(current.state)) {
    end(current);
    return true;
  }
  send(res, 'state', { id: current.id, state: current.state });
  if (current.progress) onEvent({ type: 'progress', progress: current.progress });
  opened = true;
  for (const e of early) onEvent(e);
  return true;
}
