// The benchmark harness, also importable alone as '@ditcache/cli/bench'.
export { bench, registerBench, type BenchFlags, type BenchOutputs } from './command.js';
export {
  DEFAULT_GRID,
  DEFAULT_GRIDS,
  DEFAULT_SCM_GRID,
  UNCACHED,
  expandGrid,
  gridAxes,
  presetConfig,
  readBenchConfigs,
  type BenchConfig,
  type DBCacheGrid,
  type GridSpec,
  type GridValue,
} from './configs.js';
export { firstPrompts, promptInputs, readBenchPrompts, type BenchPrompts } from './prompts.js';
export { cellFrames, cellPaths, generateSettings, runBench, type BenchProgress, type BenchRun, type BenchSettings, type CellRecord } from './runner.js';
export { benchMarkdown, cellMetrics, describePolicy, evaluateBench, formatPsnr, paretoFlags, type ConfigResult } from './report.js';
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
