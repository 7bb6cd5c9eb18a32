// The rotary position embedding of decoder LLMs (transformers' LlamaRotaryEmbedding and its
// Qwen2.5-VL multimodal form on text): inverse frequencies from rope_theta, optionally rescaled by
// Llama 3.1's "llama3" rule, and cos / sin tables in rotate_half layout (each frequency twice, the
// halves concatenated). Every step is rounded to float32 where torch computes in float32, so the
// tables equal transformers'. On text, Qwen2.5-VL's three position axes hold the same positions,
// so its mrope sections pick identical values and the tables are the plain ones.
import { tensor, type Device, type Tensor } from '@ditcache/cuda-runtime';
import { ConfigError } from '@ditcache/diffusion';

import type { TransformersConfig } from './transformers-config.js';

const f = Math.fround;

/** Llama 3.1's frequency rescaling (transformers' rope_type 'llama3'). */
export interface Llama3Scaling {
  factor: number;
  lowFreqFactor: number;
  highFreqFactor: number;
  originalMaxPositionEmbeddings: number;
}

export interface DecoderRotaryConfig {
  theta: number;
  /** Rotated channels per head (head_dim). */
  dim: number;
  llama3: Llama3Scaling | null;
}

/** The rope types this runs on text, by transformers' names. */
const ROPE_TYPES = ['default', 'llama3', 'mrope'];

/**
 * The rotary settings of a config: transformers 5 writes `rope_parameters` (theta inside),
 * earlier versions `rope_theta` with an optional `rope_scaling`; both are read.
 */
export function decoderRotaryConfig(cfg: TransformersConfig, dim: number, defaultTheta: number): DecoderRotaryConfig {
  const params = cfg.object('rope_parameters') ?? cfg.object('rope_scaling') ?? {};
  const theta = typeof params.rope_theta === 'number' ? params.rope_theta : cfg.number('rope_theta', defaultTheta);
  // Qwen2.5-VL's configs say {"type": "mrope", ...}, sometimes beside rope_type 'default'.
  const type = String(params.rope_type ?? params.type ?? 'default');
  if (!ROPE_TYPES.includes(type)) throw new ConfigError(`${cfg.where}: rope type '${type}' is not supported (supported: ${ROPE_TYPES.join(', ')})`);
  if (type !== 'llama3') return { theta, dim, llama3: null };
  const num = (key: string): number => {
    const v = params[key];
    if (typeof v !== 'number' || !Number.isFinite(v))
      throw new ConfigError(`${cfg.where}: llama3 rope scaling needs a number '${key}', got ${JSON.stringify(v)}`);
    return v;
  };
  return {
    theta,
    dim,
    llama3: {
      factor: num('factor'),
      lowFreqFactor: num('low_freq_factor'),
      highFreqFactor: num('high_freq_factor'),
      originalMaxPositionEmbeddings: num('original_max_position_embeddings'),
    },
  };
}

/** The dim / 2 inverse frequencies, in float32 as transformers computes them. */
export function inverseFrequencies(c: DecoderRotaryConfig): Float32Array {
  const half = c.dim / 2;
  const inv = new Float32Array(half);
  for (let i = 0; i < half; i++) inv[i] = f(1 / f(c.theta ** f((2 * i) / c.dim)));
  if (!c.llama3) return inv;
  const { factor, lowFreqFactor, highFreqFactor, originalMaxPositionEmbeddings: old } = c.llama3;
  const lowFreqWavelen = old / lowFreqFactor;
  const highFreqWavelen = old / highFreqFactor;
  for (let i = 0; i < half; i++) {
    const wavelen = f((2 * Math.PI) / inv[i]);
    // Long wavelengths are slowed by the factor, short ones kept, the band between blended.
    const scaled = wavelen > lowFreqWavelen ? f(inv[i] / factor) : inv[i];
    const medium = !(wavelen < highFreqWavelen) && !(wavelen > lowFreqWavelen);
    if (!medium) {
      inv[i] = scaled;
      continue;
    }
    const smooth = f(f(f(old / wavelen) - lowFreqFactor) / (highFreqFactor - lowFreqFactor));
    // transformers' (1 - smooth) * inv / factor + smooth * inv, evaluated left to right.
    inv[i] = f(f(f(f(1 - smooth) * scaled) / factor) + f(smooth * scaled));
  }
  return inv;
}

/** cos and sin, each (tokens, 1, dim) to broadcast over (B, tokens, heads, dim), for positions 0..tokens-1: the angles in float32, as transformers' float32 tables. */
export function decoderRotaryTables(c: DecoderRotaryConfig, tokens: number, device: Device): { cos: Tensor; sin: Tensor } {
  const inv = inverseFrequencies(c);
  const half = c.dim / 2;
  const cos = new Float32Array(tokens * c.dim);
  const sin = new Float32Array(tokens * c.dim);
  for (let p = 0; p < tokens; p++) {
    for (let i = 0; i < half; i++) {
      const angle = f(inv[i] * p);
      const at = p * c.dim + i;
      cos[at] = cos[at + half] = Math.cos(angle);
      sin[at] = sin[at + half] = Math.sin(angle);
    }
  }
  return { cos: tensor(cos, [tokens, 1, c.dim], { device }), sin: tensor(sin, [tokens, 1, c.dim], { device }) };
}
