// The progress bar of a benchmark (and the demo): every denoising step of every cell, on stderr,
// drawn only when stderr is a terminal. Generation runs on the main thread, so the bar redraws
// synchronously from the step callback.
import { SingleBar } from 'cli-progress';

import type { BenchProgress } from './runner.js';

export interface BenchProgressBar {
  update(p: BenchProgress): void;
  stop(): void;
}

export function benchProgress(label = 'bench'): BenchProgressBar {
  if (!process.stderr.isTTY) return { update: () => undefined, stop: () => undefined };
  const bar = new SingleBar({
    format: `${label} [{bar}] {percentage}% | cell {cell}/{cells}: {config}, prompt {prompt} | {duration_formatted} elapsed, eta {eta_formatted}`,
    stream: process.stderr,
    hideCursor: true,
    etaBuffer: 200,
  });
  let started = false;
  return {
    update(p) {
      // Measured in steps, so the bar and its ETA move within a cell.
      const total = p.cells * p.steps;
      const value = Math.min(total, p.done * p.steps + p.step);
      const payload = { cell: Math.min(p.done + 1, p.cells), cells: p.cells, config: p.config || '-', prompt: p.prompt, step: p.step, steps: p.steps };
      if (!started) {
        bar.start(total, value, payload);
        started = true;
      } else {
        bar.update(value, payload);
      }
    },
    stop() {
      if (started) bar.stop();
    },
  };
}
