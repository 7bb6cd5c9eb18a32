import { readFile, stat } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import type * as Ort from 'onnxruntime-web';
import { MetricsError } from './errors.js';

/**
 * Runs the networks of the learned metrics (LPIPS, InceptionV3 for FID, CLIP) from ONNX
 * files the user exported from the public weights (see the README, "Model files").
 *
 * Two runtimes share one API (onnxruntime-common):
 * - `onnxruntime-web`, a dependency: WebAssembly, installs from the npm registry with no
 *   install script and no download, so it works offline and in CI;
 * - `onnxruntime-node`, an optional peer dependency: native and faster, used when installed.
 *   Its install script fetches CUDA libraries on linux-x64 and fails offline, which is why
 *   it is not a hard dependency (`ONNXRUNTIME_NODE_INSTALL=skip npm i onnxruntime-node`
 *   installs its CPU build without that step).
 */
export type OnnxRuntimeChoice = 'auto' | 'node' | 'web';

type OrtModule = typeof Ort;

export interface LoadedRuntime {
  name: 'node' | 'web';
  ort: OrtModule;
}

const runtimes = new Map<string, Promise<LoadedRuntime>>();

async function importNode(): Promise<LoadedRuntime> {
  // A variable specifier: TypeScript must not require the optional peer at build time.
  const specifier = 'onnxruntime-node';
  const ort = (await import(specifier)) as OrtModule;
  return { name: 'node', ort };
}

async function importWeb(threads: number): Promise<LoadedRuntime> {
  const ort = await import('onnxruntime-web');
  // Must be set before the first session is created.
  ort.env.wasm.numThreads = threads;
  return { name: 'web', ort };
}

/** Loads (once) the runtime asked for; 'auto' prefers onnxruntime-node when it is installed. */
export function loadRuntime(choice: OnnxRuntimeChoice = 'auto', threads = availableParallelism()): Promise<LoadedRuntime> {
  let loaded = runtimes.get(choice);
  if (!loaded) {
    loaded =
      choice === 'web'
        ? importWeb(threads)
        : choice === 'node'
          ? importNode().catch((error: unknown) => {
              throw new MetricsError(
                `onnxruntime-node is not installed (install it with "ONNXRUNTIME_NODE_INSTALL=skip npm i onnxruntime-node@1.30.0", or use --runtime web): ${(error as Error).message}`,
              );
            })
          : importNode().catch(() => importWeb(threads));
    runtimes.set(choice, loaded);
  }
  return loaded;
}

export interface TensorData {
  data: Float32Array | BigInt64Array;
  dims: readonly number[];
}

export interface FloatTensorData {
  data: Float32Array;
  dims: readonly number[];
}

export interface NetworkOptions {
  runtime?: OnnxRuntimeChoice;
  /** Intra-op threads (default: the number of cores). */
  threads?: number;
}

/** One ONNX model file and its inference session. */
export class OnnxNetwork {
  private constructor(
    readonly path: string,
    readonly runtime: 'node' | 'web',
    private readonly ort: OrtModule,
    private readonly session: Ort.InferenceSession,
  ) {}

  static async load(path: string, purpose: string, options: NetworkOptions = {}): Promise<OnnxNetwork> {
    try {
      await stat(path);
    } catch {
      throw new MetricsError(`${purpose} model not found: ${path} (export it as the README of @ditcache/metrics explains under "Model files")`);
    }
    const threads = options.threads ?? availableParallelism();
    const { name, ort } = await loadRuntime(options.runtime ?? 'auto', threads);
    let session: Ort.InferenceSession;
    try {
      if (name === 'node') {
        // By path, so that exports over 2 GB with external data files next to them load too.
        session = await ort.InferenceSession.create(path, { intraOpNumThreads: threads, graphOptimizationLevel: 'all' });
      } else {
        // The WebAssembly runtime takes the model as bytes (one file, under 2 GB).
        const bytes = await readFile(path);
        session = await ort.InferenceSession.create(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), {
          graphOptimizationLevel: 'all',
        });
      }
    } catch (error) {
      throw new MetricsError(`cannot load the ${purpose} model ${path}: ${(error as Error).message ?? String(error)}`, {
        cause: error,
      });
    }
    return new OnnxNetwork(path, name, ort, session);
  }

  get inputNames(): readonly string[] {
    return this.session.inputNames;
  }

  get outputNames(): readonly string[] {
    return this.session.outputNames;
  }

  /** Fails with the names the model has when it lacks one this metric needs. */
  expectNames(inputs: readonly string[], outputs: readonly string[]): void {
    const missingInputs = inputs.filter((n) => !this.inputNames.includes(n));
    const missingOutputs = outputs.filter((n) => !this.outputNames.includes(n));
    if (missingInputs.length > 0 || missingOutputs.length > 0) {
      throw new MetricsError(
        `${this.path} does not have the expected interface: missing ${[
          ...missingInputs.map((n) => `input "${n}"`),
          ...missingOutputs.map((n) => `output "${n}"`),
        ].join(', ')} (it has inputs ${JSON.stringify(this.inputNames)} and outputs ${JSON.stringify(this.outputNames)})`,
      );
    }
  }

  async run(feeds: Record<string, TensorData>, outputs?: readonly string[]): Promise<Record<string, FloatTensorData>> {
    const ortFeeds: Record<string, Ort.Tensor> = {};
    for (const [name, tensor] of Object.entries(feeds)) {
      ortFeeds[name] =
        tensor.data instanceof BigInt64Array
          ? new this.ort.Tensor('int64', tensor.data, tensor.dims)
          : new this.ort.Tensor('float32', tensor.data, tensor.dims);
    }
    let results: Ort.InferenceSession.ReturnType;
    try {
      results = outputs ? await this.session.run(ortFeeds, outputs as string[]) : await this.session.run(ortFeeds);
    } catch (error) {
      throw new MetricsError(`running ${this.path} failed: ${(error as Error).message ?? String(error)}`, { cause: error });
    }
    const out: Record<string, FloatTensorData> = {};
    for (const [name, tensor] of Object.entries(results)) {
      if (tensor.type !== 'float32') {
        throw new MetricsError(`${this.path}: output "${name}" is ${tensor.type}, float32 expected`);
      }
      out[name] = { data: tensor.data as Float32Array, dims: tensor.dims };
    }
    return out;
  }

  async dispose(): Promise<void> {
    await this.session.release();
  }
}
