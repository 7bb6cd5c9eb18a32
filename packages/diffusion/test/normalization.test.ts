// The adaptive norms and SD3's patch embedding against the formulas written out in float64.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { WeightFolder, memoryStats, saveSafetensors, tensor, type Tensor } from '@ditcache/cuda-runtime';

import { AdaLayerNormContinuous, AdaLayerNormZero, ParameterStore, PatchEmbed, WeightReader } from '../src/index.js';
import { scratchDir } from '../../../scripts/testing/scratch-dir.js';

/** Deterministic values in [-1, 1). */
function values(n: number, seed: number): number[] {
  let s = seed;
  return Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 31 - 1;
  });
}

/** A component folder holding `weights` (name -> [shape, seed]). */
function folderWith(weights: Record<string, number[]>): string {
  const dir = scratchDir('ditcache-norm-');
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ _class_name: 'Test' }));
  const tensors: Record<string, Tensor> = {};
  Object.entries(weights).forEach(
    ([name, shape], i) =>
      (tensors[name] = tensor(
        values(
          shape.reduce((a, b) => a * b, 1),
          11 + i,
        ),
        shape,
      )),
  );
  saveSafetensors(join(dir, 'model.safetensors'), tensors);
  for (const t of Object.values(tensors)) t.dispose();
  return dir;
}

const silu = (v: number) => v / (1 + Math.exp(-v));

/** rows (n, in) W^T + b with W (out, in). */
function linear(rows: number[][], w: number[], b: number[], out: number): number[][] {
  return rows.map((r) => Array.from({ length: out }, (_, o) => b[o] + r.reduce((s, v, i) => s + v * w[o * r.length + i], 0)));
}

function layerNorm(row: number[], eps: number): number[] {
  const mean = row.reduce((a, b) => a + b, 0) / row.length;
  const variance = row.reduce((a, b) => a + (b - mean) ** 2, 0) / row.length;
  return row.map((v) => (v - mean) / Math.sqrt(variance + eps));
}

function expectClose(actual: Tensor, expected: number[], tolerance = 1e-5): void {
  const got = actual.toFloat32Array();
  expect(got.length).toBe(expected.length);
  expected.forEach((v, i) => expect(Math.abs(got[i] - v)).toBeLessThan(tolerance));
}

describe('adaptive layer norms', () => {
  const [batch, tokens, dim, embDim] = [2, 3, 4, 5];
  const x = values(batch * tokens * dim, 3);
  const emb = values(batch * embDim, 4);
  const rowsOf = (flat: number[], width: number) => Array.from({ length: flat.length / width }, (_, i) => flat.slice(i * width, (i + 1) * width));
  /** The reference: LayerNorm(x) * (1 + scale) + shift per batch, with parameters part `k` of linear(silu(emb)). */
  const modulated = (params: number[][], parts: number, shiftAt: number, scaleAt: number, eps: number) =>
    rowsOf(x, dim).flatMap((row, r) => {
      const b = Math.floor(r / tokens);
      const part = (k: number) => params[b].slice(k * dim, (k + 1) * dim);
      expect(params[b].length).toBe(parts * dim);
      return layerNorm(row, eps).map((v, i) => v * (1 + part(scaleAt)[i]) + part(shiftAt)[i]);
    });

  it('AdaLayerNormZero: shift, scale and gate of attention, then of the MLP, from silu(emb)', () => {
    using folder = new WeightFolder(folderWith({ 'linear.weight': [6 * dim, embDim], 'linear.bias': [6 * dim] }));
    using store = new ParameterStore();
    const norm = AdaLayerNormZero.load(new WeightReader(folder, store), dim, embDim);
    using xt = tensor(x, [batch, tokens, dim]);
    using et = tensor(emb, [batch, embDim]);
    const before = memoryStats();
    const out = norm.forward(xt, et);
    const params = linear(
      rowsOf(emb, embDim).map((r) => r.map(silu)),
      [...norm.linear.weight.toFloat32Array()],
      [...norm.linear.bias!.toFloat32Array()],
      6 * dim,
    );
    expectClose(out.normed, modulated(params, 6, 0, 1, 1e-6));
    const partOf = (k: number) => params.flatMap((p) => p.slice(k * dim, (k + 1) * dim));
    expectClose(out.gateMsa, partOf(2));
    expectClose(out.shiftMlp, partOf(3));
    expectClose(out.scaleMlp, partOf(4));
    expectClose(out.gateMlp, partOf(5));
    // The call leaves behind only what it returns.
    for (const t of Object.values(out)) t.dispose();
    expect(memoryStats()).toEqual(before);
  });

  it('AdaLayerNormContinuous: scale first, then shift', () => {
    using folder = new WeightFolder(folderWith({ 'linear.weight': [2 * dim, embDim], 'linear.bias': [2 * dim] }));
    using store = new ParameterStore();
    const norm = AdaLayerNormContinuous.load(new WeightReader(folder, store), dim, 1e-6, embDim);
    using xt = tensor(x, [batch, tokens, dim]);
    using et = tensor(emb, [batch, embDim]);
    using out = norm.forward(xt, et);
    const params = linear(
      rowsOf(emb, embDim).map((r) => r.map(silu)),
      [...norm.linear.weight.toFloat32Array()],
      [...norm.linear.bias!.toFloat32Array()],
      2 * dim,
    );
    expectClose(out, modulated(params, 2, 1, 0, 1e-6));
  });
});

describe('PatchEmbed', () => {
  const [p, channels, dim, max] = [2, 3, 4, 5];
  const store = new ParameterStore();
  let embed: PatchEmbed;
  beforeAll(() => {
    using folder = new WeightFolder(folderWith({ 'proj.weight': [dim, channels, p, p], 'proj.bias': [dim], pos_embed: [1, max * max, dim] }));
    embed = PatchEmbed.load(new WeightReader(folder, store), { patchSize: p, inChannels: channels, embedDim: dim, posEmbedMaxSize: max });
  });
  afterAll(() => store.dispose());

  it('cuts latents into patch tokens row by row and adds the centred crop of the positional grid', () => {
    const [batch, height, width] = [2, 4, 8];
    const latents = values(batch * channels * height * width, 9);
    using input = tensor(latents, [batch, channels, height, width]);
    using out = embed.forward(input);
    expect([...out.shape]).toEqual([batch, (height / p) * (width / p), dim]);
    const w = embed.proj.weight.toFloat32Array();
    const bias = embed.proj.bias!.toFloat32Array();
    const pos = embed.posEmbed.toFloat32Array();
    const [rows, columns] = [height / p, width / p];
    // A 2 x 4 crop of the 5 x 5 grid starts at row floor(3 / 2) = 1, column floor(1 / 2) = 0.
    const [top, left] = [1, 0];
    const expected: number[] = [];
    for (let b = 0; b < batch; b++) {
      for (let r = 0; r < rows; r++) {
        for (let c = 0; c < columns; c++) {
          for (let d = 0; d < dim; d++) {
            let s = bias[d];
            for (let ch = 0; ch < channels; ch++) {
              for (let i = 0; i < p; i++) {
                for (let j = 0; j < p; j++) {
                  s += w[((d * channels + ch) * p + i) * p + j] * latents[((b * channels + ch) * height + r * p + i) * width + c * p + j];
                }
              }
            }
            expected.push(s + pos[((top + r) * max + left + c) * dim + d]);
          }
        }
      }
    }
    expectClose(out, expected);
  });

  it('refuses latents that are no whole patches or more patches than the grid has', () => {
    using odd = tensor(values(channels * 3 * 4, 1), [1, channels, 3, 4]);
    expect(() => embed.forward(odd)).toThrow(/latents 3x4 are not multiples of the patch size 2/);
    using wide = tensor(values(channels * 2 * 12, 1), [1, channels, 2, 12]);
    expect(() => embed.forward(wide)).toThrow(/make 1x6 patches, more than the 5x5 positional embeddings \(pos_embed_max_size\)/);
  });
});
