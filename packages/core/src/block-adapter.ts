// Where the cached blocks of a model are and how they are called: which transformer(s), which
// block lists (each its own cache context, or several joined into one chain), their
// ForwardPatterns, per-context overrides, CFG layout and the tensor operations to use.
import type { AttentionSiteDeclaration } from './attention-sites.js';
import type { CacheSettings } from './config.js';
import { ForwardPattern, patternName, patternShape } from './forward-pattern.js';
import { modifierSettings, type ParamsModifierLike } from './params-modifier.js';
import type { PatchFunctor } from './patch.js';
import type { Block, FlopsCounter } from './block-chain.js';
import type { TensorOps } from './tensor-ops.js';

/**
 * A block list, by the name of the property that holds it on the transformer (a dotted path
 * reaches into sub-objects), or several lists joined into ONE chain with one cache context.
 */
export type BlockListRef = string | { readonly chain: readonly string[] };
/** The block lists of one transformer: one, or several each with its own cache context. */
export type TransformerBlocks = BlockListRef | readonly BlockListRef[];

export interface BlockAdapterOptions<T = unknown> {
  /** The pipeline, if the model is used through one: a new `pipeEntry` call starts fresh state. */
  pipe?: object;
  /** One transformer, or several (e.g. Wan 2.2's two experts). */
  transformer: object | readonly object[];
  /** With one transformer its block lists; with several, one entry per transformer. */
  blocks?: TransformerBlocks | readonly TransformerBlocks[];
  /** One pattern for every cache context, or one per context in order. */
  forwardPattern?: ForwardPattern | readonly ForwardPattern[];
  /** Per cache context overrides of the config, in context order (transformer by transformer). */
  paramsModifiers?: readonly ParamsModifierLike[];
  /** The pipeline makes separate cond and uncond calls (used when calls are not announced). */
  hasSeparateCfg?: boolean;
  /** Applied to each transformer before its lists are located (and undone by disableCache). */
  patchFunctor?: PatchFunctor;
  /**
   * Find the block list by convention instead of `blocks`: the longest of the conventionally
   * named lists of each transformer (AUTO_BLOCK_LIST_NAMES), as cache-dit's auto mode does.
   */
  auto?: boolean;
  /** The tensor operations for this model's tensors. */
  ops: TensorOps<T>;
  /**
   * Reads the timestep from a transformer forward call's arguments: lets transformer-only use
   * tell steps and runs apart (a rising timestep starts a new run).
   */
  timestepOf?: (forwardArgs: readonly unknown[]) => number | undefined;
  /** Lets `summary` report the fraction of transformer FLOPs that caching skipped. */
  flops?: FlopsCounter;
  /** The pipeline method whose every call starts a new run (default 'generate'). */
  pipeEntry?: string;
  /** Names of the transformers in stats (default: the pipeline property holding each). */
  transformerNames?: readonly string[];
  /**
   * The attention modules of each transformer, for policies that act on single attention calls
   * (PAB, FasterCache): called at enableCache with each transformer and its index (attention-sites.ts).
   */
  attentionSites?: AttentionSiteDeclaration;
}

/** Property names the auto mode looks for, camelCase and diffusers' snake_case. */
export const AUTO_BLOCK_LIST_NAMES: readonly string[] = [
  'transformerBlocks',
  'singleTransformerBlocks',
  'doubleStreamBlocks',
  'singleStreamBlocks',
  'blocks',
  'layers',
  'transformer_blocks',
  'single_transformer_blocks',
  'double_stream_blocks',
  'single_stream_blocks',
];

/** One block list located on an instance. */
export interface LocatedList {
  readonly owner: object;
  readonly key: string;
  readonly blocks: readonly Block[];
}

/** A chain ready to be cached: its lists, in order, as one sequence of blocks. */
export interface ResolvedChain {
  readonly name: string;
  readonly transformerIndex: number;
  readonly lists: readonly LocatedList[];
  readonly blocks: readonly Block[];
  readonly pattern: ForwardPattern;
  readonly modifier: Readonly<CacheSettings> | undefined;
}

export class BlockAdapter<T = unknown> {
  readonly pipe: object | undefined;
  readonly transformers: readonly object[];
  readonly hasSeparateCfg: boolean;
  readonly patchFunctor: PatchFunctor | undefined;
  readonly ops: TensorOps<T>;
  readonly timestepOf: ((forwardArgs: readonly unknown[]) => number | undefined) | undefined;
  readonly flops: FlopsCounter | undefined;
  readonly pipeEntry: string;
  readonly transformerNames: readonly string[];
  readonly attentionSites: AttentionSiteDeclaration | undefined;
  private readonly chainPaths: readonly (readonly string[])[][] | undefined;
  private readonly patterns: readonly ForwardPattern[] | undefined;
  private readonly modifiers: readonly Readonly<CacheSettings>[] | undefined;

  constructor(options: BlockAdapterOptions<T>) {
    const transformers = Array.isArray(options.transformer) ? [...(options.transformer as readonly object[])] : [options.transformer as object];
    if (transformers.length === 0 || transformers.some((t) => t === null || typeof t !== 'object')) {
      throw new TypeError('BlockAdapter: transformer must be an object or a non-empty list of objects');
    }
    if (!options.ops) throw new TypeError("BlockAdapter: ops (the TensorOps for the model's tensors) is required");
    this.pipe = options.pipe;
    this.transformers = transformers;
    this.hasSeparateCfg = options.hasSeparateCfg ?? false;
    this.patchFunctor = options.patchFunctor;
    this.ops = options.ops;
    this.timestepOf = options.timestepOf;
    this.flops = options.flops;
    this.pipeEntry = options.pipeEntry ?? 'generate';
    this.transformerNames = transformers.map((t, i) => options.transformerNames?.[i] ?? defaultName(options.pipe, t, i));
    this.attentionSites = options.attentionSites;

    if (options.auto) {
      if (options.blocks !== undefined) throw new TypeError('BlockAdapter: give either blocks or auto: true, not both');
      if (Array.isArray(options.forwardPattern)) throw new TypeError('BlockAdapter: auto mode takes one forwardPattern (or the blocks declare theirs)');
    } else {
      if (options.blocks === undefined) throw new TypeError('BlockAdapter: give blocks (the block-list property names) or auto: true');
      this.chainPaths = splitPerTransformer(options.blocks, transformers.length).map((entry, i) => chainsOf(entry, this.transformerNames[i]));
    }
    const chainCount = this.chainPaths ? this.chainPaths.reduce((n, t) => n + t.length, 0) : transformers.length;
    this.patterns = patternsFor(options.forwardPattern, chainCount, !!options.auto);
    if (options.paramsModifiers && options.paramsModifiers.length > 0) {
      if (options.paramsModifiers.length !== chainCount) {
        throw new TypeError(`BlockAdapter: ${options.paramsModifiers.length} paramsModifiers for ${chainCount} cache contexts; give one per context`);
      }
      this.modifiers = options.paramsModifiers.map(modifierSettings);
    }
  }

  /**
   * Locates the block lists on the (already patched) transformers and checks them against
   * their patterns.
   */
  resolveChains(): ResolvedChain[] {
    const chains: ResolvedChain[] = [];
    this.transformers.forEach((transformer, t) => {
      const pathsOfTransformer = this.chainPaths ? this.chainPaths[t] : [[autoFind(transformer, this.transformerNames[t])]];
      for (const paths of pathsOfTransformer) {
        const index = chains.length;
        const lists = paths.map((p) => locate(transformer, p, this.transformerNames[t]));
        const blocks = lists.flatMap((l) => l.blocks);
        const name = `${this.transformerNames[t]}.${paths.join('+')}`;
        const pattern = this.patterns?.[index] ?? declaredPattern(blocks, name);
        checkPattern(blocks, pattern, name);
        chains.push({ name, transformerIndex: t, lists, blocks, pattern, modifier: this.modifiers?.[index] });
      }
    });
    return chains;
  }
}

function defaultName(pipe: object | undefined, transformer: object, index: number): string {
  if (pipe) {
    for (const key of Object.keys(pipe)) if ((pipe as Record<string, unknown>)[key] === transformer) return key;
  }
  return index === 0 ? 'transformer' : `transformer_${index + 1}`;
}

function splitPerTransformer(blocks: TransformerBlocks | readonly TransformerBlocks[], count: number): TransformerBlocks[] {
  if (count === 1) return [blocks as TransformerBlocks];
  if (!Array.isArray(blocks) || blocks.length !== count) {
    throw new TypeError(`BlockAdapter: with ${count} transformers, blocks must list one entry per transformer`);
  }
  return [...(blocks as readonly TransformerBlocks[])];
}

function chainsOf(entry: TransformerBlocks, transformerName: string): (readonly string[])[] {
  const refs: readonly BlockListRef[] = Array.isArray(entry) ? (entry as readonly BlockListRef[]) : [entry as BlockListRef];
  if (refs.length === 0) throw new TypeError(`BlockAdapter: no block lists given for ${transformerName}`);
  return refs.map((ref) => {
    const paths = typeof ref === 'string' ? [ref] : ref?.chain;
    if (!Array.isArray(paths) || paths.length === 0 || paths.some((p) => typeof p !== 'string' || p === '')) {
      throw new TypeError(`BlockAdapter: a block list is a property name or { chain: [names...] }, got ${JSON.stringify(ref)} for ${transformerName}`);
    }
    return [...paths];
  });
}

function patternsFor(given: ForwardPattern | readonly ForwardPattern[] | undefined, count: number, auto: boolean): ForwardPattern[] | undefined {
  if (given === undefined) {
    if (auto) return undefined;
    throw new TypeError('BlockAdapter: forwardPattern is required (one for all block lists, or one per cache context)');
  }
  const list = Array.isArray(given) ? [...(given as readonly ForwardPattern[])] : Array<ForwardPattern>(count).fill(given as ForwardPattern);
  if (list.length !== count) throw new TypeError(`BlockAdapter: ${list.length} forward patterns for ${count} cache contexts`);
  list.forEach((p) => patternShape(p));
  return list;
}

function locate(transformer: object, path: string, transformerName: string): LocatedList {
  const keys = path.split('.');
  let owner: unknown = transformer;
  for (const key of keys.slice(0, -1)) {
    owner = (owner as Record<string, unknown> | undefined)?.[key];
    if (owner === null || typeof owner !== 'object') throw new TypeError(`BlockAdapter: ${transformerName}.${path}: ${key} is not an object`);
  }
  const key = keys[keys.length - 1];
  const blocks = (owner as Record<string, unknown>)[key];
  if (!Array.isArray(blocks) || blocks.length === 0) {
    throw new TypeError(`BlockAdapter: ${transformerName}.${path} is not a non-empty list of blocks`);
  }
  blocks.forEach((b, i) => {
    if (!isBlock(b)) throw new TypeError(`BlockAdapter: ${transformerName}.${path}[${i}] has no forward method`);
  });
  return { owner: owner as object, key, blocks: [...(blocks as Block[])] };
}

function isBlock(b: unknown): b is Block {
  return b !== null && typeof b === 'object' && typeof (b as Block).forward === 'function';
}

function autoFind(transformer: object, transformerName: string): string {
  let best: string | undefined;
  let bestLength = 0;
  for (const name of AUTO_BLOCK_LIST_NAMES) {
    const value = (transformer as Record<string, unknown>)[name];
    if (Array.isArray(value) && value.length > bestLength && value.every(isBlock)) [best, bestLength] = [name, value.length];
  }
  if (best === undefined) {
    throw new TypeError(
      `BlockAdapter auto mode: ${transformerName} has none of the conventional block lists (${AUTO_BLOCK_LIST_NAMES.join(', ')}); give blocks`,
    );
  }
  return best;
}

/** The pattern a block states about itself, as `forwardPattern` on the instance or its class. */
function statedPattern(block: Block): ForwardPattern | undefined {
  const own = (block as { forwardPattern?: unknown }).forwardPattern;
  const ofClass = (block.constructor as { forwardPattern?: unknown } | undefined)?.forwardPattern;
  const stated = own ?? ofClass;
  return typeof stated === 'number' ? (stated as ForwardPattern) : undefined;
}

function declaredPattern(blocks: readonly Block[], chain: string): ForwardPattern {
  const stated = statedPattern(blocks[0]);
  if (stated === undefined) throw new TypeError(`BlockAdapter auto mode: the blocks of ${chain} state no forwardPattern; give forwardPattern`);
  return stated;
}

/** Checks what can be known before a call; a block's outputs are checked on every call. */
function checkPattern(blocks: readonly Block[], pattern: ForwardPattern, chain: string): void {
  const shape = patternShape(pattern);
  blocks.forEach((block, i) => {
    const stated = statedPattern(block);
    if (stated !== undefined && stated !== pattern) {
      throw new TypeError(`BlockAdapter: block ${i} of ${chain} states ${patternName(stated)}, but the chain uses ${patternName(pattern)}`);
    }
    // A forward declared with exactly one parameter cannot receive the encoder stream.
    if (shape.takesEncoder && block.forward.length === 1) {
      throw new TypeError(`BlockAdapter: block ${i} of ${chain} takes one argument, but ${patternName(pattern)} passes (h, e, ...)`);
    }
  });
}
