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

export type HiDreamTransformerConfig = typeof HIDREAM_TRANSFORMER_DEFAULTS & { ignoredKeys: string[] };

/** Reads the config.json of a HiDream `transformer/` folder. */
export function loadHiDreamTransformerConfig(dir: string): HiDreamTransformerConfig {
  using folder = new WeightFolder(dir);
  const cfg = folder.typedConfig(['HiDreamImageTransformer2DModel'], HIDREAM_TRANSFORMER_DEFAULTS);
  const blocks = cfg.num_layers + cfg.num_single_layers;
  // Every block reads one Llama layer: the model cannot run without one index per block.
  if (!cfg.llama_layers || cfg.llama_layers.length !== blocks) {
    throw new TypeError(`${dir}/config.json: llama_layers must list one layer per block (${blocks}), got ${JSON.stringify(cfg.llama_layers)}`);
  }
  if (cfg.num_activated_experts > cfg.num_routed_experts) {
    throw new TypeError(`${dir}/config.json: num_activated_experts (${cfg.num_activated_experts}) exceeds num_routed_experts (${cfg.num_routed_experts})`);
  }
  return cfg;
}
