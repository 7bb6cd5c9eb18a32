import { parentPort } from 'node:worker_threads';
import { MetricsError } from './errors.js';
import { runPixelTask, type PixelTask } from './pixel-evaluation.js';

/**
 * Worker thread of the pixel-metric pool: decodes a pair and computes its metrics, so that
 * pairs run on every core (the SSIM loops are plain JavaScript and use one core each).
 */
export interface PixelWorkerRequest {
  id: number;
  task: PixelTask;
}

export type PixelWorkerReply = { id: number; values: Record<string, number> } | { id: number; error: string; metricsError: boolean };

const port = parentPort;
if (port) {
  port.on('message', (request: PixelWorkerRequest) => {
    runPixelTask(request.task).then(
      (values) => port.postMessage({ id: request.id, values } satisfies PixelWorkerReply),
      (error: unknown) =>
        port.postMessage({
          id: request.id,
          error: error instanceof Error ? error.message : String(error),
          metricsError: error instanceof MetricsError,
        } satisfies PixelWorkerReply),
    );
  });
}
