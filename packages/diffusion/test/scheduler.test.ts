import { describe, expect, it } from 'vitest';

import { full, loadSafetensors } from '@ditcache/cuda-runtime';

import { ConfigError, FlowMatchEulerDiscreteScheduler, FlowMatchSchedule, calculateShift, linspace } from '../src/index.js';
import { goldens, relativeL2Values } from './helpers.js';

/** Largest |a - e| / |e| (float32 rounding of float64 math stays below ~1e-7). */
function worstRelative(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  expect(actual.length).toBe(expected.length);
  let worst = 0;
  for (let i = 0; i < expected.length; ++i) {
    const e = expected[i];
    worst = Math.max(worst, e === 0 ? Math.abs(actual[i]) : Math.abs(actual[i] - e) / Math.abs(e));
  }
  return worst;
}

describe('calculateShift', () => {
  it('is linear from (base len, base shift) to (max len, max shift)', () => {
    expect(calculateShift(256)).toBeCloseTo(0.5, 14);
    expect(calculateShift(4096)).toBeCloseTo(1.15, 14);
    expect(calculateShift(2176)).toBeCloseTo(0.825, 14);
    expect(calculateShift(64, 16, 256, 0.5, 1.15)).toBeCloseTo(0.5 + (0.65 * 48) / 240, 14);
  });
});

describe('FlowMatchEulerDiscreteScheduler against float64 math', () => {
  it('shifts statically: shift * s / (1 + (shift - 1) * s) over linspace(sigma_max, sigma_min)', () => {
    const shift = 3;
    const scheduler = new FlowMatchEulerDiscreteScheduler({ shift });
    const shifted = (s: number): number => (shift * s) / (1 + (shift - 1) * s);
    expect(scheduler.sigmaMax).toBe(1);
    expect(scheduler.sigmaMin).toBeCloseTo(shifted(0.001), 7);
    const schedule = scheduler.schedule({ numInferenceSteps: 10 });
    const expected = linspace(1, shifted(0.001), 10).map(shifted);
    expect(worstRelative(schedule.sigmas.subarray(0, 10), expected)).toBeLessThan(2e-7);
    expect(schedule.sigmas[10]).toBe(0);
    expect(
      worstRelative(
        schedule.timesteps,
        expected.map((s) => s * 1000),
      ),
    ).toBeLessThan(2e-7);
  });

  it('shifts dynamically: exp(mu) / (exp(mu) + 1 / s - 1), and linearly: mu / (mu + 1 / s - 1)', () => {
    const sigmas = linspace(1, 1 / 8, 8);
    const mu = 0.93;
    const exponential = new FlowMatchEulerDiscreteScheduler({ use_dynamic_shifting: true }).schedule({ sigmas, mu });
    expect(
      worstRelative(
        exponential.sigmas.subarray(0, 8),
        sigmas.map((s) => Math.exp(mu) / (Math.exp(mu) + 1 / s - 1)),
      ),
    ).toBeLessThan(4e-7);
    const linear = new FlowMatchEulerDiscreteScheduler({ use_dynamic_shifting: true, time_shift_type: 'linear' }).schedule({ sigmas, mu });
    expect(
      worstRelative(
        linear.sigmas.subarray(0, 8),
        sigmas.map((s) => mu / (mu + 1 / s - 1)),
      ),
    ).toBeLessThan(4e-7);
  });

  it('stretches to shift_terminal and inverts sigmas', () => {
    const terminal = 0.1;
    const schedule = new FlowMatchEulerDiscreteScheduler({ shift: 2, shift_terminal: terminal }).schedule({ numInferenceSteps: 6 });
    const shifted = (s: number): number => (2 * s) / (1 + s);
    const base = linspace(1, shifted(0.001), 6).map(shifted);
    const scale = (1 - base[5]) / (1 - terminal);
    expect(
      worstRelative(
        schedule.sigmas.subarray(0, 6),
        base.map((s) => 1 - (1 - s) / scale),
      ),
    ).toBeLessThan(2e-7);
    expect(schedule.sigmas[5]).toBeCloseTo(terminal, 6);

    const inverted = new FlowMatchEulerDiscreteScheduler({ invert_sigmas: true }).schedule({ sigmas: [1, 0.75, 0.5, 0.25] });
    expect([...inverted.sigmas]).toEqual([0, 0.25, 0.5, 0.75, 1]);
    expect([...inverted.timesteps]).toEqual([0, 250, 500, 750]);
  });

  it('takes custom timesteps', () => {
    const schedule = new FlowMatchEulerDiscreteScheduler().schedule({ timesteps: [900, 600, 300] });
    expect(worstRelative(schedule.sigmas, [0.9, 0.6, 0.3, 0])).toBeLessThan(1e-7);
  });

  it('steps x + (sigma_next - sigma) * v', () => {
    const schedule = new FlowMatchSchedule(Float32Array.of(1000, 600), Float32Array.of(1, 0.6, 0));
    using x = full([2, 3], 0.5);
    using v = full([2, 3], -2);
    using first = schedule.step(0, v, x);
    expect(worstRelative(first.toFloat32Array(), Array(6).fill(0.5 + (0.6 - 1) * -2))).toBeLessThan(1e-7);
    using second = schedule.step(1, v, first);
    expect(worstRelative(second.toFloat32Array(), Array(6).fill(1.3 + (0 - 0.6) * -2))).toBeLessThan(1e-7);
    expect(() => schedule.step(2, v, x)).toThrow(/step 2 is outside 0..1/);
  });
});

describe('FlowMatchEulerDiscreteScheduler against diffusers', () => {
  it.each([
    ['flux-tiny', 20],
    ['flux-tiny-guidance', 12],
  ])('gives %s its timesteps and sigmas (dynamic shifting, FluxPipeline sigmas)', (set, steps) => {
    const ref = loadSafetensors(`${goldens}/${set}/pipeline.safetensors`);
    const scheduler = FlowMatchEulerDiscreteScheduler.fromFolder(`${goldens}/${set}/scheduler`);
    const schedule = scheduler.schedule({ numInferenceSteps: steps, sigmas: linspace(1, 1 / steps, steps), mu: scheduler.dynamicShiftMu(64) });
    expect(relativeL2Values(schedule.timesteps, ref.timesteps.toFloat32Array())).toBeLessThan(1e-6);
    expect(relativeL2Values(schedule.sigmas, ref.sigmas.toFloat32Array())).toBeLessThan(1e-6);
    for (const t of Object.values(ref)) t.dispose();
  });

  it.each([
    ['wan-tiny', 16],
    ['hidream-tiny', 16],
  ])('gives %s its timesteps and sigmas (static shift, linspace over the training range)', (set, steps) => {
    const ref = loadSafetensors(`${goldens}/${set}/pipeline.safetensors`);
    const schedule = FlowMatchEulerDiscreteScheduler.fromFolder(`${goldens}/${set}/scheduler`).schedule({ numInferenceSteps: steps });
    expect(relativeL2Values(schedule.timesteps, ref.timesteps.toFloat32Array())).toBeLessThan(1e-6);
    expect(relativeL2Values(schedule.sigmas, ref.sigmas.toFloat32Array())).toBeLessThan(1e-6);
    for (const t of Object.values(ref)) t.dispose();
  });
});

describe('FlowMatchEulerDiscreteScheduler errors', () => {
  it('names what is missing or unsupported', () => {
    expect(() => new FlowMatchEulerDiscreteScheduler({ use_dynamic_shifting: true }).schedule({ numInferenceSteps: 4 })).toThrow(/mu is required/);
    expect(() => new FlowMatchEulerDiscreteScheduler({ use_karras_sigmas: true })).toThrow(ConfigError);
    expect(() => new FlowMatchEulerDiscreteScheduler().schedule({ numInferenceSteps: 3, sigmas: [1, 0.5] })).toThrow(/2 custom values for 3 steps/);
    expect(() => new FlowMatchEulerDiscreteScheduler().schedule({})).toThrow(/numInferenceSteps must be a positive integer/);
    expect(() => FlowMatchEulerDiscreteScheduler.fromFolder(`${goldens}/wan-tiny/wan22/scheduler`)).toThrow(
      /describes a UniPCMultistepScheduler, not a FlowMatchEulerDiscreteScheduler/,
    );
    expect(() => FlowMatchEulerDiscreteScheduler.fromFolder(`${goldens}/flux-tiny/nothing`)).toThrow(/scheduler_config.json: no such file/);
  });
});
