// A denoising progress bar on stderr when it is a terminal; elsewhere (logs, pipes) a plain
// line once the first step is done and then at most every ten seconds, so a long run's log
// shows that it started and how far it got without a line per step.
import { SingleBar } from 'cli-progress';

export interface StepProgress {
  update(step: number, total: number): void;
  stop(): void;
}

/** Seconds between two progress lines when stderr is not a terminal. */
const LINE_INTERVAL_MS = 10_000;

export function stepProgress(label: string): StepProgress {
  if (!process.stderr.isTTY) return progressLines(label);
  const bar = new SingleBar({
    format: `${label} [{bar}] {value}/{total} steps | {duration_formatted} elapsed | eta {eta_formatted}`,
    stream: process.stderr,
    hideCursor: true,
    clearOnComplete: false,
  });
  let started = false;
  return {
    update(step, total) {
      if (!started) {
        bar.start(total, 0);
        started = true;
      }
      bar.update(step);
    },
    stop() {
      if (started) bar.stop();
    },
  };
}

/** `LABEL: step N/TOTAL` after the first step, then at most every LINE_INTERVAL_MS (never for the last step: the summary follows). */
function progressLines(label: string): StepProgress {
  let last: number | undefined;
  return {
    update(step, total) {
      const now = Date.now();
      if (step >= total || (last !== undefined && now - last < LINE_INTERVAL_MS)) return;
      last = now;
      process.stderr.write(`${label}: step ${step}/${total}\n`);
    },
    stop: () => undefined,
  };
}
