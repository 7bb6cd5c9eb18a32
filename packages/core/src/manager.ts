// enableCache / disableCache: builds the BlockAdapter (given, or from the registry), applies the
// patch functor, puts a cached block chain in place of each cached block list on the instance,
// and keeps one CacheHandle per enabled target so it can be found and undone.
import { injectable } from 'tsyringe';

import { wrapAttentionSites } from './attention-sites.js';
import { BlockAdapter, type ResolvedChain } from './block-adapter.js';
import {
  CacheConfigError,
  checkConfigForChain,
  parseCacheConfig,
  resolveConfig,
  type CacheConfig,
  type CacheConfigInput,
  type ParsedCacheConfig,
} from './config.js';
import { CachedBlockChain } from './block-chain.js';
import { CacheContext } from './context.js';
import { patternName } from './forward-pattern.js';
import { CacheHandle } from './handle.js';
import { patchProperty, UndoStack, wrapMethod } from './patch.js';
import { AdapterRegistry, buildFactory, defaultTensorOps } from './registry.js';
import type { TensorOps } from './tensor-ops.js';
import { TransformerCallScope } from './transformer-call.js';

@injectable()
export class CacheManager {
  private readonly handles = new WeakMap<object, CacheHandle<any>>();

  constructor(private readonly registry: AdapterRegistry) {}

  enable<T>(target: object, config?: CacheConfigInput | string): CacheHandle<T> {
    const parsed = parseCacheConfig(config);
    // Enabling again replaces the previous cache of any object involved.
    this.disable(target);
    const adapter = target instanceof BlockAdapter ? (target as BlockAdapter<T>) : this.adapterFor<T>(target);
    for (const obj of [adapter, adapter.pipe, ...adapter.transformers]) if (obj) this.disable(obj);

    const undo = new UndoStack();
    try {
      if (adapter.patchFunctor) for (const t of adapter.transformers) undo.push(adapter.patchFunctor.apply(t));
      const chains = adapter.resolveChains();
      const configsFor = (p: ParsedCacheConfig) => effectiveConfigs(p, chains);
      const configs = configsFor(parsed);
      const calls = new TransformerCallScope();
      const contexts = chains.map(
        (chain, i) =>
          new CacheContext<T>(
            { name: chain.name, transformerIndex: chain.transformerIndex, blockCount: chain.blocks.length },
            configs[i],
            adapter.hasSeparateCfg,
            calls,
            adapter.ops,
          ),
      );
      const handle = new CacheHandle<T>(adapter, contexts, calls, undo, parsed, configsFor);
      // Before the block lists are replaced, so a declaration may read the blocks.
      wrapAttentionSites(adapter.attentionSites, adapter.transformers, adapter.transformerNames, chains, contexts, undo);
      for (const context of contexts) context.checkAttentionSites(context.policy);
      chains.forEach((chain, i) => {
        const cached = new CachedBlockChain(contexts[i], chain.blocks, chain.pattern, adapter.ops, adapter.flops);
        chain.lists.forEach((list, j) => undo.push(patchProperty(list.owner, list.key, j === 0 ? [cached] : [])));
      });
      this.wrapEntryPoints(adapter, handle, calls, undo);
      for (const obj of [target, adapter, adapter.pipe, ...adapter.transformers]) if (obj) this.handles.set(obj, handle);
      return handle;
    } catch (e) {
      undo.undoAll();
      throw e;
    }
  }

  /** Restores the target's model exactly; false when it had no cache. */
  disable(target: object): boolean {
    const handle = this.handles.get(target);
    if (!handle) return false;
    handle.dispose();
    const adapter = handle.adapter;
    for (const obj of [adapter, adapter.pipe, ...adapter.transformers]) if (obj && this.handles.get(obj) === handle) this.handles.delete(obj);
    this.handles.delete(target);
    return true;
  }

  handleOf(target: object): CacheHandle<any> | undefined {
    return this.handles.get(target);
  }

  private adapterFor<T>(target: object): BlockAdapter<T> {
    const registry = this.registry;
    const asPipeline = registry.forPipeline(target);
    if (asPipeline) {
      const transformer = (target as { transformer?: object }).transformer;
      return buildFactory(asPipeline).createBlockAdapter({ pipe: target, transformer: transformer ?? target }) as BlockAdapter<T>;
    }
    const asTransformer = registry.forTransformer(target);
    if (asTransformer) return buildFactory(asTransformer).createBlockAdapter({ pipe: undefined, transformer: target }) as BlockAdapter<T>;
    return this.autoAdapter<T>(target);
  }

  /**
   * A model no installed adapter knows is cached in auto mode when it can be: its transformer
   * has a conventionally named block list whose blocks state their ForwardPattern, and a tensor
   * runtime registered its TensorOps. Otherwise the error says what is installed, how to add an
   * adapter, and why auto mode was not possible.
   */
  private autoAdapter<T>(target: object): BlockAdapter<T> {
    const name = className(target);
    const inner = (target as { transformer?: unknown }).transformer;
    const [pipe, transformer] = inner !== null && typeof inner === 'object' ? [target, inner] : [undefined, target];
    const ops = defaultTensorOps() as TensorOps<T> | undefined;
    let whyNotAuto: string;
    if (!ops) {
      whyNotAuto = "no tensor runtime registered its TensorOps under TENSOR_OPS (importing @ditcache/diffusion registers the native runtime's)";
    } else {
      try {
        const adapter = new BlockAdapter<T>({ pipe, transformer, auto: true, ops });
        const [chain] = adapter.resolveChains();
        process.emitWarning(
          `enableCache: no adapter is registered for ${name}; caching ${chain.name} in auto mode, as its blocks state ${patternName(chain.pattern)}. ` +
            'Register an adapter for its family to choose the block lists, patterns and CFG layout yourself.',
          'DitcacheAutoAdapterWarning',
        );
        return adapter;
      } catch (e) {
        whyNotAuto = (e as Error).message;
      }
    }
    const registry = this.registry;
    throw new TypeError(
      `enableCache: no adapter is registered for ${name}${pipe ? ` or its transformer ${className(transformer)}` : ''}. ` +
        `Installed adapters cover the pipelines ${registry.pipelines().join(', ') || '(none)'} and the transformer classes ` +
        `${registry.transformerClasses().join(', ') || '(none)'}. To add one, import the adapter package of its family, or write a ` +
        `BlockAdapterFactory and register it with @registerAdapter({ pipelines: ['${name}'] }) (docs/writing-an-adapter.md walks through it); ` +
        'or pass enableCache(new BlockAdapter({ pipe, transformer, blocks, forwardPattern, ops })) directly. ' +
        `Auto mode was not possible: ${whyNotAuto}.`,
    );
  }

  private wrapEntryPoints<T>(adapter: BlockAdapter<T>, handle: CacheHandle<T>, calls: TransformerCallScope, undo: UndoStack): void {
    const pipe = adapter.pipe as Record<string, unknown> | undefined;
    if (pipe && typeof pipe[adapter.pipeEntry] === 'function') {
      undo.push(
        wrapMethod(pipe, adapter.pipeEntry, (original) => (...args: unknown[]) => {
          handle.beginRun();
          return original(...args);
        }),
      );
    }
    // A bare transformer call (no pipeline around it said which call it is) is placed by its
    // timestep, when the adapter can read it; a call a pipeline runs is not read at all.
    const timestepOf = adapter.timestepOf;
    if (timestepOf) {
      for (const t of adapter.transformers) {
        undo.push(
          wrapMethod(t, 'forward', (original) => (...args: unknown[]) => {
            if (calls.current !== undefined) return original(...args);
            const timestep = timestepOf(args);
            return timestep === undefined ? original(...args) : calls.runBare(timestep, () => original(...args));
          }),
        );
      }
    }
  }
}

function className(obj: object): string {
  return Object.getPrototypeOf(obj)?.constructor?.name ?? typeof obj;
}

/** Each context's config: the base, then the adapter's modifier, then the user's modifier. */
function effectiveConfigs(parsed: ParsedCacheConfig, chains: readonly ResolvedChain[]): CacheConfig[] {
  if (parsed.modifiers && parsed.modifiers.length !== chains.length) {
    throw new CacheConfigError(
      `paramsModifiers has ${parsed.modifiers.length} entries for ${chains.length} cache contexts (${chains.map((c) => c.name).join(', ')})`,
      'paramsModifiers',
    );
  }
  return chains.map((chain, i) => {
    const config = resolveConfig(parsed.base, chain.modifier ?? {}, parsed.modifiers?.[i] ?? {});
    checkConfigForChain(config, chain.blocks.length, chain.name);
    return config;
  });
}
