// The cache-config tuner: tune() for apps, its search and outputs for callers that bring their own evaluator.
export { registerTune } from './command.js';
export { benchEvaluator, benchPreparer, type BenchEvaluatorOptions } from './evaluator.js';
export { preparedSpaces, type Prepare } from './prepare.js';
export { bestYaml, cacheDitConfig, psnrText, tuneMarkdown, writeTuneOutputs, type TuneFiles, type TuneReport } from './outputs.js';
export {
  fastestMeetingTarget,
  roundKnobValue,
  searchConfigs,
  tuneSpaces,
  TargetNotMetError,
  type Evaluate,
  type Measurement,
  type SearchOptions,
  type Trial,
  type TunePoint,
  type TuneSpace,
} from './search.js';
export { tunablePolicies, tune, type HeldOutCheck, type TunedPoint, type TuneOptions, type TuneResult, type TuneSettings } from './tune.js';
