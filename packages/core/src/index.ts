// reflect-metadata must be loaded before any decorator runs (tsyringe reads constructor
// parameter types from it).
import 'reflect-metadata';

export { enableCache, disableCache, cacheHandleOf, refreshContext, runTransformerCall, summary, strify, type SummaryOptions } from './api.js';
export { CacheHandle } from './handle.js';
export { CACHE_PRESETS, cachePreset } from './presets.js';
export { CACHE_DELEGATE, type CacheDelegate, type CacheDelegating } from './delegate.js';
export { CacheManager } from './manager.js';
export { ForwardPattern, patternShape, patternName, type PatternShape } from './forward-pattern.js';
export {
  BlockAdapter,
  AUTO_BLOCK_LIST_NAMES,
  type BlockAdapterOptions,
  type BlockListRef,
  type TransformerBlocks,
} from './block-adapter.js';
export { ParamsModifier, type ParamsModifierLike } from './params-modifier.js';
export { patchProperty, wrapMethod, type PatchFunctor, type Undo } from './patch.js';
export {
  AdapterRegistry,
  registerAdapter,
  supportedPipelines,
  adapterRegistry,
  ditcacheContainer,
  TENSOR_OPS,
  type AdapterRegistration,
  type AdapterTarget,
  type BlockAdapterFactory,
} from './registry.js';
export {
  CacheConfigError,
  DEFAULT_CACHE_CONFIG,
  parseCacheConfig,
  readCacheConfig,
  resolveConfig,
  type CacheConfig,
  type CacheConfigInput,
  type CacheSettings,
  type ContinuousCounting,
  type DBCacheConfig,
  type ParsedCacheConfig,
  type PolicySelection,
  type StepsComputationPolicy,
  type TaylorSeerCacheType,
  type TaylorSeerConfig,
  type TaylorSeerExpansion,
  type CalibratorConfig,
  type CalibratorType,
  type DmdSvdPrecision,
} from './config.js';
export { CacheContext, type BranchRole, type StepRecord } from './context.js';
export { TransformerCallScope, type CfgBranch, type TransformerCallInfo } from './transformer-call.js';
export { BranchDecider, type Decision, type ComputeReason, type CacheReason, type PolicyReason, type MeasureDiff } from './decision.js';
export {
  PolicyRegistry,
  registerPolicy,
  policyRegistry,
  type CachePolicy,
  type CachePolicyFactory,
  type PolicyRegistration,
  type RegisteredPolicy,
  type RunInfo,
  type StepDecider,
  type Stream,
  type BlockPruningDecider,
  type TransformerCallHook,
  prunesBlocks,
} from './policy.js';
export {
  ATTENTION_KINDS,
  type AttentionHook,
  type AttentionKind,
  type AttentionOutput,
  type AttentionPolicy,
  type AttentionSite,
  type AttentionSiteCall,
  type AttentionSiteDeclaration,
  type AttentionSiteRecord,
} from './attention-sites.js';
export { DBCACHE_POLICY, DBCACHE_KEYS, DBCachePolicyFactory } from './dbcache-policy.js';
export { SCM_POLICY, SCM_KEYS, ScmPolicyFactory, scmMask } from './scm-policy.js';
export { SCM_MASKS, SCM_PRESETS, type ScmPreset } from './scm-masks.js';
export {
  MAGCACHE_POLICY,
  MAGCACHE_KEYS,
  MAGCACHE_DEFAULTS,
  MagCachePolicyFactory,
  MagCacheDecider,
  MagCacheCalibrationDecider,
  magCacheRetentionSteps,
  type MagCacheRule,
} from './magcache-policy.js';
export {
  FASTERCACHE_POLICY,
  FASTERCACHE_KEYS,
  FASTERCACHE_DEFAULTS,
  FasterCachePolicyFactory,
  FasterCacheCalls,
} from './fastercache-policy.js';
export { AttentionForecaster, type AttentionCall, type AttentionForecastRule } from './fastercache-attention.js';
export {
  attentionMayBeForecast,
  frequencyWeights,
  skipsUncond,
  withinRange,
  type FasterCacheOptions,
  type TimestepRange,
} from './fastercache-rules.js';
export { lowFrequencyRadius, lowPassPlanes } from './frequency-split.js';
export {
  PAB_POLICY,
  PAB_KEYS,
  PAB_DEFAULTS,
  PabPolicyFactory,
  PyramidAttentionBroadcast,
  pabReuses,
  pabRules,
  type PabOptions,
  type PabRule,
} from './pab-policy.js';
export { DBPRUNE_POLICY, DBPRUNE_KEYS, DBPRUNE_DEFAULTS, DBPrunePolicyFactory } from './dbprune-policy.js';
export { DBPruneDecider, nonPrunableBlocks, pruneThreshold, type DBPruneOptions, type DBPruneRuleConfig } from './dbprune-rule.js';
export { DBPRUNE_TUNING } from './dbprune-tuning.js';
export { FLUX_MAG_RATIOS, MAG_RATIOS_PRESETS, magRatiosForSteps } from './magcache-ratios.js';
export {
  magCacheCalibration,
  magCacheConfigFromCalibration,
  meanMagCacheCalibration,
  type MagCacheCalibratedBranch,
  type MagCacheCalibratedContext,
} from './magcache-calibration.js';
export { MAGCACHE_TUNING } from './magcache-tuning.js';
export { DBCACHE_TUNING } from './dbcache-tuning.js';
export { SCM_TUNING } from './scm-tuning.js';
export type { PolicyTuning, TuningKnob, TuningPreparation, TuningRange, TuningRun, TuningSteps, TuningVariant } from './tuning.js';
export { boolean, integer, mask, nonNegative, nullable, oneOf, type Check, type KeySpec } from './config-keys.js';
export { CacheDitTaylorSeer, NewtonTaylorSeer, LastResidualStore, type ResidualStore, type Forecast } from './residual-store.js';
export { FoCaCalibrator } from './foca-calibrator.js';
export { DmdCalibrator, type DmdOptions } from './dmd-calibrator.js';
export { fitDmd, type DmdFit } from './dmd-fit.js';
export { CachedBlockChain, type Block, type FlopsCounter } from './block-chain.js';
export { percentile, type AttentionStats, type CacheSummary, type ContextStats, type BranchStats, type DiffPercentiles } from './stats.js';
export type { TensorOps } from './tensor-ops.js';
