// A denoising progress bar on stderr (drawn only when stderr is a terminal, so logs and pipes
// stay clean).
import { SingleBar } from 'cli-progress';

export interface StepProgress {
  update(step: number, total: number): void;
  stop(): void;
}

export function stepProgress(label: string): StepProgress {
  if (!process.stderr.isTTY) return { update: () => undefined, stop: () => undefined };
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
