// Synthetic models for the tests: block stacks of every ForwardPattern over PlainTensor, a
// transformer whose forward loops over its lists as a real model does, and a pipeline with a
// denoising loop that announces its calls (or not) to the cache engine.
import { ForwardPattern, patternShape, runTransformerCall, type Block, type CfgBranch } from '../src/index.js';
import { PlainTensor, PlainTensorOps } from '../src/testing.js';

/** Deterministic pseudo-random numbers in [-1, 1). */
export function noise(n: number, seed: number): number[] {
  let s = seed >>> 0 || 1;
  return Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 31 - 1;
  });
}

function mean(t: PlainTensor): number {
  const v = t.values();
  let s = 0;
  for (let i = 0; i < v.length; i++) s += v[i];
  return s / v.length;
}

/**
 * A block with a non-linear update that depends on both streams and on the step's time `t`
 * (the first pass-through argument), so residuals drift from step to step like a real DiT's.
 */
export class ToyBlock implements Block {
  constructor(
    private readonly ops: PlainTensorOps,
    /** Stated so BlockAdapter can check the pattern a chain is given. */
    readonly forwardPattern: ForwardPattern,
    private readonly k: number,
  ) {}

  forward(...args: unknown[]): unknown {
    const shape = patternShape(this.forwardPattern);
    const h = args[0] as PlainTensor;
    const e = shape.takesEncoder ? (args[1] as PlainTensor) : undefined;
    const t = args[shape.takesEncoder ? 2 : 1] as number;
    const k = this.k;
    const eMean = e ? mean(e) : 0;
    const hMean = mean(h);
    const nextH = this.ops.map(h, (x, i) => x + 0.3 * Math.tanh(x * (0.5 + 0.05 * k) + eMean * 0.6 + t * (0.8 - 0.1 * k) + 1 + 0.01 * i));
    if (!shape.returnsEncoder) return nextH;
    const nextE = e
      ? this.ops.map(e, (x, i) => x + 0.2 * Math.tanh(x * (0.5 + 0.03 * k) + hMean * 0.6 - 0.02 * i))
      : this.ops.map(h, (x, i) => 0.5 * Math.tanh(x * (0.9 - 0.04 * k) + t + 0.03 * i));
    return shape.hiddenFirst ? [nextH, nextE] : [nextE, nextH];
  }
}

/**
 * The last block of an SD3-like chain (diffusers' `context_pre_only`): it updates h from both
 * streams, then ends the encoder stream, returning null in its place.
 */
export class StreamEndingBlock implements Block {
  private readonly inner: ToyBlock;

  constructor(
    ops: PlainTensorOps,
    readonly forwardPattern: ForwardPattern,
    k: number,
  ) {
    this.inner = new ToyBlock(ops, forwardPattern, k);
  }

  forward(...args: unknown[]): unknown {
    const hiddenFirst = patternShape(this.forwardPattern).hiddenFirst;
    const out = this.inner.forward(...args) as [PlainTensor, PlainTensor];
    const [h, e] = hiddenFirst ? out : [out[1], out[0]];
    e.dispose();
    return hiddenFirst ? [h, null] : [null, h];
  }
}

/** A block that adds `coefficient * f(step)` to h: its residual is known in closed form. */
export class AdditiveBlock implements Block {
  constructor(
    private readonly ops: PlainTensorOps,
    private readonly coefficient: number,
    private readonly f: (step: number) => number,
  ) {}

  forward(h: PlainTensor, step: number): PlainTensor {
    const c = this.coefficient * this.f(step);
    return this.ops.map(h, (x, i) => x + c * (1 + 0.1 * i));
  }
}

export function toyBlocks(ops: PlainTensorOps, pattern: ForwardPattern, count: number, offset = 0): ToyBlock[] {
  return Array.from({ length: count }, (_, i) => new ToyBlock(ops, pattern, i + offset));
}

/**
 * A transformer whose forward runs its block lists in order, releasing the intermediate
 * tensors it made (never its inputs), as a model on the native runtime would.
 */
export class ToyTransformer {
  [list: string]: unknown;

  constructor(
    readonly ops: PlainTensorOps,
    readonly pattern: ForwardPattern,
    readonly listNames: readonly string[],
    lists: readonly Block[][],
  ) {
    listNames.forEach((name, i) => (this[name] = lists[i]));
  }

  forward(h: PlainTensor, e: PlainTensor | undefined, t: number): { h: PlainTensor; e: PlainTensor | undefined } {
    const shape = patternShape(this.pattern);
    const inputs = [h, e];
    let curH = h;
    let curE = shape.takesEncoder ? e : undefined;
    const releaseIfMine = (x: PlainTensor | undefined, next: PlainTensor | undefined) => {
      if (x && x !== next && !inputs.includes(x)) x.dispose();
    };
    for (const name of this.listNames) {
      for (const block of this[name] as Block[]) {
        const out = shape.takesEncoder ? block.forward(curH, curE, t) : block.forward(curH, t);
        let nextH: PlainTensor;
        let nextE = curE;
        if (shape.returnsEncoder) {
          const pair = out as [PlainTensor, PlainTensor];
          [nextH, nextE] = shape.hiddenFirst ? pair : [pair[1], pair[0]];
        } else {
          nextH = out as PlainTensor;
        }
        releaseIfMine(curH, nextH);
        if (nextE !== curE) releaseIfMine(curE, nextE);
        curH = nextH;
        curE = nextE;
      }
    }
    return { h: curH, e: curE };
  }
}

export interface DenoiseOptions {
  steps: number;
  /** Guidance scale; > 1 makes two calls per step (cond, uncond). */
  guidance?: number;
  /** Announce each call's step and branch to the cache engine. */
  announce?: boolean;
  /** 'batched' runs cond and uncond as one call (one announcement). */
  batched?: boolean;
  seed?: number;
  size?: number;
}

/** A pipeline: Euler steps on latents, with classifier-free guidance when guidance > 1. */
export class ToyPipeline {
  constructor(
    readonly transformer: ToyTransformer,
    readonly ops: PlainTensorOps,
  ) {}

  generate(opts: DenoiseOptions): Float64Array {
    const { steps, guidance = 1, announce = false, seed = 1, size = 12 } = opts;
    const ops = this.ops;
    let x = ops.tensor(noise(size, seed));
    const cond = ops.tensor(noise(8, seed + 1));
    const uncond = ops.tensor(noise(8, seed + 2).map((v) => 0.2 * v - 1));
    for (let step = 0; step < steps; step++) {
      const t = 1 - step / steps;
      const call = (e: PlainTensor, branch: CfgBranch) => {
        const forward = () => this.transformer.forward(x, e, t);
        const out = announce ? runTransformerCall(this.transformer, { step, numSteps: steps, branch }, forward) : forward();
        if (out.e && out.e !== e) out.e.dispose();
        return out.h;
      };
      let velocity: PlainTensor;
      if (guidance > 1 && !opts.batched) {
        const c = call(cond, 'cond');
        const u = call(uncond, 'uncond');
        velocity = ops.map(u, (v, i) => v + guidance * (c.data[i] - v));
        c.dispose();
        u.dispose();
      } else {
        velocity = call(cond, opts.batched ? 'batched' : 'cond');
      }
      const next = ops.addScaled(x, velocity, -1 / steps);
      x.dispose();
      velocity.dispose();
      x = next;
    }
    const result = Float64Array.from(x.values());
    for (const tensor of [x, cond, uncond]) tensor.dispose();
    return result;
  }
}

export function toyPipeline(pattern: ForwardPattern, lists: Record<string, number> = { transformerBlocks: 6 }): ToyPipeline {
  const ops = new PlainTensorOps();
  let offset = 0;
  const names = Object.keys(lists);
  const blocks = names.map((name) => {
    const list = toyBlocks(ops, pattern, lists[name], offset);
    offset += lists[name];
    return list;
  });
  return new ToyPipeline(new ToyTransformer(ops, pattern, names, blocks), ops);
}
