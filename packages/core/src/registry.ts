// The adapter registry: model packages register a BlockAdapter factory with a class decorator,
// keyed by transformer class and by pipeline class names, so `enableCache(pipe)` works for
// every pipeline of a family. Factories are built by the tsyringe container, so they can ask
// for services in their constructors.
import 'reflect-metadata';
import { container, injectable, type DependencyContainer, type InjectionToken } from 'tsyringe';

import type { BlockAdapter } from './block-adapter.js';
import type { TensorOps } from './tensor-ops.js';

/** The objects a factory builds an adapter for. */
export interface AdapterTarget {
  /** The pipeline, when caching was enabled on one. */
  readonly pipe: object | undefined;
  /** The pipeline's transformer, or the transformer given directly. */
  readonly transformer: object;
}

/** Builds the BlockAdapter of one model family. */
export interface BlockAdapterFactory {
  createBlockAdapter(target: AdapterTarget): BlockAdapter<any>;
}

export interface AdapterRegistration {
  /** Class name(s) of the family's transformer: any pipeline holding one is covered. */
  readonly transformerClass?: string | readonly string[];
  /** Pipeline class names of the family. */
  readonly pipelines?: readonly string[];
}

type FactoryClass = new (...args: any[]) => BlockAdapterFactory;

/** The container ditcache builds factories with; register services for factories here. */
export const ditcacheContainer: DependencyContainer = container.createChildContainer();

/**
 * The TensorOps that `enableCache` uses for a model no adapter is registered for (auto mode).
 * A tensor runtime's package registers its own, e.g. `@ditcache/diffusion` does
 * `ditcacheContainer.register(TENSOR_OPS, { useValue: runtimeTensorOps })` when imported.
 */
export const TENSOR_OPS: InjectionToken<TensorOps<unknown>> = 'ditcache:TensorOps';

/** The registered default TensorOps, if a runtime registered one. */
export function defaultTensorOps(): TensorOps<unknown> | undefined {
  return ditcacheContainer.isRegistered(TENSOR_OPS, true) ? ditcacheContainer.resolve(TENSOR_OPS) : undefined;
}

@injectable()
export class AdapterRegistry {
  private readonly byPipeline = new Map<string, FactoryClass>();
  private readonly byTransformer = new Map<string, FactoryClass>();

  add(registration: AdapterRegistration, factory: FactoryClass): void {
    const transformers = registration.transformerClass === undefined ? [] : ([] as string[]).concat(registration.transformerClass);
    const pipelines = registration.pipelines ?? [];
    if (transformers.length + pipelines.length === 0) {
      throw new TypeError(`registerAdapter(${factory.name}): give transformerClass and/or pipelines`);
    }
    claim(this.byTransformer, transformers, factory, 'transformer class');
    claim(this.byPipeline, pipelines, factory, 'pipeline');
  }

  /** The factory for a pipeline, by its class (or a parent class) or its transformer's class. */
  forPipeline(pipe: object): FactoryClass | undefined {
    return findByClass(this.byPipeline, pipe) ?? (hasTransformer(pipe) ? findByClass(this.byTransformer, pipe.transformer) : undefined);
  }

  /** The factory for a transformer used without its pipeline. */
  forTransformer(transformer: object): FactoryClass | undefined {
    return findByClass(this.byTransformer, transformer);
  }

  pipelines(): string[] {
    return [...this.byPipeline.keys()].sort();
  }

  transformerClasses(): string[] {
    return [...this.byTransformer.keys()].sort();
  }
}

ditcacheContainer.registerSingleton(AdapterRegistry);

/**
 * Registers a BlockAdapter factory class, e.g.
 * `@registerAdapter({ transformerClass: 'FluxTransformer', pipelines: ['FluxPipeline'] })`.
 * The factory is built by `ditcacheContainer`: its constructor parameters are injected.
 */
export function registerAdapter(registration: AdapterRegistration) {
  return <C extends FactoryClass>(factory: C): C => {
    injectable()(factory);
    adapterRegistry().add(registration, factory);
    return factory;
  };
}

export function adapterRegistry(): AdapterRegistry {
  return ditcacheContainer.resolve(AdapterRegistry);
}

/** Builds a registered factory with its injected services. */
export function buildFactory(factory: InjectionToken<BlockAdapterFactory>): BlockAdapterFactory {
  return ditcacheContainer.resolve(factory);
}

/**
 * Pipeline class names with a registered adapter: those of the adapter packages imported so far
 * (a pipeline is also covered through its transformer's class).
 */
export function supportedPipelines(): string[] {
  return adapterRegistry().pipelines();
}

function claim(map: Map<string, FactoryClass>, names: readonly string[], factory: FactoryClass, kind: string): void {
  for (const name of names) {
    const owner = map.get(name);
    if (owner && owner !== factory) throw new TypeError(`registerAdapter(${factory.name}): ${kind} ${name} is already registered by ${owner.name}`);
    map.set(name, factory);
  }
}

function findByClass(map: Map<string, FactoryClass>, obj: object): FactoryClass | undefined {
  for (let proto = Object.getPrototypeOf(obj); proto && proto !== Object.prototype; proto = Object.getPrototypeOf(proto)) {
    const found = map.get(proto.constructor?.name);
    if (found) return found;
  }
  return undefined;
}

function hasTransformer(obj: object): obj is { transformer: object } {
  const t = (obj as { transformer?: unknown }).transformer;
  return t !== null && typeof t === 'object';
}
