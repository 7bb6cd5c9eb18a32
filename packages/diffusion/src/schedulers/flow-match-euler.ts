// diffusers' FlowMatchEulerDiscreteScheduler (FLUX, HiDream, Wan 2.1): the sigma schedule with
// static or resolution-dependent ("dynamic") shifting, and the Euler step of a flow-matching ODE.
// The arithmetic follows diffusers' dtypes: sigmas given as a list are float32 and shifted in
// float32 (NumPy with Python scalars), sigmas derived from linspace are float64 until stored.
import { join } from 'node:path';

import { add, mul, tidy, type Tensor } from '@ditcache/cuda-runtime';

import { ConfigError, readJsonObject, typedConfig } from '../io/config-file.js';

/** diffusers' FlowMatchEulerDiscreteScheduler defaults. */
export const FLOW_MATCH_EULER_DEFAULTS = {
  num_train_timesteps: 1000,
  shift: 1.0,
  use_dynamic_shifting: false,
  base_shift: 0.5 as number | null,
  max_shift: 1.15 as number | null,
  base_image_seq_len: 256,
  max_image_seq_len: 4096,
  invert_sigmas: false,
  shift_terminal: null as number | null,
  use_karras_sigmas: false,
  use_exponential_sigmas: false,
  use_beta_sigmas: false,
  time_shift_type: 'exponential' as string,
  stochastic_sampling: false,
};

export type FlowMatchEulerConfig = typeof FLOW_MATCH_EULER_DEFAULTS;

/**
 * FluxPipeline's calculate_shift: the `mu` of dynamic shifting, linear in the image sequence
 * length from `baseShift` at `baseSeqLen` tokens to `maxShift` at `maxSeqLen` tokens.
 */
export function calculateShift(imageSeqLen: number, baseSeqLen = 256, maxSeqLen = 4096, baseShift = 0.5, maxShift = 1.15): number {
  const m = (maxShift - baseShift) / (maxSeqLen - baseSeqLen);
  const b = baseShift - m * baseSeqLen;
  return imageSeqLen * m + b;
}

export interface ScheduleOptions {
  /** Number of steps; may be omitted when `sigmas` or `timesteps` are given. */
  numInferenceSteps?: number;
  /** Custom sigmas, one per step (FluxPipeline passes linspace(1, 1/n, n)). */
  sigmas?: readonly number[];
  /** Custom timesteps (0..num_train_timesteps), one per step. */
  timesteps?: readonly number[];
  /** Shift exponent of dynamic shifting; required when the config enables it. */
  mu?: number;
}

const f32 = Math.fround;
const f64 = (x: number): number => x;

/**
 * What a pipeline's denoising loop needs from a scheduler once set up for a run: the timesteps
 * the model is conditioned on, the sigmas, and the step from one sample to the next. `step`
 * returns a new tensor and leaves its inputs alone.
 */
export interface SamplingSchedule {
  /** Per step, in the units the model is conditioned on (0..num_train_timesteps). */
  readonly timesteps: Float32Array;
  /** One more than the steps: the last is the terminal sigma. */
  readonly sigmas: Float32Array;
  step(index: number, modelOutput: Tensor, sample: Tensor): Tensor;
}

/** The sigmas and timesteps of one sampling run, and its Euler step. */
export class FlowMatchSchedule implements SamplingSchedule {
  /** Per step, in the units the model is conditioned on (sigma * num_train_timesteps). */
  readonly timesteps: Float32Array;
  /** One more than the steps: the last is the terminal sigma (0, or 1 with inverted sigmas). */
  readonly sigmas: Float32Array;

  constructor(timesteps: Float32Array, sigmas: Float32Array) {
    if (sigmas.length !== timesteps.length + 1) {
      throw new TypeError(`FlowMatchSchedule: ${sigmas.length} sigmas for ${timesteps.length} timesteps (need one more)`);
    }
    this.timesteps = timesteps;
    this.sigmas = sigmas;
  }

  get length(): number {
    return this.timesteps.length;
  }

  /**
   * Euler step `index`: sample + (sigma[index + 1] - sigma[index]) * modelOutput, a new tensor
   * in modelOutput's dtype. As diffusers: the product is rounded to modelOutput's dtype, the sum
   * is taken in float32 and rounded back to modelOutput's dtype (a no-op in float32).
   */
  step(index: number, modelOutput: Tensor, sample: Tensor): Tensor {
    if (!Number.isInteger(index) || index < 0 || index >= this.length) {
      throw new RangeError(`FlowMatchSchedule.step: step ${index} is outside 0..${this.length - 1}`);
    }
    const dt = f32(this.sigmas[index + 1] - this.sigmas[index]);
    return tidy(() => {
      const next = add(sample, mul(modelOutput, dt));
      return next.dtype === modelOutput.dtype ? next : next.cast(modelOutput.dtype);
    });
  }
}

export class FlowMatchEulerDiscreteScheduler {
  readonly config: FlowMatchEulerConfig;
  /** The largest and smallest training sigmas, after static shifting. */
  readonly sigmaMax: number;
  readonly sigmaMin: number;

  constructor(config: Partial<FlowMatchEulerConfig> = {}) {
    this.config = { ...FLOW_MATCH_EULER_DEFAULTS, ...config };
    const c = this.config;
    const unsupported = (['use_karras_sigmas', 'use_exponential_sigmas', 'use_beta_sigmas', 'stochastic_sampling'] as const).filter((k) => c[k]);
    if (unsupported.length) throw new ConfigError(`FlowMatchEulerDiscreteScheduler: ${unsupported.join(', ')} not supported`);
    if (c.time_shift_type !== 'exponential' && c.time_shift_type !== 'linear') {
      throw new ConfigError(`FlowMatchEulerDiscreteScheduler: time_shift_type must be 'exponential' or 'linear', got '${c.time_shift_type}'`);
    }
    if (!(Number.isInteger(c.num_train_timesteps) && c.num_train_timesteps > 0)) {
      throw new ConfigError(`FlowMatchEulerDiscreteScheduler: num_train_timesteps must be a positive integer, got ${c.num_train_timesteps}`);
    }
    // The training sigmas are float32 (N..1) / N; only their ends are used later.
    const n = c.num_train_timesteps;
    const trainSigma = (t: number): number => {
      const s = f32(t / n);
      return c.use_dynamic_shifting ? s : this.staticShift(s, f32);
    };
    this.sigmaMax = trainSigma(n);
    this.sigmaMin = trainSigma(1);
  }

  /** Reads `scheduler_config.json` of a pipeline's `scheduler/` folder. */
  static fromFolder(dir: string): FlowMatchEulerDiscreteScheduler {
    const path = join(dir, 'scheduler_config.json');
    return new FlowMatchEulerDiscreteScheduler(typedConfig(readJsonObject(path), path, ['FlowMatchEulerDiscreteScheduler'], FLOW_MATCH_EULER_DEFAULTS));
  }

  /** The `mu` FluxPipeline computes for `imageSeqLen` tokens from this config's shift range. */
  dynamicShiftMu(imageSeqLen: number): number {
    const c = this.config;
    return calculateShift(imageSeqLen, c.base_image_seq_len, c.max_image_seq_len, c.base_shift ?? 0.5, c.max_shift ?? 1.15);
  }

  /** diffusers' set_timesteps: the schedule of one run. */
  schedule(opts: ScheduleOptions): FlowMatchSchedule {
    const c = this.config;
    const n = c.num_train_timesteps;
    const { sigmas, timesteps, mu } = opts;
    if (c.use_dynamic_shifting && mu === undefined) throw new TypeError('FlowMatchEulerDiscreteScheduler.schedule: mu is required with use_dynamic_shifting');
    if (sigmas && timesteps && sigmas.length !== timesteps.length) {
      throw new TypeError(`FlowMatchEulerDiscreteScheduler.schedule: ${sigmas.length} sigmas but ${timesteps.length} timesteps`);
    }
    const given = sigmas ?? timesteps;
    const steps = opts.numInferenceSteps ?? given?.length;
    if (steps === undefined || !Number.isInteger(steps) || steps < 1) {
      throw new TypeError(`FlowMatchEulerDiscreteScheduler.schedule: numInferenceSteps must be a positive integer, got ${steps}`);
    }
    if (given && given.length !== steps) {
      throw new TypeError(`FlowMatchEulerDiscreteScheduler.schedule: ${given.length} custom values for ${steps} steps`);
    }

    // Lists the caller gives are float32 arrays in diffusers; its own linspace stays float64.
    let round: (x: number) => number;
    let s: number[];
    if (sigmas) {
      round = f32;
      s = sigmas.map(f32);
    } else if (timesteps) {
      round = f32;
      s = timesteps.map((t) => f32(f32(t) / n));
    } else {
      round = f64;
      s = linspace(this.sigmaMax * n, this.sigmaMin * n, steps).map((t) => t / n);
    }

    if (c.use_dynamic_shifting) s = s.map((x) => this.timeShift(mu as number, x, round));
    else s = s.map((x) => this.staticShift(x, round));
    if (c.shift_terminal) {
      const scale = round(round(1 - s[s.length - 1]) / round(1 - c.shift_terminal));
      s = s.map((x) => round(1 - round(round(1 - x) / scale)));
    }

    let sig = Float32Array.from(s);
    if (c.invert_sigmas) sig = sig.map((x) => 1 - x);
    const ts = sig.map((x) => x * n);
    const all = new Float32Array(steps + 1);
    all.set(sig);
    all[steps] = c.invert_sigmas ? 1 : 0;
    return new FlowMatchSchedule(ts, all);
  }

  private staticShift(sigma: number, round: (x: number) => number): number {
    const shift = this.config.shift;
    return round(round(shift * sigma) / round(1 + round((shift - 1) * sigma)));
  }

  private timeShift(mu: number, sigma: number, round: (x: number) => number): number {
    const ratio = round(round(1 / sigma) - 1);
    if (this.config.time_shift_type === 'linear') return round(round(mu) / round(round(mu) + ratio));
    const e = round(Math.exp(mu));
    return round(e / round(e + ratio));
  }
}

/** NumPy's linspace in float64: start + i * step, with the end point exact. */
export function linspace(start: number, end: number, num: number): number[] {
  if (num === 1) return [start];
  const step = (end - start) / (num - 1);
  const out = Array.from({ length: num }, (_, i) => start + i * step);
  out[num - 1] = end;
  return out;
}
