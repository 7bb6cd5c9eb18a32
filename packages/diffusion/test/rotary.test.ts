import { describe, expect, it } from 'vitest';

import { multiAxisRotaryTables } from '../src/index.js';

describe('multiAxisRotaryTables', () => {
  it("gives each axis its slice with diffusers' frequencies, every value repeated for its channel pair", () => {
    const axesDims = [2, 4, 6];
    const positions = [0, 0, 0, 0, 3, 5, 1, 7, 2];
    const theta = 100;
    const { cos, sin } = multiAxisRotaryTables(positions, axesDims, { theta });
    expect(cos.shape).toEqual([3, 12]);
    const [c, s] = [cos.toFloat32Array(), sin.toFloat32Array()];
    // float64 reference: channel pair j of axis a rotates by position * theta^(-2j / dim).
    for (let token = 0; token < 3; ++token) {
      let channel = 0;
      for (const [axis, dim] of axesDims.entries()) {
        for (let j = 0; j < dim / 2; ++j, channel += 2) {
          const angle = positions[token * 3 + axis] * theta ** (-(2 * j) / dim);
          for (const k of [channel, channel + 1]) {
            expect(c[token * 12 + k]).toBeCloseTo(Math.cos(angle), 6);
            expect(s[token * 12 + k]).toBeCloseTo(Math.sin(angle), 6);
          }
        }
      }
    }
    cos.dispose();
    sin.dispose();
  });

  it('names what is wrong with the positions or the axes', () => {
    expect(() => multiAxisRotaryTables([0, 1, 2, 3, 4], [2, 2])).toThrow('multiAxisRotaryTables: 5 ids are not rows of 2');
    expect(() => multiAxisRotaryTables([0, 1], [2, 3])).toThrow('every axis dim must be an even integer >= 2, got [2, 3]');
    expect(() => multiAxisRotaryTables([], [])).toThrow('every axis dim must be an even integer >= 2, got []');
  });
});
