import { describe, expect, it } from 'vitest';

import { add, loadSafetensors, memoryStats, mul, tensor, tidy, type Tensor } from '@ditcache/cuda-runtime';

import { ConfigError, UniPCMultistepScheduler, linspace } from '../src/index.js';
import { goldens, relativeL2Values } from './helpers.js';

/** The flow-matching form Wan uses. */
const FLOW = { prediction_type: 'flow_prediction', use_flow_sigmas: true, flow_shift: 8 } as const;

describe('UniPCMultistepScheduler schedule', () => {
  it('gives wan-tiny/wan22 its integer timesteps and sigmas', () => {
    const ref = loadSafetensors(`${goldens}/wan-tiny/wan22/pipeline.safetensors`);
    using schedule = UniPCMultistepScheduler.fromFolder(`${goldens}/wan-tiny/wan22/scheduler`).schedule({ numInferenceSteps: 16 });
    expect([...schedule.timesteps]).toEqual([...ref.timesteps.toFloat32Array()]);
    expect([...schedule.sigmas]).toEqual([...ref.sigmas.toFloat32Array()]);
    for (const t of Object.values(ref)) t.dispose();
  });

  it('shifts linspace(1, 1 / N) by flow_shift, nudges a first sigma of 1 below it and truncates the timesteps', () => {
    using schedule = new UniPCMultistepScheduler({ ...FLOW, flow_shift: 3 }).schedule({ numInferenceSteps: 5 });
    const sigmas = linspace(1, 1 / 1000, 6)
      .slice(0, 5)
      .map((s) => (3 * s) / (1 + 2 * s));
    sigmas[0] -= 1e-6;
    expect(relativeL2Values(schedule.sigmas, Float32Array.from([...sigmas, 0]))).toBeLessThan(1e-7);
    expect([...schedule.timesteps]).toEqual(sigmas.map((s) => Math.trunc(s * 1000)));
  });
});

describe('UniPCSchedule step', () => {
  it('is the flow Euler step x + (sigma_next - sigma) v at order 1 without the corrector', () => {
    using schedule = new UniPCMultistepScheduler({ ...FLOW, solver_order: 1, disable_corrector: [0, 1, 2] }).schedule({ numInferenceSteps: 4 });
    const values = Array.from({ length: 24 }, (_, i) => Math.sin(i) * 2);
    let x = tensor(values, [2, 3, 4]);
    const expected = [...values];
    for (let step = 0; step < 4; ++step) {
      const velocity = tidy(() => add(mul(x, 0.3), 1));
      const v = velocity.toFloat32Array();
      const dt = schedule.sigmas[step + 1] - schedule.sigmas[step];
      for (let i = 0; i < expected.length; ++i) expected[i] = Math.fround(expected[i]) + dt * v[i];
      const next = schedule.step(step, velocity, x);
      for (const t of [x, velocity]) t.dispose();
      x = next;
      expect(relativeL2Values(x.toFloat32Array(), Float32Array.from(expected))).toBeLessThan(1e-6);
    }
    x.dispose();
  });

  it('runs its steps in order, and frees what it keeps between steps on dispose', () => {
    const before = memoryStats();
    const schedule = new UniPCMultistepScheduler(FLOW).schedule({ numInferenceSteps: 3 });
    let x: Tensor = tensor([0.5, -1, 2, 0.25], [1, 4]);
    for (let step = 0; step < 3; ++step) {
      const next = tidy(() => schedule.step(step, mul(x, -0.5), x));
      x.dispose();
      x = next;
    }
    expect(() => schedule.step(3, x, x)).toThrow(/expected step 3 of 0..2/);
    x.dispose();
    schedule.dispose();
    expect(memoryStats()).toEqual(before);
    using fresh = new UniPCMultistepScheduler(FLOW).schedule({ numInferenceSteps: 3 });
    using y = tensor([1, 2]);
    expect(() => fresh.step(1, y, y)).toThrow(/expected step 0 of 0..2 \(UniPC steps run in order, once each\), got 1/);
  });
});

describe('UniPCMultistepScheduler errors', () => {
  it('refuses what it does not implement, and another scheduler class', () => {
    expect(() => new UniPCMultistepScheduler()).toThrow(/only the flow-matching form is supported .* got use_flow_sigmas false, prediction_type 'epsilon'/);
    expect(() => new UniPCMultistepScheduler({ ...FLOW, thresholding: true })).toThrow(ConfigError);
    expect(() => new UniPCMultistepScheduler({ ...FLOW, use_karras_sigmas: true })).toThrow(/use_karras_sigmas not supported/);
    expect(() => new UniPCMultistepScheduler({ ...FLOW, predict_x0: false })).toThrow(/predict_x0 false/);
    expect(() => new UniPCMultistepScheduler({ ...FLOW, solver_type: 'bh3' })).toThrow(/solver_type must be 'bh1' or 'bh2', got 'bh3'/);
    expect(new UniPCMultistepScheduler({ ...FLOW, solver_type: 'midpoint' }).config.solver_type).toBe('bh2');
    expect(() => new UniPCMultistepScheduler({ ...FLOW, final_sigmas_type: 'last' })).toThrow(/final_sigmas_type/);
    expect(() => new UniPCMultistepScheduler({ ...FLOW, use_dynamic_shifting: true }).schedule({ numInferenceSteps: 4 })).toThrow(/mu is required/);
    expect(() => new UniPCMultistepScheduler(FLOW).schedule({ numInferenceSteps: 0 })).toThrow(/numInferenceSteps must be a positive integer/);
    expect(() => UniPCMultistepScheduler.fromFolder(`${goldens}/wan-tiny/scheduler`)).toThrow(
      /describes a FlowMatchEulerDiscreteScheduler, not a UniPCMultistepScheduler/,
    );
  });
});
