// Chroma on the ditcache runtime: its transformer, pipeline, prompt encoder and cache adapter.
export {
  CHROMA_TRANSFORMER_DEFAULTS,
  loadChromaTransformerConfig,
  modulationRows,
  readChromaTransformerConfig,
  type ChromaTransformerConfig,
} from './config.js';
export { DistilledGuidanceLayer, approximatorInput } from './modulation.js';
export {
  ChromaSingleTransformerBlock,
  ChromaTransformerBlock,
  type ChromaBlockContext,
  type ChromaDoubleBlock,
  type ChromaSingleBlock,
} from './blocks.js';
export {
  ChromaTransformer,
  doubleBlockRows,
  singleBlockRow,
  type ChromaCallShape,
  type ChromaEmbedded,
  type ChromaFlops,
  type ChromaTransformerInputs,
} from './transformer.js';
export { TableDoubleStreamBlock, TableSingleStreamBlock, patchChromaForCaching } from './caching-patch.js';
export { ChromaCacheAdapterFactory, ChromaPatchFunctor, chromaBlockAdapter } from './cache.js';
export {
  ChromaPipeline,
  type ChromaGenerateOptions,
  type ChromaGenerateResult,
  type ChromaLoadOptions,
  type StepEnd,
  type TransformerCall,
} from './pipeline.js';
export {
  ChromaPromptEncoder,
  MAX_SEQUENCE_LENGTH,
  TEXT_COMPONENTS,
  missingTextComponents,
  type ChromaPromptEmbeddings,
  type EncodePromptOptions,
} from './prompt-encoder.js';
