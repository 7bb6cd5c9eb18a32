export { HIDREAM_TRANSFORMER_DEFAULTS, loadHiDreamTransformerConfig, readHiDreamTransformerConfig, type HiDreamTransformerConfig } from './config.js';
export { hidreamRotaryEmbedding, type HiDreamRotary } from './rotary.js';
export { imageTokenCount, patchify, unpatchify, type PatchedLatents } from './latents.js';
export { JointAttention, SelfAttention, type Projection } from './attention.js';
export { MoEFeedForward, SwiGLUFeedForward, swigluHiddenDim, type HiDreamMlp } from './feed-forward.js';
export { torchTopkIndices } from './topk.js';
export {
  HiDreamDoubleStreamBlock,
  HiDreamSingleStreamBlock,
  type DoubleStreamBlock,
  type HiDreamBlockContext,
  type SingleStreamBlock,
} from './blocks.js';
export {
  HiDreamOutputLayer,
  HiDreamTransformer,
  TimestepEmbedder,
  initialEncoderStates,
  singleStreamContext,
  type HiDreamCallShape,
  type HiDreamEmbedded,
  type HiDreamFlops,
  type HiDreamTransformerInputs,
} from './transformer.js';
export { InitialTextDoubleStreamBlock, JointTokensSingleStreamBlock, patchHiDreamForCaching } from './caching-patch.js';
export {
  HiDreamPipeline,
  type HiDreamGenerateOptions,
  type HiDreamGenerateResult,
  type HiDreamLoadOptions,
  type StepEnd,
  type TransformerCall,
} from './pipeline.js';
export {
  HiDreamPromptEncoder,
  MAX_SEQUENCE_LENGTH,
  TEXT_COMPONENTS,
  missingTextComponents,
  type HiDreamEncodePromptOptions,
  type HiDreamPromptEmbeddings,
} from './prompt-encoder.js';
export { HiDreamCacheAdapterFactory, HiDreamPatchFunctor, hidreamBlockAdapter } from './cache.js';
