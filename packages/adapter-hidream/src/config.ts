// The transformer config of a diffusers HiDream-I1 folder, typed and checked.
import { WeightFolder } from '@ditcache/cuda-runtime';

/** diffusers' HiDreamImageTransformer2DModel defaults. */
export const HIDREAM_TRANSFORMER_DEFAULTS = {
  patch_size: null as number | null,
  in_channels: 64,
  out_channels: null as number | null,
  num_layers: 16,
  num_single_layers: 32,
  attention_head_dim: 128,
  num_attention_heads: 20,
  caption_channels: null as number[] | null,
  text_emb_dim: 2048,
  num_routed_experts: 4,
  num_activated_experts: 2,
  axes_dims_rope: [32, 32] as number[],
  max_resolution: [128, 128] as number[],
  llama_layers: null as number[] | null,
  force_inference_output: false,
};

/** The checked config: the entries diffusers allows to be null are resolved. */
export type HiDreamTransformerConfig = Omit<typeof HIDREAM_TRANSFORMER_DEFAULTS, 'patch_size' | 'caption_channels' | 'llama_layers'> & {
  patch_size: number;
  /** [T5 width, Llama width]. */
  caption_channels: [number, number];
  /** The stacked Llama layer each block reads: double-stream blocks first, then single-stream ones. */
  llama_layers: number[];
  ignoredKeys: string[];
};

const isCount = (v: unknown): v is number => Number.isInteger(v) && (v as number) >= 0;
const isPositive = (v: unknown): v is number => isCount(v) && v > 0;

/** The checked config.json of an open HiDream transformer folder. */
export function readHiDreamTransformerConfig(folder: WeightFolder): HiDreamTransformerConfig {
  const cfg = folder.typedConfig(['HiDreamImageTransformer2DModel'], HIDREAM_TRANSFORMER_DEFAULTS);
  const fail = (what: string): never => {
    throw new TypeError(`${folder.dir}/config.json: ${what}`);
  };
  const json = JSON.stringify;
  if (!isPositive(cfg.patch_size)) fail(`patch_size must be a positive integer, got ${json(cfg.patch_size)}`);
  for (const key of ['in_channels', 'num_attention_heads', 'attention_head_dim', 'text_emb_dim'] as const) {
    if (!isPositive(cfg[key])) fail(`${key} must be a positive integer, got ${json(cfg[key])}`);
  }
  if (cfg.out_channels !== null && !isPositive(cfg.out_channels)) fail(`out_channels must be a positive integer or null, got ${json(cfg.out_channels)}`);
  const captions = cfg.caption_channels;
  if (!captions || captions.length !== 2 || !captions.every(isPositive)) {
    fail(`caption_channels must be [T5 width, Llama width], got ${json(captions)}`);
  }
  const blocks = cfg.num_layers + cfg.num_single_layers;
  // Every block reads one Llama layer: the model cannot run without one index per block.
  if (!cfg.llama_layers || cfg.llama_layers.length !== blocks || !cfg.llama_layers.every(isCount)) {
    fail(`llama_layers must list one layer per block (${blocks}), got ${json(cfg.llama_layers)}`);
  }
  if (!isCount(cfg.num_routed_experts)) fail(`num_routed_experts must be a count, got ${json(cfg.num_routed_experts)}`);
  // Without routed experts the image feed-forward is one plain SwiGLU and routing is unused.
  if (cfg.num_routed_experts > 0 && !(isPositive(cfg.num_activated_experts) && cfg.num_activated_experts <= cfg.num_routed_experts)) {
    fail(`num_activated_experts (${cfg.num_activated_experts}) must be between 1 and num_routed_experts (${cfg.num_routed_experts})`);
  }
  if (cfg.max_resolution.length !== 2 || !cfg.max_resolution.every(isPositive)) fail(`max_resolution must be [height, width], got ${json(cfg.max_resolution)}`);
  if (cfg.axes_dims_rope.length !== 3 || !cfg.axes_dims_rope.every((d) => isPositive(d) && d % 2 === 0)) {
    fail(`axes_dims_rope must be 3 positive even sizes (one per position id: 0, row, column), got ${json(cfg.axes_dims_rope)}`);
  }
  // diffusers would rotate only the first half of heads twice as wide as the tables; no released
  // checkpoint does, and this port rotates whole heads only.
  const rope = cfg.axes_dims_rope.reduce((a, b) => a + b, 0);
  if (rope !== cfg.attention_head_dim) fail(`axes_dims_rope sum to ${rope} but attention_head_dim is ${cfg.attention_head_dim}`);
  return cfg as HiDreamTransformerConfig;
}

/** Reads the config.json of a HiDream `transformer/` folder. */
export function loadHiDreamTransformerConfig(dir: string): HiDreamTransformerConfig {
  using folder = new WeightFolder(dir);
  return readHiDreamTransformerConfig(folder);
}
