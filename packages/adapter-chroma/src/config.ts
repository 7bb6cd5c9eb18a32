// The transformer config of a diffusers Chroma folder, typed and checked.
import { WeightFolder } from '@ditcache/cuda-runtime';

/** diffusers' ChromaTransformer2DModel defaults (the Chroma1 architecture). */
export const CHROMA_TRANSFORMER_DEFAULTS = {
  patch_size: 1,
  in_channels: 64,
  out_channels: null as number | null,
  num_layers: 19,
  num_single_layers: 38,
  attention_head_dim: 128,
  num_attention_heads: 24,
  joint_attention_dim: 4096,
  axes_dims_rope: [16, 56, 56] as number[],
  approximator_num_channels: 64,
  approximator_hidden_dim: 5120,
  approximator_layers: 5,
};

export type ChromaTransformerConfig = typeof CHROMA_TRANSFORMER_DEFAULTS & { ignoredKeys: string[] };

/**
 * Rows of the modulation table the distilled guidance layer makes: 3 per single-stream block,
 * 6 per stream of each double-stream block, and shift and scale of the output norm.
 */
export function modulationRows(c: Pick<ChromaTransformerConfig, 'num_layers' | 'num_single_layers'>): number {
  return 3 * c.num_single_layers + 2 * 6 * c.num_layers + 2;
}

/** The checked config.json of an open Chroma transformer folder. */
export function readChromaTransformerConfig(folder: WeightFolder): ChromaTransformerConfig {
  const cfg = folder.typedConfig(['ChromaTransformer2DModel'], CHROMA_TRANSFORMER_DEFAULTS);
  const fail = (what: string): never => {
    throw new TypeError(`${folder.dir}/config.json: ${what}`);
  };
  const rope = cfg.axes_dims_rope.reduce((a, b) => a + b, 0);
  if (rope !== cfg.attention_head_dim) fail(`axes_dims_rope sum to ${rope} but attention_head_dim is ${cfg.attention_head_dim}`);
  if (cfg.axes_dims_rope.some((d) => d % 2 !== 0)) fail(`every axes_dims_rope entry must be even, got [${cfg.axes_dims_rope.join(', ')}]`);
  // The timestep, the (zero) guidance and the modulation index each get a sinusoidal quarter or half.
  if (cfg.approximator_num_channels % 8 !== 0) fail(`approximator_num_channels must be a multiple of 8, got ${cfg.approximator_num_channels}`);
  return cfg;
}

/** Reads the config.json of a Chroma `transformer/` folder. */
export function loadChromaTransformerConfig(dir: string): ChromaTransformerConfig {
  using folder = new WeightFolder(dir);
  return readChromaTransformerConfig(folder);
}
