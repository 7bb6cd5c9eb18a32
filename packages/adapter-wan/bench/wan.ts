// Wan speed: the transformer forward of a ~20M-parameter Wan 2.1-architecture model at 1,536
// video tokens against diffusers + PyTorch on the same weights (side by side, one run), and the
// cached pipeline's wall-clock speedup against the ideal from the work it skipped.
//
//   DITCACHE_REFERENCE_PYTHON=/path/to/venv/bin/python npm run bench -w @ditcache/adapter-wan
//
// Without DITCACHE_REFERENCE_PYTHON only our side runs. Models and inputs are made once under
// .cache/bench-models/ (git-ignored). See the README's "Speed" section.
import { join } from 'node:path';

import * as rt from '@ditcache/cuda-runtime';
import { FlowMatchEulerDiscreteScheduler, randnTensor } from '@ditcache/diffusion';

import { runCacheBenchmark } from '../../diffusion/bench/cache-benchmark.js';
import { runForwardBenchmark, type ForwardBenchmark } from '../../diffusion/bench/forward-benchmark.js';
import { ensureComponent, packageCacheDir, referencePython, type RandomComponent } from '../../diffusion/bench/harness.js';
import { AutoencoderKLWanDecoder, WanPipeline, WanTransformer } from '../src/index.js';

const CACHE_DIR = packageCacheDir(import.meta.url);

/**
 * Wan 2.1's architecture (1x2x2 patches over 16 latent channels, heads of 128, UMT5 width 4096,
 * RMS-normed q / k across heads, cross-attention norm) at width 384: 3 heads, 8 blocks, a
 * 1,536-wide feed-forward; about 20M parameters.
 */
const WAN_CONFIG = {
  patch_size: [1, 2, 2],
  num_attention_heads: 3,
  attention_head_dim: 128,
  in_channels: 16,
  out_channels: 16,
  text_dim: 4096,
  freq_dim: 256,
  ffn_dim: 1536,
  num_layers: 8,
  cross_attn_norm: true,
  qk_norm: 'rms_norm_across_heads',
  eps: 1e-6,
  rope_max_seq_len: 1024,
};
/** Latents (B, 16, frames, h, w) -> frames * (h / 2) * (w / 2) tokens. */
const FORWARD_LATENTS = [1, 16, 6, 32, 32];
const TEXT_TOKENS = 64;
const tokens = (shape: number[]) => shape[2] * (shape[3] / 2) * (shape[4] / 2);

const transformer: RandomComponent = {
  diffusersClass: 'WanTransformer3DModel',
  config: WAN_CONFIG,
  seed: 0,
  load: (dir) => WanTransformer.load(dir),
};

/** The Wan VAE of the goldens (the pipeline needs one; the benchmark never decodes). */
const vae: RandomComponent = {
  diffusersClass: 'AutoencoderKLWan',
  config: {
    base_dim: 3,
    z_dim: 16,
    dim_mult: [1, 1, 1, 1],
    num_res_blocks: 1,
    attn_scales: [],
    temperal_downsample: [false, true, true],
    latents_mean: Array<number>(16).fill(0),
    latents_std: Array<number>(16).fill(1),
  },
  seed: 0,
  load: (dir) => AutoencoderKLWanDecoder.load(dir),
};

const forwardBenchmark: ForwardBenchmark = {
  title: 'Wan 2.1 transformer forward',
  name: 'wan21-20m',
  component: transformer,
  shape: `batch 1, ${FORWARD_LATENTS.slice(2).join(' x ')} latents (${tokens(FORWARD_LATENTS)} video tokens) + ${TEXT_TOKENS} text tokens`,
  makeInputs: () => ({
    hidden_states: randnTensor(FORWARD_LATENTS, 1),
    timestep: rt.tensor([700]),
    encoder_hidden_states: randnTensor([1, TEXT_TOKENS, WAN_CONFIG.text_dim], 2),
  }),
  open(dir) {
    const model = WanTransformer.load(dir);
    return {
      forward: (x) => model.forward({ hiddenStates: x.hidden_states, timestep: x.timestep, encoderHiddenStates: x.encoder_hidden_states }),
      dispose: () => model.dispose(),
      flops: model.flopsPerCall({ batch: 1, videoTokens: tokens(FORWARD_LATENTS), textTokens: TEXT_TOKENS }).total,
    };
  },
};

/**
 * Wan 2.1's sampling (CFG as two calls per step, FlowMatch Euler with shift 5) on the same model
 * at a smaller video, 3 x 16 x 16 latents (9 frames of 128 x 128, 192 tokens), so that its
 * rounds of uncached and cached runs fit a few minutes.
 */
function cachedPipeline(): void {
  const python = referencePython();
  const models = join(CACHE_DIR, 'bench-models');
  const transformerDir = ensureComponent(models, forwardBenchmark.name, transformer, python).dir;
  const vaeDir = ensureComponent(models, 'wan-vae-tiny', vae, python).dir;
  const steps = 28;
  using pipe = new WanPipeline({
    transformer: WanTransformer.load(transformerDir),
    vae: AutoencoderKLWanDecoder.load(vaeDir),
    scheduler: new FlowMatchEulerDiscreteScheduler({ shift: 5.0, use_dynamic_shifting: false }),
  });
  const prompt = randnTensor([1, TEXT_TOKENS, WAN_CONFIG.text_dim], 2);
  const negative = randnTensor([1, TEXT_TOKENS, WAN_CONFIG.text_dim], 3);
  try {
    runCacheBenchmark({
      title: `Wan 2.1 pipeline, ${steps} steps`,
      target: pipe,
      request: `${steps} steps, CFG 5 (two transformer calls per step), 9 frames of 128 x 128 (192 video tokens) + ${TEXT_TOKENS} text tokens, seed 0, no decoding`,
      config: { Fn_compute_blocks: 1, Bn_compute_blocks: 0, max_warmup_steps: 4, max_continuous_cached_steps: 3 },
      run: (onStep) => {
        const out = pipe.generate({
          promptEmbeds: prompt,
          negativePromptEmbeds: negative,
          height: 128,
          width: 128,
          numFrames: 9,
          numInferenceSteps: steps,
          guidanceScale: 5,
          seed: 0,
          decode: false,
          callback: onStep,
        });
        out.latents.dispose();
      },
    });
  } finally {
    prompt.dispose();
    negative.dispose();
  }
}

async function main(): Promise<void> {
  const only = process.argv[2];
  if (!only || only === 'forward') await runForwardBenchmark(forwardBenchmark, CACHE_DIR);
  if (!only || only === 'cache') cachedPipeline();
}

await main();
