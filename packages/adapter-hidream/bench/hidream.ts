// HiDream speed: the transformer forward of a ~22M-parameter HiDream-I1-architecture model at
// 256 image tokens against diffusers + PyTorch on the same weights (side by side, one run), and
// the cached pipeline's wall-clock speedup against the ideal from the work it skipped.
//
//   DITCACHE_REFERENCE_PYTHON=/path/to/venv/bin/python npm run bench -w @ditcache/adapter-hidream
//
// Without DITCACHE_REFERENCE_PYTHON only our side runs. Models and inputs are made once under
// .cache/bench-models/ (git-ignored). See the README's "Speed" section.
import { join } from 'node:path';

import * as rt from '@ditcache/cuda-runtime';
import { AutoencoderKLDecoder, FlowMatchEulerDiscreteScheduler, randnTensor } from '@ditcache/diffusion';

import { runCacheBenchmark } from '../../diffusion/bench/cache-benchmark.js';
import { runForwardBenchmark, type ForwardBenchmark } from '../../diffusion/bench/forward-benchmark.js';
import { ensureComponent, packageCacheDir, referencePython, TINY_AUTOENCODER_KL, type RandomComponent } from '../../diffusion/bench/harness.js';
import { runOpBenchmark, type OpCase } from '../../diffusion/bench/op-benchmark.js';
import { HiDreamPipeline, HiDreamTransformer } from '../src/index.js';

const CACHE_DIR = packageCacheDir(import.meta.url);

/**
 * HiDream-I1's architecture (patch 2 over 16 latent channels, head dim 128 with rotary axes
 * 64 / 32 / 32, T5 and Llama widths 4096, pooled CLIP width 2048, 4 routed experts of which 2
 * are active plus the shared one) at width 256: 2 heads, 2 double-stream and 2 single-stream
 * blocks, 22.3M parameters. Each block reads its own layer of a 4-layer Llama stack.
 */
const HIDREAM_CONFIG = {
  patch_size: 2,
  in_channels: 16,
  out_channels: 16,
  num_layers: 2,
  num_single_layers: 2,
  attention_head_dim: 128,
  num_attention_heads: 2,
  caption_channels: [4096, 4096],
  text_emb_dim: 2048,
  num_routed_experts: 4,
  num_activated_experts: 2,
  axes_dims_rope: [64, 32, 32],
  max_resolution: [128, 128],
  llama_layers: [3, 2, 1, 0],
};
/** 32 x 32 latents: 16 x 16 = 256 patches. */
const LATENT_SIDE = 32;
const T5_TOKENS = 32;
/** Each block sees T5 + the last block's Llama tokens + its own: 32 + 16 + 16 = 64 text tokens. */
const LLAMA_TOKENS = 16;
const LLAMA_LAYERS = 4;
const IMAGE_TOKENS = (LATENT_SIDE / HIDREAM_CONFIG.patch_size) ** 2;

const transformer: RandomComponent = {
  diffusersClass: 'HiDreamImageTransformer2DModel',
  config: HIDREAM_CONFIG,
  seed: 0,
  load: (dir) => HiDreamTransformer.load(dir),
};

/** HiDream-I1-Dev's scheduler_config.json (static shift 6). */
const SCHEDULER = { shift: 6.0, use_dynamic_shifting: false };

const textInputs = (seed: number) => ({
  t5: randnTensor([1, T5_TOKENS, HIDREAM_CONFIG.caption_channels[0]], seed),
  llama: randnTensor([LLAMA_LAYERS, 1, LLAMA_TOKENS, HIDREAM_CONFIG.caption_channels[1]], seed + 1),
  pooled: randnTensor([1, HIDREAM_CONFIG.text_emb_dim], seed + 2),
});

const forwardBenchmark: ForwardBenchmark = {
  title: 'HiDream-I1 transformer forward',
  name: 'hidream-i1-22m',
  component: transformer,
  shape: `batch 1, ${IMAGE_TOKENS} image tokens + ${T5_TOKENS + 2 * LLAMA_TOKENS} text tokens per block`,
  makeInputs: () => {
    const text = textInputs(2);
    return {
      hidden_states: randnTensor([1, HIDREAM_CONFIG.in_channels, LATENT_SIDE, LATENT_SIDE], 1),
      timesteps: rt.tensor([700]),
      encoder_hidden_states_t5: text.t5,
      encoder_hidden_states_llama3: text.llama,
      pooled_embeds: text.pooled,
    };
  },
  open(dir) {
    const model = HiDreamTransformer.load(dir);
    return {
      forward: (x) =>
        model.forward({
          hiddenStates: x.hidden_states,
          timesteps: x.timesteps,
          encoderHiddenStatesT5: x.encoder_hidden_states_t5,
          encoderHiddenStatesLlama3: x.encoder_hidden_states_llama3,
          pooledEmbeds: x.pooled_embeds,
        }),
      dispose: () => model.dispose(),
      flops: model.flopsPerCall({ batch: 1, imageTokens: IMAGE_TOKENS, t5Tokens: T5_TOKENS, llamaTokens: LLAMA_TOKENS }).total,
    };
  },
};

/** HiDream-I1-Dev's defaults (28 steps, no CFG) on the same model, without decoding. */
function cachedPipeline(): void {
  const python = referencePython();
  const models = join(CACHE_DIR, 'bench-models');
  const transformerDir = ensureComponent(models, forwardBenchmark.name, transformer, python).dir;
  const vaeDir = ensureComponent(models, 'hidream-vae-tiny', TINY_AUTOENCODER_KL, python).dir;
  const steps = 28;
  using pipe = new HiDreamPipeline({
    transformer: HiDreamTransformer.load(transformerDir),
    vae: AutoencoderKLDecoder.load(vaeDir),
    scheduler: new FlowMatchEulerDiscreteScheduler(SCHEDULER),
  });
  // Every request is rescaled to this area: LATENT_SIDE latent pixels a side.
  pipe.defaultSampleSize = LATENT_SIDE;
  const text = textInputs(2);
  try {
    runCacheBenchmark({
      title: `HiDream-I1 pipeline, ${steps} steps`,
      target: pipe,
      request: `${steps} steps, no CFG (HiDream-I1-Dev's settings), ${IMAGE_TOKENS} image tokens, seed 0, no decoding (output_type "latent")`,
      config: { Fn_compute_blocks: 1, Bn_compute_blocks: 0, max_warmup_steps: 4, max_continuous_cached_steps: 3 },
      run: (onStep) => {
        const out = pipe.generate({
          promptEmbedsT5: text.t5,
          promptEmbedsLlama3: text.llama,
          pooledPromptEmbeds: text.pooled,
          guidanceScale: 0,
          numInferenceSteps: steps,
          seed: 0,
          decode: false,
          callback: onStep,
        });
        out.latents.dispose();
      },
    });
  } finally {
    for (const t of Object.values(text)) t.dispose();
  }
}

/**
 * The ops of one forward at representative shapes (S = 320 joint tokens, width 256, 2 heads of
 * 128; a routed expert gets about 160 of them, 2 of 4 experts per token), with roughly the
 * number of calls the forward makes (expert row counts vary with routing), written the way
 * diffusers' HiDream code calls torch.
 */
const S = IMAGE_TOKENS + T5_TOKENS + 2 * LLAMA_TOKENS;
const D = 256;
const EXPERT_ROWS = 160;
const EXPERT_HIDDEN = 768;
const SHARED_HIDDEN = 512;
const OP_CASES: OpCase[] = [
  {
    name: `linear ${EXPERT_ROWS}x${D} -> ${EXPERT_HIDDEN} (expert w1 / w3)`,
    inputs: { x: [EXPERT_ROWS, D], w: [EXPERT_HIDDEN, D] },
    ours: (i) => rt.linear(i.x, i.w),
    torch: 'F.linear(x, w)',
    perForward: 32,
  },
  {
    name: `linear ${EXPERT_ROWS}x${EXPERT_HIDDEN} -> ${D} (expert w2)`,
    inputs: { x: [EXPERT_ROWS, EXPERT_HIDDEN], w: [D, EXPERT_HIDDEN] },
    ours: (i) => rt.linear(i.x, i.w),
    torch: 'F.linear(x, w)',
    perForward: 16,
  },
  {
    name: `linear ${S}x${D} -> ${SHARED_HIDDEN} (shared expert w1 / w3)`,
    inputs: { x: [S, D], w: [SHARED_HIDDEN, D] },
    ours: (i) => rt.linear(i.x, i.w),
    torch: 'F.linear(x, w)',
    perForward: 8,
  },
  {
    name: `linear ${S}x${SHARED_HIDDEN} -> ${D} (shared expert w2)`,
    inputs: { x: [S, SHARED_HIDDEN], w: [D, SHARED_HIDDEN] },
    ours: (i) => rt.linear(i.x, i.w),
    torch: 'F.linear(x, w)',
    perForward: 4,
  },
  {
    name: `linear ${S}x${D} -> ${D}, bias (q / k / v / out)`,
    inputs: { x: [1, S, D], w: [D, D], b: [D] },
    ours: (i) => rt.linear(i.x, i.w, i.b),
    torch: 'F.linear(x, w, b)',
    perForward: 16,
  },
  {
    name: `linear ${LLAMA_TOKENS}x4096 -> ${D} (caption projection)`,
    inputs: { x: [1, LLAMA_TOKENS, 4096], w: [D, 4096] },
    ours: (i) => rt.linear(i.x, i.w),
    torch: 'F.linear(x, w)',
    perForward: 4,
  },
  { name: `silu ${EXPERT_ROWS}x${EXPERT_HIDDEN}`, inputs: { x: [EXPERT_ROWS, EXPERT_HIDDEN] }, ours: (i) => rt.silu(i.x), torch: 'F.silu(x)', perForward: 16 },
  { name: `silu ${S}x${SHARED_HIDDEN}`, inputs: { x: [S, SHARED_HIDDEN] }, ours: (i) => rt.silu(i.x), torch: 'F.silu(x)', perForward: 4 },
  {
    name: `mul ${EXPERT_ROWS}x${EXPERT_HIDDEN}`,
    inputs: { a: [EXPERT_ROWS, EXPERT_HIDDEN], b: [EXPERT_ROWS, EXPERT_HIDDEN] },
    ours: (i) => rt.mul(i.a, i.b),
    torch: 'a * b',
    perForward: 16,
  },
  {
    name: `RMS norm ${S}x${D} over ${D}`,
    inputs: { x: [1, S, D], w: [D] },
    ours: (i) => rt.rmsNorm(i.x, i.w, 1e-5),
    torch: `F.rms_norm(x, (${D},), w, eps=1e-5)`,
    perForward: 8,
  },
  {
    name: `attention 2 heads x ${S} x 128, (B, S, H, D) in and out`,
    inputs: { q: [1, S, 2, 128], k: [1, S, 2, 128], v: [1, S, 2, 128] },
    ours: (i) => rt.attention(i.q.transpose(1, 2), i.k.transpose(1, 2), i.v.transpose(1, 2), { headsLast: true }),
    torch: 'F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)).transpose(1, 2).flatten(2, 3)',
    perForward: 4,
  },
  {
    name: `MoE gate: softmax(linear ${S}x${D} -> 4), top 2`,
    inputs: { x: [S, D], g: [4, D] },
    ours: (i) => {
      const { values, indices } = rt.topk(rt.softmax(rt.linear(i.x, i.g), -1), 2);
      return [values, indices];
    },
    torch: 'torch.topk(F.linear(x, g).softmax(-1), 2, dim=-1, sorted=False)',
    perForward: 4,
  },
];

async function main(): Promise<void> {
  const only = process.argv[2];
  if (!only || only === 'forward') await runForwardBenchmark(forwardBenchmark, CACHE_DIR);
  if (!only || only === 'cache') cachedPipeline();
  if (!only || only === 'ops') runOpBenchmark('HiDream-I1 transformer ops', OP_CASES, referencePython());
}

await main();
