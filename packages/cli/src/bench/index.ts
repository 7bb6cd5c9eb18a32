// The benchmark harness, also importable alone as '@ditcache/cli/bench'.
export { bench, registerBench, type BenchFlags, type BenchOutputs } from './command.js';
export { DEFAULT_GRID, UNCACHED, expandGrid, presetConfig, readBenchConfigs, type BenchConfig, type GridSpec } from './configs.js';
export { cellPaths, readBenchPrompts, runBench, type BenchProgress, type BenchPrompts, type BenchRun, type BenchSettings, type CellRecord } from './runner.js';
export { benchMarkdown, evaluateBench, formatPsnr, paretoFlags, type ConfigResult } from './report.js';
export {
  imageGridSvg,
  niceTicks,
  paretoChartSvg,
  renderSvgToPng,
  residualDiffChartSvg,
  seriesColour,
  type DiffPanel,
  type DiffSeries,
  type ScatterPoint,
} from './charts.js';
export { benchProgress, type BenchProgressBar } from './progress.js';
// BenchSettings.dtype, checked as the pipelines check it (for callers such as the demo that take it from a flag).
export { COMPUTE_DTYPES, computeDtype, type ComputeDtype } from '@ditcache/diffusion';
