// HunyuanVideo speed: the transformer forward of a 38M-parameter HunyuanVideo-architecture model
// at 1,024 video tokens against diffusers + PyTorch on the same weights (side by side, one run,
// 2 threads), and the cached pipeline's wall-clock speedup against the ideal from the work it
// skipped. Issue 19 asks for this row for every family; the harness is @ditcache/diffusion's.
//
//   DITCACHE_REFERENCE_PYTHON=/path/to/venv/bin/python npm run bench -w @ditcache/adapter-hunyuan-video [-- PART] [--dtype D[,D...]]
//
// PART: forward or cache (both by default); --dtype for the forward (float32 by default; float32,
// bfloat16 adds the 16-bit row and each side's bf16 error). Without DITCACHE_REFERENCE_PYTHON only
// our side runs. Models and inputs are made once under .cache/bench-models/ (git-ignored). See the
// README's "Benchmark" section.
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import * as rt from '@ditcache/cuda-runtime';
import { computeDtype, FlowMatchEulerDiscreteScheduler, randnTensor, type ComputeDtype } from '@ditcache/diffusion';

import { runCacheBenchmark } from '../../diffusion/bench/cache-benchmark.js';
import { runForwardBenchmark, type ForwardBenchmark } from '../../diffusion/bench/forward-benchmark.js';
import { ensureComponent, packageCacheDir, referencePython, type RandomComponent } from '../../diffusion/bench/harness.js';
import { AutoencoderKLHunyuanVideoDecoder, HunyuanVideoPipeline, HunyuanVideoTransformer } from '../src/index.js';

const CACHE_DIR = packageCacheDir(import.meta.url);

/**
 * HunyuanVideo's architecture (1x2x2 patches over 16 latent channels, heads of 128 with rotary
 * axes 16 / 56 / 56, Llama width 4096 through the 2-block token refiner, CLIP pooled 768,
 * embedded guidance, 1 : 2 dual : single blocks) at width 384: 3 heads, 3 dual-stream and 6
 * single-stream blocks.
 */
const HV_CONFIG = {
  in_channels: 16,
  out_channels: 16,
  num_attention_heads: 3,
  attention_head_dim: 128,
  num_layers: 3,
  num_single_layers: 6,
  num_refiner_layers: 2,
  mlp_ratio: 4.0,
  patch_size: 2,
  patch_size_t: 1,
  qk_norm: 'rms_norm',
  guidance_embeds: true,
  text_embed_dim: 4096,
  pooled_projection_dim: 768,
  rope_theta: 256.0,
  rope_axes_dim: [16, 56, 56],
};
/** Latents (B, 16, frames, h, w) -> frames * (h / 2) * (w / 2) tokens: 13 frames of 256 x 256. */
const FORWARD_LATENTS = [1, 16, 4, 32, 32];
const TEXT_TOKENS = 64;
/** Prompt tokens of the mask (the rest is padding, as a short prompt at max_sequence_length leaves it). */
const VALID_TOKENS = 40;
const tokens = (shape: number[]) => shape[2] * (shape[3] / 2) * (shape[4] / 2);

const transformer: RandomComponent = {
  diffusersClass: 'HunyuanVideoTransformer3DModel',
  config: HV_CONFIG,
  seed: 0,
  load: (dir) => HunyuanVideoTransformer.load(dir),
};

/** A tiny HunyuanVideo VAE with 16 latent channels (the pipeline needs one; the benchmark never decodes). */
const vae: RandomComponent = {
  diffusersClass: 'AutoencoderKLHunyuanVideo',
  config: { in_channels: 3, out_channels: 3, latent_channels: 16, block_out_channels: [8, 8, 8, 8], layers_per_block: 1, norm_num_groups: 2 },
  seed: 0,
  load: (dir) => AutoencoderKLHunyuanVideoDecoder.load(dir),
};

/** (1, TEXT_TOKENS): ones for the prompt's tokens, zeros for the padding. */
function promptMask(): rt.Tensor {
  return rt.tensor(
    Float32Array.from({ length: TEXT_TOKENS }, (_, i) => (i < VALID_TOKENS ? 1 : 0)),
    [1, TEXT_TOKENS],
  );
}

const forwardBenchmark: ForwardBenchmark = {
  title: 'HunyuanVideo transformer forward',
  name: 'hunyuan-video-384w',
  component: transformer,
  shape: `batch 1, ${FORWARD_LATENTS.slice(2).join(' x ')} latents (${tokens(FORWARD_LATENTS)} video tokens) + ${TEXT_TOKENS} text tokens (${VALID_TOKENS} unmasked)`,
  makeInputs: () => ({
    hidden_states: randnTensor(FORWARD_LATENTS, 1),
    timestep: rt.tensor([700]),
    encoder_hidden_states: randnTensor([1, TEXT_TOKENS, HV_CONFIG.text_embed_dim], 2),
    encoder_attention_mask: promptMask(),
    pooled_projections: randnTensor([1, HV_CONFIG.pooled_projection_dim], 3),
    // Guidance 6 as a bfloat16 pipeline passes it (diffusers makes it in the transformer's dtype:
    // 6000 rounds to 6016), exact in every dtype, so that both sides condition on the same value.
    guidance: rt.tensor([6016]),
  }),
  open(dir, dtype) {
    const model = HunyuanVideoTransformer.load(dir, { dtype });
    return {
      forward: (x) =>
        model.forward({
          hiddenStates: x.hidden_states,
          timestep: x.timestep,
          encoderHiddenStates: x.encoder_hidden_states,
          encoderAttentionMask: x.encoder_attention_mask,
          pooledProjections: x.pooled_projections,
          guidance: x.guidance,
        }),
      dispose: () => model.dispose(),
      flops: model.flopsPerCall({ batch: 1, imageTokens: tokens(FORWARD_LATENTS), textTokens: TEXT_TOKENS }).total,
    };
  },
};

/**
 * HunyuanVideoPipeline's sampling (embedded guidance 6, one transformer call per step, FlowMatch
 * Euler with shift 7) on the same model at 9 frames of 192 x 192 (3 x 24 x 24 latents, 432
 * tokens), so that its rounds of uncached and cached runs fit a few minutes.
 */
function cachedPipeline(): void {
  const python = referencePython();
  const models = join(CACHE_DIR, 'bench-models');
  const transformerDir = ensureComponent(models, forwardBenchmark.name, transformer, python).dir;
  const vaeDir = ensureComponent(models, 'hunyuan-video-vae-tiny', vae, python).dir;
  const steps = 20;
  // The harness's default (the 70th percentile of the calibration diffs) caches 7-9 of 20
  // steps per context here; the 90th caches 11-12, the share the README's row reports.
  process.env.DITCACHE_BENCH_CACHE_QUANTILE ??= '0.9';
  using pipe = new HunyuanVideoPipeline({
    transformer: HunyuanVideoTransformer.load(transformerDir),
    vae: AutoencoderKLHunyuanVideoDecoder.load(vaeDir),
    scheduler: new FlowMatchEulerDiscreteScheduler({ shift: 7.0 }),
  });
  const prompt = randnTensor([1, TEXT_TOKENS, HV_CONFIG.text_embed_dim], 2);
  const pooled = randnTensor([1, HV_CONFIG.pooled_projection_dim], 3);
  const mask = promptMask();
  try {
    runCacheBenchmark({
      title: `HunyuanVideo pipeline, ${steps} steps`,
      target: pipe,
      request: `${steps} steps, embedded guidance 6 (one transformer call per step), 9 frames of 192 x 192 (432 video tokens) + ${TEXT_TOKENS} text tokens, seed 0, no decoding`,
      config: { Fn_compute_blocks: 1, Bn_compute_blocks: 0, max_warmup_steps: 4, max_continuous_cached_steps: 5 },
      run: (onStep) => {
        const out = pipe.generate({
          promptEmbeds: prompt,
          pooledPromptEmbeds: pooled,
          promptAttentionMask: mask,
          height: 192,
          width: 192,
          numFrames: 9,
          numInferenceSteps: steps,
          guidanceScale: 6,
          seed: 0,
          decode: false,
          callback: onStep,
        });
        out.latents.dispose();
      },
    });
  } finally {
    for (const t of [prompt, pooled, mask]) t.dispose();
  }
}

const PARTS = ['forward', 'cache'] as const;

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({ allowPositionals: true, options: { dtype: { type: 'string' } } });
  const only = positionals[0];
  if (only !== undefined && !(PARTS as readonly string[]).includes(only)) throw new Error(`unknown part '${only}' (valid: ${PARTS.join(', ')})`);
  const dtypes: ComputeDtype[] = values.dtype === undefined ? ['float32'] : values.dtype.split(',').map((d) => computeDtype(d, '--dtype'));
  // The setting: 2 threads (DITCACHE_BENCH_THREADS overrides); a ~1 s forward needs fewer rounds than the defaults.
  if (!only || only === 'forward') await runForwardBenchmark(forwardBenchmark, CACHE_DIR, { dtypes, threads: [2], rounds: 4, reps: 3 });
  if (!only || only === 'cache') cachedPipeline();
}

await main();
