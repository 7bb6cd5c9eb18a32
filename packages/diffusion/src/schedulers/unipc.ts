// diffusers' UniPCMultistepScheduler in its flow-matching form (use_flow_sigmas with
// prediction_type "flow_prediction", the setting of the released Wan checkpoints): shifted flow
// sigmas, and the multistep UniP predictor with the UniC corrector over the model's data
// predictions x0 = sample - sigma * velocity. diffusers computes the step coefficients on 0-d
// float32 tensors, so every scalar operation here rounds to float32 as well; the sigma schedule
// is float64 NumPy until it is stored. A 16-bit model output (diffusers' torch_dtype) enters only
// through the data prediction, `sample - sigma * output`, where torch rounds sigma to the output's
// dtype and the product to it too; the solver state and the samples stay float32.
import { join } from 'node:path';

import { add, div, mul, sub, tensor, tidy, type DType, type Tensor } from '@ditcache/cuda-runtime';

import { ConfigError, readJsonObject, typedConfig } from '../io/config-file.js';
import { linspace, type SamplingSchedule } from './flow-match-euler.js';

/** diffusers' UniPCMultistepScheduler defaults. */
export const UNIPC_MULTISTEP_DEFAULTS = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: 'linear',
  trained_betas: null as number[] | null,
  solver_order: 2,
  prediction_type: 'epsilon',
  thresholding: false,
  dynamic_thresholding_ratio: 0.995,
  sample_max_value: 1.0,
  predict_x0: true,
  solver_type: 'bh2',
  lower_order_final: true,
  disable_corrector: [] as number[],
  solver_p: null as unknown,
  use_karras_sigmas: false,
  use_exponential_sigmas: false,
  use_beta_sigmas: false,
  use_flow_sigmas: false,
  flow_shift: 1.0,
  timestep_spacing: 'linspace',
  steps_offset: 0,
  final_sigmas_type: 'zero',
  rescale_betas_zero_snr: false,
  use_dynamic_shifting: false,
  time_shift_type: 'exponential',
  sigma_min: null as number | null,
  sigma_max: null as number | null,
  shift_terminal: null as number | null,
};

export type UniPCMultistepConfig = typeof UNIPC_MULTISTEP_DEFAULTS;

export interface UniPCScheduleOptions {
  numInferenceSteps: number;
  /** Shift exponent of dynamic shifting; required when the config enables it. */
  mu?: number;
}

const f32 = Math.fround;

/** diffusers keeps these older solver names as aliases of bh2. */
const BH2_ALIASES = ['midpoint', 'heun', 'logrho'];

export class UniPCMultistepScheduler {
  readonly config: UniPCMultistepConfig;

  constructor(config: Partial<UniPCMultistepConfig> = {}) {
    this.config = { ...UNIPC_MULTISTEP_DEFAULTS, ...config };
    const c = this.config;
    const fail = (what: string): never => {
      throw new ConfigError(`UniPCMultistepScheduler: ${what}`);
    };
    if (!c.use_flow_sigmas || c.prediction_type !== 'flow_prediction') {
      fail(
        `only the flow-matching form is supported (use_flow_sigmas true, prediction_type 'flow_prediction'), ` +
          `got use_flow_sigmas ${c.use_flow_sigmas}, prediction_type '${c.prediction_type}'`,
      );
    }
    if (!c.predict_x0) fail('predict_x0 false does not support flow_prediction');
    const unsupported = (['thresholding', 'use_karras_sigmas', 'use_exponential_sigmas', 'use_beta_sigmas'] as const).filter((k) => c[k]);
    if (unsupported.length) fail(`${unsupported.join(', ')} not supported`);
    if (c.solver_p !== null) fail('solver_p (another scheduler as the predictor) is not supported');
    if (BH2_ALIASES.includes(c.solver_type)) c.solver_type = 'bh2';
    if (c.solver_type !== 'bh1' && c.solver_type !== 'bh2') fail(`solver_type must be 'bh1' or 'bh2', got '${c.solver_type}'`);
    if (!(Number.isInteger(c.solver_order) && c.solver_order >= 1)) fail(`solver_order must be a positive integer, got ${c.solver_order}`);
    if (c.final_sigmas_type !== 'zero' && c.final_sigmas_type !== 'sigma_min') {
      fail(`final_sigmas_type must be 'zero' or 'sigma_min', got '${c.final_sigmas_type}'`);
    }
    if (c.time_shift_type !== 'exponential' && c.time_shift_type !== 'linear') {
      fail(`time_shift_type must be 'exponential' or 'linear', got '${c.time_shift_type}'`);
    }
    if (!['linspace', 'leading', 'trailing'].includes(c.timestep_spacing)) {
      fail(`timestep_spacing must be 'linspace', 'leading' or 'trailing', got '${c.timestep_spacing}'`);
    }
    if (!(Number.isInteger(c.num_train_timesteps) && c.num_train_timesteps > 0)) {
      fail(`num_train_timesteps must be a positive integer, got ${c.num_train_timesteps}`);
    }
  }

  /** Reads `scheduler_config.json` of a pipeline's `scheduler/` folder. */
  static fromFolder(dir: string): UniPCMultistepScheduler {
    const path = join(dir, 'scheduler_config.json');
    return new UniPCMultistepScheduler(typedConfig(readJsonObject(path), path, ['UniPCMultistepScheduler'], UNIPC_MULTISTEP_DEFAULTS));
  }

  /** diffusers' set_timesteps: a fresh schedule with its own solver state, for one run. */
  schedule(opts: UniPCScheduleOptions): UniPCSchedule {
    const c = this.config;
    const n = c.num_train_timesteps;
    const steps = opts.numInferenceSteps;
    if (!Number.isInteger(steps) || steps < 1)
      throw new TypeError(`UniPCMultistepScheduler.schedule: numInferenceSteps must be a positive integer, got ${steps}`);
    if (c.use_dynamic_shifting && opts.mu === undefined) throw new TypeError('UniPCMultistepScheduler.schedule: mu is required with use_dynamic_shifting');

    let s = linspace(1, 1 / n, steps + 1).slice(0, steps);
    if (c.use_dynamic_shifting) {
      const mu = opts.mu as number;
      s = s.map((x) => (c.time_shift_type === 'linear' ? mu / (mu + (1 / x - 1)) : Math.exp(mu) / (Math.exp(mu) + (1 / x - 1))));
    } else {
      s = s.map((x) => (c.flow_shift * x) / (1 + (c.flow_shift - 1) * x));
    }
    if (c.shift_terminal) {
      const scale = (1 - s[s.length - 1]) / (1 - c.shift_terminal);
      s = s.map((x) => 1 - (1 - x) / scale);
    }
    // A first sigma of exactly 1 would make alpha = 1 - sigma zero and its log infinite.
    const eps = 1e-6;
    if (Math.abs(s[0] - 1) < eps) s[0] -= eps;
    // diffusers converts the float64 timesteps to int64, truncating.
    const timesteps = Float32Array.from(s, (x) => Math.trunc(x * n));
    const sigmas = Float32Array.from([...s, c.final_sigmas_type === 'zero' ? 0 : s[s.length - 1]]);
    return new UniPCSchedule(timesteps, sigmas, {
      order: c.solver_order,
      bh1: c.solver_type === 'bh1',
      lowerOrderFinal: c.lower_order_final,
      disableCorrector: c.disable_corrector,
    });
  }
}

export interface UniPCSolverSettings {
  /** solver_order. */
  order: number;
  /** solver_type 'bh1' (B(h) = h) rather than 'bh2' (B(h) = e^h - 1). */
  bh1: boolean;
  lowerOrderFinal: boolean;
  /** Steps whose following corrector is skipped (diffusers' disable_corrector). */
  disableCorrector: readonly number[];
}

/** log(alpha) - log(sigma) of a flow sigma (alpha = 1 - sigma), in float32. */
function lambdaOf(sigma: number): number {
  return f32(f32(Math.log(f32(1 - sigma))) - f32(Math.log(sigma)));
}

/**
 * One UniPC run: the schedule and the solver state (recent x0 predictions and the last sample),
 * which `step` advances. Steps must be taken in order from 0. The tensors it keeps between steps
 * are its own, outside every scope; `dispose()` frees them.
 */
export class UniPCSchedule implements SamplingSchedule, Disposable {
  readonly timesteps: Float32Array;
  readonly sigmas: Float32Array;
  readonly settings: UniPCSolverSettings;
  /** The x0 predictions of the last `order` steps, oldest first. */
  private readonly history: Tensor[] = [];
  private lastSample: Tensor | null = null;
  private lowerOrderNums = 0;
  private thisOrder = 1;
  private nextStep = 0;

  constructor(timesteps: Float32Array, sigmas: Float32Array, settings: UniPCSolverSettings) {
    if (sigmas.length !== timesteps.length + 1) {
      throw new TypeError(`UniPCSchedule: ${sigmas.length} sigmas for ${timesteps.length} timesteps (need one more)`);
    }
    this.timesteps = timesteps;
    this.sigmas = sigmas;
    this.settings = settings;
  }

  get length(): number {
    return this.timesteps.length;
  }

  /** Corrects `sample` with this step's prediction (UniC), then predicts the next sample (UniP). */
  step(index: number, modelOutput: Tensor, sample: Tensor): Tensor {
    if (index !== this.nextStep || index >= this.length) {
      throw new RangeError(`UniPCSchedule.step: expected step ${this.nextStep} of 0..${this.length - 1} (UniPC steps run in order, once each), got ${index}`);
    }
    const { order, lowerOrderFinal, disableCorrector } = this.settings;
    const x0 = tidy(() => sub(sample, mul(modelOutput, roundTo(this.sigmas[index], modelOutput.dtype)))).keep();
    const correct = index > 0 && !disableCorrector.includes(index - 1) && this.lastSample !== null;
    const current = (correct ? tidy(() => this.corrector(index, x0)) : sample.clone()).keep();

    this.history.push(x0);
    if (this.history.length > order) this.history.shift()?.dispose();
    // Lower orders while the history fills up and, with lower_order_final, in the last steps.
    this.thisOrder = Math.min(lowerOrderFinal ? Math.min(order, this.length - index) : order, this.lowerOrderNums + 1);
    this.lastSample?.dispose();
    this.lastSample = current;

    const next = tidy(() => this.predictor(index, current));
    this.lowerOrderNums = Math.min(this.lowerOrderNums + 1, order);
    this.nextStep += 1;
    return next;
  }

  dispose(): void {
    for (const t of this.history) t.dispose();
    this.history.length = 0;
    this.lastSample?.dispose();
    this.lastSample = null;
  }
  [Symbol.dispose](): void {
    this.dispose();
  }

  /** UniP-p (B(h) version): from the sample at sigma[index] to one at sigma[index + 1]. */
  private predictor(index: number, x: Tensor): Tensor {
    const order = this.thisOrder;
    const { terms, alphaT, hPhi1, bH, R, b } = this.expansion(index + 1, index, order, (i) => index - i);
    const base = sub(mul(x, f32(this.sigmas[index + 1] / this.sigmas[index])), mul(this.newest(0), f32(alphaT * hPhi1)));
    if (terms.length === 0) return base;
    // diffusers fixes the solution of the 1x1 system of order 2 at 0.5.
    const rhos =
      order === 2
        ? [0.5]
        : solveFloat32(
            R.slice(0, -1).map((row) => row.slice(0, -1)),
            b.slice(0, -1),
          );
    return sub(base, mul(weightedSum(rhos, terms), f32(alphaT * bH)));
  }

  /** UniC-p (B(h) version): corrects the sample at sigma[index] with the model's x0 there. */
  private corrector(index: number, x0: Tensor): Tensor {
    const order = this.thisOrder;
    const { terms, alphaT, hPhi1, bH, R, b } = this.expansion(index, index - 1, order, (i) => index - (i + 1));
    const m0 = this.newest(0);
    const base = sub(mul(this.lastSample as Tensor, f32(this.sigmas[index] / this.sigmas[index - 1])), mul(m0, f32(alphaT * hPhi1)));
    const rhos = order === 1 ? [0.5] : solveFloat32(R, b);
    let correction = mul(sub(x0, m0), rhos[rhos.length - 1]);
    if (terms.length) correction = add(weightedSum(rhos.slice(0, -1), terms), correction);
    return sub(base, mul(correction, f32(alphaT * bH)));
  }

  /** The x0 prediction `age` steps before the newest one in the history. */
  private newest(age: number): Tensor {
    return this.history[this.history.length - 1 - age];
  }

  /**
   * What both updates share for a step from sigma[from] (s0) towards sigma[to] (t): the scaled
   * differences to older x0 predictions (D1s; `older(i)` is the sigma index of the i-th older
   * one) and the coefficients of the B(h) expansion: R (powers of the step ratios r_k) and b.
   */
  private expansion(to: number, from: number, order: number, older: (i: number) => number) {
    const sigmaT = this.sigmas[to];
    const lambdaS0 = lambdaOf(this.sigmas[from]);
    const h = f32(lambdaOf(sigmaT) - lambdaS0);
    const m0 = this.newest(0);
    const rks: number[] = [];
    const terms: Tensor[] = [];
    for (let i = 1; i < order; ++i) {
      const rk = f32(f32(lambdaOf(this.sigmas[older(i)]) - lambdaS0) / h);
      rks.push(rk);
      terms.push(div(sub(this.newest(i), m0), rk));
    }
    rks.push(1);
    // The expansion runs in -h because the updates are on x0 (predict_x0).
    const hh = f32(-h);
    const hPhi1 = f32(Math.expm1(hh));
    const bH = this.settings.bh1 ? hh : hPhi1;
    let hPhiK = f32(f32(hPhi1 / hh) - 1);
    let factorial = 1;
    const R: number[][] = [];
    const b: number[] = [];
    for (let i = 1; i <= order; ++i) {
      R.push(rks.map((r) => f32(r ** (i - 1))));
      b.push(f32(f32(hPhiK * factorial) / bH));
      factorial *= i + 1;
      hPhiK = f32(f32(hPhiK / hh) - f32(1 / factorial));
    }
    return { terms, alphaT: f32(1 - sigmaT), hPhi1, bH, R, b };
  }
}

/**
 * A float32 scalar as torch has it when a 0-d float32 tensor multiplies a tensor of `dtype`
 * (`sigma_t * model_output`): rounded to that dtype first.
 */
function roundTo(x: number, dtype: DType): number {
  if (dtype === 'float32') return x;
  return tidy(() => tensor(Float32Array.of(x), [1]).cast(dtype).toFloat32Array()[0]);
}

/** sum_k weights[k] * terms[k] (diffusers' einsum over the difference terms). */
function weightedSum(weights: readonly number[], terms: readonly Tensor[]): Tensor {
  let acc = mul(terms[0], weights[0]);
  for (let k = 1; k < terms.length; ++k) acc = add(acc, mul(terms[k], weights[k]));
  return acc;
}

/**
 * A x = b in float32 by LU with partial pivoting, in the order LAPACK's sgesv works (pivot rows
 * scaled by the pivot's reciprocal), as torch.linalg.solve does for diffusers' float32 system.
 */
export function solveFloat32(matrix: readonly (readonly number[])[], rhs: readonly number[]): number[] {
  const n = rhs.length;
  const a = matrix.map((row) => row.map(f32));
  const x = rhs.map(f32);
  for (let k = 0; k < n; ++k) {
    let pivot = k;
    for (let i = k + 1; i < n; ++i) if (Math.abs(a[i][k]) > Math.abs(a[pivot][k])) pivot = i;
    if (a[pivot][k] === 0 || !Number.isFinite(a[pivot][k])) throw new RangeError(`solveFloat32: the ${n}x${n} system is singular`);
    [a[k], a[pivot]] = [a[pivot], a[k]];
    [x[k], x[pivot]] = [x[pivot], x[k]];
    const reciprocal = f32(1 / a[k][k]);
    for (let i = k + 1; i < n; ++i) {
      a[i][k] = f32(a[i][k] * reciprocal);
      for (let j = k + 1; j < n; ++j) a[i][j] = f32(a[i][j] - f32(a[i][k] * a[k][j]));
    }
  }
  for (let i = 0; i < n; ++i) for (let k = 0; k < i; ++k) x[i] = f32(x[i] - f32(a[i][k] * x[k]));
  for (let i = n - 1; i >= 0; --i) {
    x[i] = f32(x[i] / a[i][i]);
    for (let k = 0; k < i; ++k) x[k] = f32(x[k] - f32(x[i] * a[k][i]));
  }
  return x;
}
