// FLUX speed: the transformer forward of a ~19M-parameter FLUX.1-dev-architecture model at 256
// image tokens against diffusers + PyTorch on the same weights (side by side, one run), and the
// cached pipeline's wall-clock speedup against the ideal from the work it skipped; and, asked
// for by name, the forward at FLUX.1's real width (687M parameters, 1024 + 256 tokens) in
// float32 and bfloat16, each side's bf16 error against float32 included.
//
//   DITCACHE_REFERENCE_PYTHON=/path/to/venv/bin/python npm run bench -w @ditcache/adapter-flux [-- PART] [OPTIONS]
//
// PART: forward, cache, ops (all three by default) or flux1-width. OPTIONS: --dtype D[,D...]
// (float32, bfloat16, float16; forward's default float32, flux1-width's float32,bfloat16);
// flux1-width only: --heads N (24), --image-side N (32: 1024 image tokens), --text-tokens N (256),
// smaller to try it quickly. Without DITCACHE_REFERENCE_PYTHON only our side runs. Models and
// inputs are made once under .cache/bench-models/ (git-ignored). See the README's "Speed" section.
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import * as rt from '@ditcache/cuda-runtime';
import { AutoencoderKLDecoder, FlowMatchEulerDiscreteScheduler, computeDtype, randnTensor, type ComputeDtype } from '@ditcache/diffusion';

import { runCacheBenchmark } from '../../diffusion/bench/cache-benchmark.js';
import { runForwardBenchmark, type ForwardBenchmark } from '../../diffusion/bench/forward-benchmark.js';
import { ensureComponent, packageCacheDir, referencePython, TINY_AUTOENCODER_KL, type RandomComponent } from '../../diffusion/bench/harness.js';
import { runOpBenchmark, type OpCase } from '../../diffusion/bench/op-benchmark.js';
import { FluxPipeline, FluxTransformer, latentImageIds } from '../src/index.js';

const CACHE_DIR = packageCacheDir(import.meta.url);

/**
 * FLUX.1-dev's architecture (guidance embedding, T5 / CLIP widths 4096 / 768, head dim 128 with
 * rotary axes 16 / 56 / 56, 1 : 2 double : single blocks) at width 256: 2 heads, 4 double-stream
 * and 8 single-stream blocks, 19.1M parameters.
 */
const FLUX_CONFIG = {
  patch_size: 1,
  in_channels: 64,
  num_layers: 4,
  num_single_layers: 8,
  attention_head_dim: 128,
  num_attention_heads: 2,
  joint_attention_dim: 4096,
  pooled_projection_dim: 768,
  guidance_embeds: true,
  axes_dims_rope: [16, 56, 56],
};
/** 16 x 16 packed latents (a 32 x 32 latent image). */
const IMAGE_SIDE = 16;
const TEXT_TOKENS = 64;

const transformer: RandomComponent = {
  diffusersClass: 'FluxTransformer2DModel',
  config: FLUX_CONFIG,
  seed: 0,
  load: (dir) => FluxTransformer.load(dir),
};

/** FLUX.1-dev's scheduler_config.json. */
const SCHEDULER = {
  base_image_seq_len: 256,
  base_shift: 0.5,
  max_image_seq_len: 4096,
  max_shift: 1.15,
  shift: 3.0,
  use_dynamic_shifting: true,
  time_shift_type: 'exponential' as const,
};

/**
 * The forward benchmark of a FLUX transformer made from `component`: batch 1, `imageSide` x
 * `imageSide` packed latents and `textTokens` text tokens (guidance only when the config has
 * guidance embeddings).
 */
function fluxForwardBenchmark(spec: { title: string; name: string; component: RandomComponent; imageSide: number; textTokens: number }): ForwardBenchmark {
  const config = spec.component.config as typeof FLUX_CONFIG;
  const shape = { batch: 1, imageTokens: spec.imageSide * spec.imageSide, textTokens: spec.textTokens };
  return {
    title: spec.title,
    name: spec.name,
    component: spec.component,
    shape: `batch 1, ${shape.imageTokens} image tokens + ${shape.textTokens} text tokens`,
    makeInputs: () => ({
      hidden_states: randnTensor([1, shape.imageTokens, config.in_channels], 1),
      encoder_hidden_states: randnTensor([1, shape.textTokens, config.joint_attention_dim], 2),
      pooled_projections: randnTensor([1, config.pooled_projection_dim], 3),
      timestep: rt.tensor([0.7]),
      ...(config.guidance_embeds ? { guidance: rt.tensor([3.5]) } : {}),
      img_ids: latentImageIds(spec.imageSide, spec.imageSide),
      txt_ids: rt.zeros([shape.textTokens, 3]),
    }),
    open(dir, dtype) {
      const model = FluxTransformer.load(dir, { dtype });
      return {
        forward: (x) =>
          model.forward({
            hiddenStates: x.hidden_states,
            encoderHiddenStates: x.encoder_hidden_states,
            pooledProjections: x.pooled_projections,
            timestep: x.timestep,
            guidance: x.guidance,
            imgIds: x.img_ids,
            txtIds: x.txt_ids,
          }),
        dispose: () => model.dispose(),
        flops: model.flopsPerCall(shape).total,
      };
    },
  };
}

const forwardBenchmark = fluxForwardBenchmark({
  title: 'FLUX.1 transformer forward',
  name: 'flux-dev-19m',
  component: transformer,
  imageSide: IMAGE_SIDE,
  textTokens: TEXT_TOKENS,
});

/**
 * The measurement at FLUX.1-dev's real width: 24 heads of 128 (3072 wide), T5 / CLIP
 * widths 4096 / 768, guidance embeddings, 1 double-stream and 2 single-stream blocks (687M
 * parameters), 32 x 32 packed latents (1024 image tokens) + 256 text tokens, 2 threads.
 * `heads`, `imageSide` and `textTokens` shrink it for a quick try.
 */
function flux1WidthBenchmark(size: { heads: number; imageSide: number; textTokens: number }): ForwardBenchmark {
  const config = { ...FLUX_CONFIG, num_attention_heads: size.heads, num_layers: 1, num_single_layers: 2 };
  const full = size.heads === 24 && size.imageSide === 32 && size.textTokens === 256;
  return fluxForwardBenchmark({
    title: full ? 'FLUX.1-width transformer forward' : `FLUX.1-width transformer forward, reduced to ${size.heads} heads`,
    name: `flux1-width-${size.heads}h`,
    component: { diffusersClass: 'FluxTransformer2DModel', config, seed: 0, load: (dir) => FluxTransformer.load(dir) },
    imageSide: size.imageSide,
    textTokens: size.textTokens,
  });
}

/**
 * The ops of one forward at its shapes (S = 320 joint tokens, N = 256 image, T = 64 text,
 * width 256, 2 heads of 128), with the number of calls the forward makes, written the way
 * diffusers' FLUX code calls torch.
 */
const S = IMAGE_SIDE * IMAGE_SIDE + TEXT_TOKENS;
const N = IMAGE_SIDE * IMAGE_SIDE;
const D = 256;
const OP_CASES: OpCase[] = [
  {
    name: `linear ${S}x${D} -> ${D}, bias`,
    inputs: { x: [1, S, D], w: [D, D], b: [D] },
    ours: (i) => rt.linear(i.x, i.w, i.b),
    torch: 'F.linear(x, w, b)',
    perForward: 24,
  },
  {
    name: `linear ${S}x${D} -> ${4 * D}, bias`,
    inputs: { x: [1, S, D], w: [4 * D, D], b: [4 * D] },
    ours: (i) => rt.linear(i.x, i.w, i.b),
    torch: 'F.linear(x, w, b)',
    perForward: 8,
  },
  {
    name: `linear ${S}x${5 * D} -> ${D}, bias`,
    inputs: { x: [1, S, 5 * D], w: [D, 5 * D], b: [D] },
    ours: (i) => rt.linear(i.x, i.w, i.b),
    torch: 'F.linear(x, w, b)',
    perForward: 8,
  },
  {
    name: `linear ${N}x${D} -> ${D}, bias`,
    inputs: { x: [1, N, D], w: [D, D], b: [D] },
    ours: (i) => rt.linear(i.x, i.w, i.b),
    torch: 'F.linear(x, w, b)',
    perForward: 16,
  },
  {
    name: `linear ${N}x${D} -> ${4 * D}, bias`,
    inputs: { x: [1, N, D], w: [4 * D, D], b: [4 * D] },
    ours: (i) => rt.linear(i.x, i.w, i.b),
    torch: 'F.linear(x, w, b)',
    perForward: 4,
  },
  {
    name: `linear ${N}x${4 * D} -> ${D}, bias`,
    inputs: { x: [1, N, 4 * D], w: [D, 4 * D], b: [D] },
    ours: (i) => rt.linear(i.x, i.w, i.b),
    torch: 'F.linear(x, w, b)',
    perForward: 4,
  },
  {
    name: `linear ${TEXT_TOKENS}x${D} -> ${D}, bias`,
    inputs: { x: [1, TEXT_TOKENS, D], w: [D, D], b: [D] },
    ours: (i) => rt.linear(i.x, i.w, i.b),
    torch: 'F.linear(x, w, b)',
    perForward: 16,
  },
  {
    name: `linear 1x${D} -> ${6 * D}, bias (modulation)`,
    inputs: { x: [1, D], w: [6 * D, D], b: [6 * D] },
    ours: (i) => rt.linear(i.x, i.w, i.b),
    torch: 'F.linear(x, w, b)',
    perForward: 8,
  },
  {
    name: `attention 2 heads x ${S} x 128, (B, S, H, D) in and out`,
    inputs: { q: [1, S, 2, 128], k: [1, S, 2, 128], v: [1, S, 2, 128] },
    ours: (i) => rt.attention(i.q.transpose(1, 2), i.k.transpose(1, 2), i.v.transpose(1, 2), { headsLast: true }),
    torch: 'F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)).transpose(1, 2).flatten(2, 3)',
    perForward: 12,
  },
  {
    name: `gelu tanh ${S}x${4 * D}`,
    inputs: { x: [1, S, 4 * D] },
    ours: (i) => rt.gelu(i.x, { approximate: 'tanh' }),
    torch: 'F.gelu(x, approximate="tanh")',
    perForward: 8,
  },
  {
    name: `gelu tanh ${N}x${4 * D}`,
    inputs: { x: [1, N, 4 * D] },
    ours: (i) => rt.gelu(i.x, { approximate: 'tanh' }),
    torch: 'F.gelu(x, approximate="tanh")',
    perForward: 4,
  },
  {
    name: `layer norm ${S}x${D}, no affine`,
    inputs: { x: [1, S, D] },
    ours: (i) => rt.layerNorm(i.x, null, null, 1e-6),
    torch: `F.layer_norm(x, (${D},), eps=1e-6)`,
    perForward: 8,
  },
  {
    name: `RMS norm ${S}x2x128 over 128`,
    inputs: { x: [1, S, 2, 128], w: [128] },
    ours: (i) => rt.rmsNorm(i.x, i.w, 1e-6),
    torch: 'F.rms_norm(x, (128,), w, eps=1e-6)',
    perForward: 16,
  },
  {
    name: `rope ${S}x2x128, interleaved`,
    inputs: { x: [1, S, 2, 128], c: [S, 1, 128], s: [S, 1, 128] },
    ours: (i) => rt.rope(i.x, i.c, i.s),
    torch: `x * c + torch.stack([-x.reshape(1, ${S}, 2, 64, 2)[..., 1], x.reshape(1, ${S}, 2, 64, 2)[..., 0]], -1).flatten(3) * s`,
    perForward: 24,
  },
  {
    name: `modulate: x * (1 + scale) + shift, ${S}x${D}`,
    inputs: { x: [1, S, D], a: [1, 1, D], b: [1, 1, D] },
    ours: (i) => rt.add(rt.mul(i.x, rt.add(i.a, 1)), i.b),
    torch: 'x * (1 + a) + b',
    perForward: 8,
  },
  {
    name: `gated residual: x + g * y, ${S}x${D}`,
    inputs: { x: [1, S, D], g: [1, 1, D], y: [1, S, D] },
    ours: (i) => rt.add(i.x, rt.mul(i.g, i.y)),
    torch: 'x + g * y',
    perForward: 8,
  },
  {
    name: `concat ${S}x${D} + ${S}x${4 * D} on features`,
    inputs: { a: [1, S, D], b: [1, S, 4 * D] },
    ours: (i) => rt.concat([i.a, i.b], 2),
    torch: 'torch.cat([a, b], 2)',
    perForward: 8,
  },
];

const PARTS = ['forward', 'cache', 'ops', 'flux1-width'] as const;

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { dtype: { type: 'string' }, heads: { type: 'string' }, 'image-side': { type: 'string' }, 'text-tokens': { type: 'string' } },
  });
  const only = positionals[0];
  if (only !== undefined && !(PARTS as readonly string[]).includes(only)) throw new Error(`unknown part '${only}' (valid: ${PARTS.join(', ')})`);
  const dtypes = (fallback: ComputeDtype[]): ComputeDtype[] =>
    values.dtype === undefined ? fallback : values.dtype.split(',').map((d) => computeDtype(d, '--dtype'));
  const count = (flag: 'heads' | 'image-side' | 'text-tokens', fallback: number): number => {
    const n = Number(values[flag] ?? fallback);
    if (!Number.isInteger(n) || n <= 0) throw new Error(`--${flag} must be a positive integer, got ${values[flag]}`);
    return n;
  };
  if (!only || only === 'forward') await runForwardBenchmark(forwardBenchmark, CACHE_DIR, { dtypes: dtypes(['float32']) });
  if (!only || only === 'cache') cachedPipeline();
  if (!only || only === 'ops') runOpBenchmark('FLUX.1 transformer ops', OP_CASES, referencePython());
  if (only === 'flux1-width') {
    const bench = flux1WidthBenchmark({ heads: count('heads', 24), imageSide: count('image-side', 32), textTokens: count('text-tokens', 256) });
    // The setting: 2 threads (DITCACHE_BENCH_THREADS overrides); a 3.5 s forward needs fewer rounds than the 19M model's.
    await runForwardBenchmark(bench, CACHE_DIR, { dtypes: dtypes(['float32', 'bfloat16']), threads: [2], rounds: 3, reps: 3, profile: false });
  }
}

/** FLUX.1-dev's defaults (28 steps, guidance 3.5) on the same model, without decoding. */
function cachedPipeline(): void {
  const python = referencePython();
  const models = join(CACHE_DIR, 'bench-models');
  const transformerDir = ensureComponent(models, forwardBenchmark.name, transformer, python).dir;
  const vaeDir = ensureComponent(models, 'flux-vae-tiny', TINY_AUTOENCODER_KL, python).dir;
  const steps = 28;
  using pipe = new FluxPipeline({
    transformer: FluxTransformer.load(transformerDir),
    vae: AutoencoderKLDecoder.load(vaeDir),
    scheduler: new FlowMatchEulerDiscreteScheduler(SCHEDULER),
  });
  const side = IMAGE_SIDE * 2 * pipe.vaeScaleFactor;
  using promptEmbeds = randnTensor([1, TEXT_TOKENS, FLUX_CONFIG.joint_attention_dim], 2);
  using pooledPromptEmbeds = randnTensor([1, FLUX_CONFIG.pooled_projection_dim], 3);
  runCacheBenchmark({
    title: `FLUX.1 pipeline, ${steps} steps`,
    target: pipe,
    request: `${steps} steps, guidance 3.5, ${IMAGE_SIDE * IMAGE_SIDE} image tokens + ${TEXT_TOKENS} text tokens, seed 0, no decoding (output_type "latent")`,
    config: { Fn_compute_blocks: 1, Bn_compute_blocks: 0, max_warmup_steps: 4, max_continuous_cached_steps: 3 },
    run: (onStep) => {
      const out = pipe.generate({
        promptEmbeds,
        pooledPromptEmbeds,
        height: side,
        width: side,
        numInferenceSteps: steps,
        guidanceScale: 3.5,
        seed: 0,
        decode: false,
        callback: onStep,
      });
      out.latents.dispose();
    },
  });
}

await main();
