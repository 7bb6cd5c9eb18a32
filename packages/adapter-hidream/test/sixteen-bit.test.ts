// HiDream computing in bfloat16 and float16 (`dtype`, diffusers' torch_dtype) against diffusers in
// the same dtype (test/goldens/hidream-tiny/*_bf16 / *_fp16, from tools/make_16bit_references.py)
// and, the issue's criteria, against float32: our 16-bit error within 1.5x of diffusers' own, and
// our images' PSNR against diffusers' float32 images at most 1 dB below that of diffusers' 16-bit
// ones.
//
// What is discrete here is the mixture of experts: in 16-bit the gate's softmax over 4 experts
// often rounds a token's 2nd and 3rd scores to the same value. Ties are broken as torch.topk
// breaks them (topk.ts, checked against torch below), but a score one unit of roundoff away from
// a tie, which attention's rounding can move (see the Wan adapter's tests: the runtime's kernel
// does not round the softmax numerators as PyTorch's CPU flash attention does), sends the token
// to another expert. That moves one token's output by a whole expert's difference, so:
//   - each block given diffusers' own inputs is held to 2 units of roundoff u (u = 2^-8 for
//     bfloat16, 2^-11 for float16): measured 0.05-0.35 u, and 1.7 u for the one block where a
//     near-tie token went elsewhere;
//   - whole calls and runs to 6 u (measured up to 4.9 u over 18 calls, 4.0 u for a 16-step run);
//   - the accuracy criterion is pooled over 16 calls (one call's error against float32 moves by
//     up to 2x with one token's expert, for diffusers' 16-bit calls as for ours), and the PSNR
//     criterion over 16 runs.
import { readFileSync } from 'node:fs';

import { describe, expect, it } from 'vitest';

import { loadSafetensors, memoryStats, mul, tensor, tidy, type Tensor } from '@ditcache/cuda-runtime';
import { randnTensor } from '@ditcache/diffusion';

import hidreamCliFamily from '../src/cli-family.js';
import {
  HiDreamPipeline,
  HiDreamTransformer,
  singleStreamContext,
  torchTopkIndices,
  type DoubleStreamBlock,
  type HiDreamGenerateResult,
  type SingleStreamBlock,
} from '../src/index.js';
import { goldenInputs, goldens, localGoldens, relativeL2 } from './helpers.js';

const DTYPES = [
  { dtype: 'bfloat16', tag: 'bf16', roundoff: 2 ** -8 },
  { dtype: 'float16', tag: 'fp16', roundoff: 2 ** -11 },
] as const;
const CALLS = ['transformer_forward', 'transformer_forward_nonsquare'];

/** The issue's bound on our 16-bit error against float32, relative to diffusers' own. */
const ACCURACY_RATIO = 1.5;
/** The issue's bound on our images' PSNR against float32, below diffusers' 16-bit images' (dB). */
const PSNR_MARGIN = 1;

const dir = `${goldens}/hidream-tiny`;
const local = `${localGoldens}/hidream-tiny`;
const meta = JSON.parse(readFileSync(`${dir}/meta.json`, 'utf-8')) as Record<string, number>;

/** Mean squared error of two images in [0, 1]. */
function mse(a: Tensor, b: Tensor): number {
  const [x, y] = [a.toFloat32Array(), b.toFloat32Array()];
  let sum = 0;
  for (let i = 0; i < x.length; ++i) sum += (x[i] - y[i]) ** 2;
  return sum / x.length;
}

/** PSNR (dB, data range 1) of all `images` together against `references`. */
function pooledPsnr(images: Tensor[], references: Tensor[]): number {
  return -10 * Math.log10(images.reduce((sum, image, i) => sum + mse(image, references[i]), 0) / images.length);
}

/** Wraps the block lists so that each block's outputs are copied out under diffusers' names. */
function record(transformer: HiDreamTransformer, into: Map<string, Tensor>): void {
  const copy = (name: string, t: Tensor): void => void into.set(name, t.clone().keep());
  transformer.doubleStreamBlocks = transformer.doubleStreamBlocks.map(
    (block, i): DoubleStreamBlock => ({
      forward(hidden, encoder, context) {
        const [h, e] = block.forward(hidden, encoder, context);
        copy(`double_stream_blocks.${i}.out0`, h);
        copy(`double_stream_blocks.${i}.out1`, e);
        return [h, e];
      },
    }),
  );
  transformer.singleStreamBlocks = transformer.singleStreamBlocks.map(
    (block, i): SingleStreamBlock => ({
      forward(hidden, context) {
        const out = block.forward(hidden, context);
        copy(`single_stream_blocks.${i}.out0`, out);
        return out;
      },
    }),
  );
}

describe.each(DTYPES.flatMap((d) => CALLS.map((call) => ({ call, ...d }))))('HiDreamTransformer in $dtype, $call', ({ call, dtype, tag, roundoff }) => {
  it("gives diffusers' block outputs from diffusers' block inputs, rounding where it rounds", () => {
    const float32 = loadSafetensors(`${dir}/${call}.safetensors`);
    const ref = loadSafetensors(`${local}/${call}_${tag}.safetensors`);
    using transformer = HiDreamTransformer.load(`${dir}/transformer`, { dtype });
    expect(transformer.dtype).toBe(dtype);
    tidy(() => {
      const embedded = transformer.embed(goldenInputs(float32));
      // The timestep features computed in float32 and rounded to the dtype before the MLP, as diffusers'.
      expect(relativeL2(embedded.context.temb, ref['double_stream_blocks.0.in.temb'])).toBeLessThan(0.5 * roundoff);
      const context = { ...embedded.context, temb: ref['double_stream_blocks.0.in.temb'].cast(dtype) };
      if (ref['double_stream_blocks.0.in.hidden_states_masks'])
        expect(relativeL2(context.masks as Tensor, ref['double_stream_blocks.0.in.hidden_states_masks'])).toBe(0);
      transformer.doubleStreamBlocks.forEach((block, i) => {
        const p = `double_stream_blocks.${i}`;
        const [h, e] = block.forward(ref[`${p}.in.hidden_states`].cast(dtype), ref[`${p}.in.encoder_hidden_states`].cast(dtype), context);
        expect(h.dtype).toBe(dtype);
        expect(relativeL2(h, ref[`${p}.out0`]), `${p}.out0`).toBeLessThan(2 * roundoff);
        expect(relativeL2(e, ref[`${p}.out1`]), `${p}.out1`).toBeLessThan(2 * roundoff);
      });
      const single = singleStreamContext(context, ref['single_stream_blocks.0.in.hidden_states'].shape[1] - embedded.hidden.shape[1]);
      transformer.singleStreamBlocks.forEach((block, i) => {
        const p = `single_stream_blocks.${i}`;
        expect(relativeL2(block.forward(ref[`${p}.in.hidden_states`].cast(dtype), single), ref[`${p}.out0`]), p).toBeLessThan(2 * roundoff);
      });
    });
    for (const t of [...Object.values(float32), ...Object.values(ref)]) t.dispose();
  });

  it("tracks diffusers' call in the same dtype block by block", () => {
    const float32 = loadSafetensors(`${dir}/${call}.safetensors`);
    const ref = loadSafetensors(`${local}/${call}_${tag}.safetensors`);
    using transformer = HiDreamTransformer.load(`${dir}/transformer`, { dtype });
    const outputs = new Map<string, Tensor>();
    record(transformer, outputs);
    const before = memoryStats();
    // The float32 goldens' inputs: the transformer rounds latents and embeddings to its dtype.
    outputs.set('sample', transformer.forward(goldenInputs(float32)));
    expect(outputs.size).toBe(1 + 2 * transformer.config.num_layers + transformer.config.num_single_layers);
    for (const [name, t] of outputs) {
      expect(t.dtype, name).toBe(dtype);
      expect(relativeL2(t, ref[name]), `${name} vs diffusers ${dtype}`).toBeLessThan(6 * roundoff);
    }
    for (const t of outputs.values()) t.dispose();
    expect(memoryStats()).toEqual(before);
    for (const t of [...Object.values(float32), ...Object.values(ref)]) t.dispose();
  });
});

describe('HiDreamTransformer in 16-bit, 16 calls', () => {
  it("is as close to float32 as diffusers' calls in the same dtype (pooled), each call within 6 u of diffusers'", () => {
    const calls = loadSafetensors(`${local}/forward_seeds_16bit.safetensors`);
    const seeds = Object.keys(calls)
      .filter((k) => k.endsWith('.sample_f32'))
      .map((k) => Number(k.split('.')[0]));
    expect(seeds.length).toBe(16);
    // The inputs the reference tool drew: torch.randn with one fresh generator per tensor.
    const inputs = (seed: number) => ({
      hiddenStates: randnTensor([2, 4, 16, seed % 2 === 0 ? 16 : 24], 10 * seed),
      encoderHiddenStatesT5: randnTensor([2, 8, 32], 10 * seed + 1),
      encoderHiddenStatesLlama3: randnTensor([3, 2, 6, 16], 10 * seed + 2),
      pooledEmbeds: randnTensor([2, 64], 10 * seed + 3),
      timesteps: tensor(Float32Array.of((1000 * (((seed * 7) % 16) + 0.5)) / 16, (1000 * (((seed * 3) % 16) + 0.25)) / 16)),
    });
    using float32 = HiDreamTransformer.load(`${dir}/transformer`);
    tidy(() => expect(relativeL2(float32.forward(inputs(seeds[0])), calls[`${seeds[0]}.sample_f32`])).toBeLessThan(1e-5));
    for (const { dtype, tag, roundoff } of DTYPES) {
      using transformer = HiDreamTransformer.load(`${dir}/transformer`, { dtype });
      const errors = { ours: 0, diffusers: 0 };
      for (const seed of seeds) {
        tidy(() => {
          const sample = transformer.forward(inputs(seed));
          expect(relativeL2(sample, calls[`${seed}.sample_${tag}`]), `call ${seed} vs diffusers ${dtype}`).toBeLessThan(6 * roundoff);
          errors.ours += relativeL2(sample, calls[`${seed}.sample_f32`]) / seeds.length;
          errors.diffusers += relativeL2(calls[`${seed}.sample_${tag}`], calls[`${seed}.sample_f32`]) / seeds.length;
        });
      }
      expect(errors.ours, dtype).toBeLessThanOrEqual(ACCURACY_RATIO * errors.diffusers);
    }
    for (const t of Object.values(calls)) t.dispose();
  });
});

const request = (embeds: Record<string, Tensor>, latents: Tensor) => ({
  promptEmbedsT5: embeds.prompt_embeds_t5,
  promptEmbedsLlama3: embeds.prompt_embeds_llama3,
  pooledPromptEmbeds: embeds.pooled_prompt_embeds,
  negativePromptEmbedsT5: embeds.negative_prompt_embeds_t5,
  negativePromptEmbedsLlama3: embeds.negative_prompt_embeds_llama3,
  negativePooledPromptEmbeds: embeds.negative_pooled_prompt_embeds,
  latents,
  height: meta.height,
  width: meta.width,
  numInferenceSteps: meta.num_inference_steps,
  guidanceScale: meta.guidance_scale,
});

function loadPipeline(dtype?: 'bfloat16' | 'float16'): HiDreamPipeline {
  const pipe = HiDreamPipeline.fromPretrained(dir, { dtype });
  pipe.defaultSampleSize = meta['pipe.default_sample_size'];
  return pipe;
}

describe.each(DTYPES)('HiDreamPipeline in $dtype', ({ dtype, tag, roundoff }) => {
  it("generates diffusers' latents and image in that dtype (VAE included)", () => {
    const float32 = loadSafetensors(`${dir}/pipeline.safetensors`);
    const ref = loadSafetensors(`${local}/pipeline_${tag}.safetensors`);
    using pipe = loadPipeline(dtype);
    expect([pipe.dtype, pipe.vae.dtype]).toEqual([dtype, dtype]);
    const refSteps = ref.step_latents.split(meta.num_inference_steps, 0).map((t) => t.squeeze(0));
    const steps: Tensor[] = [];
    const before = memoryStats();
    const result = pipe.generate({ ...request(float32, float32.latents_in), callback: ({ latents }) => void steps.push(latents.clone().keep()) });
    // Latents stay in the dtype; the image is widened to float32 as diffusers' output_type="np".
    expect(result.latents.dtype).toBe(dtype);
    expect(result.image!.dtype).toBe('float32');
    steps.forEach((latents, i) => expect(relativeL2(latents, refSteps[i]), `step ${i}`).toBeLessThan(6 * roundoff));
    expect(relativeL2(result.latents, ref.latents_out)).toBeLessThan(6 * roundoff);
    expect(relativeL2(result.image!, ref.image_out)).toBeLessThan(6 * roundoff);
    // The VAE stage on its own: diffusers' 16-bit latents, decoded here in 16-bit, are diffusers' image.
    const image = tidy(() => pipe.decodeLatents(ref.latents_out.cast(dtype)));
    expect(relativeL2(image, ref.image_out)).toBeLessThan(3 * roundoff);
    for (const t of [...steps, result.latents, result.image!, image]) t.dispose();
    expect(memoryStats()).toEqual(before);
    refSteps.forEach((t) => t.dispose());
    for (const t of [...Object.values(float32), ...Object.values(ref)]) t.dispose();
  });
});

describe('HiDreamPipeline in 16-bit, 16 runs', () => {
  it("is as close to float32 as diffusers' runs in the same dtype: latents within 1.5x, images' PSNR within 1 dB", () => {
    const embeds = loadSafetensors(`${dir}/pipeline.safetensors`);
    const seeds = loadSafetensors(`${local}/seeds_16bit.safetensors`);
    const runs = seeds.latents_in.shape[0];
    const run = (name: string, i: number): Tensor => seeds[name].narrow(0, i, 1).squeeze(0);
    const reference = Array.from({ length: runs }, (_, i) => run('image_out_f32', i));
    for (const { dtype, tag } of DTYPES) {
      using pipe = loadPipeline(dtype);
      const ours: Tensor[] = [];
      const latentErrors = { ours: 0, diffusers: 0 };
      for (let i = 0; i < runs; ++i) {
        const result = pipe.generate(request(embeds, run('latents_in', i)));
        latentErrors.ours += relativeL2(result.latents, run('latents_out_f32', i)) / runs;
        latentErrors.diffusers += relativeL2(run(`latents_out_${tag}`, i), run('latents_out_f32', i)) / runs;
        ours.push(result.image!);
        result.latents.dispose();
      }
      const theirs = Array.from({ length: runs }, (_, i) => run(`image_out_${tag}`, i));
      expect(latentErrors.ours, `${dtype} latents`).toBeLessThanOrEqual(ACCURACY_RATIO * latentErrors.diffusers);
      expect(pooledPsnr(ours, reference), `${dtype} PSNR`).toBeGreaterThanOrEqual(pooledPsnr(theirs, reference) - PSNR_MARGIN);
      for (const t of ours) t.dispose();
    }
    for (const t of [...Object.values(seeds), ...Object.values(embeds)]) t.dispose();
  });
});

describe('dtype', () => {
  it('is refused when unknown, naming the valid ones', () => {
    expect(() => HiDreamTransformer.load(`${dir}/transformer`, { dtype: 'bf16' as 'bfloat16' })).toThrow(/'bf16'.*float32, bfloat16, float16/);
    expect(() => HiDreamPipeline.fromPretrained(dir, { dtype: 'half' as 'float16' })).toThrow(/dtype.*'half'.*float32, bfloat16, float16/);
  });

  it('stops a float16 run whose activations overflow with an error naming the step and the block; bfloat16 runs it', () => {
    const inputs = loadSafetensors(`${dir}/pipeline.safetensors`);
    // T5 embeddings 30000 times too large: the text stream leaves float16's range in the first block.
    const huge = tidy(() => mul(inputs.prompt_embeds_t5, 3e4));
    const req = { ...request(inputs, inputs.latents_in), promptEmbedsT5: huge, guidanceScale: 1, numInferenceSteps: 3, decode: false };
    using fp16 = loadPipeline('float16');
    const before = memoryStats();
    expect(() => fp16.generate(req)).toThrow(/float16 overflow at step 1 of 3, in double_stream_blocks\.0: .*bfloat16/);
    expect(memoryStats()).toEqual(before);
    using bf16 = loadPipeline('bfloat16');
    bf16.generate(req).latents.dispose();
    for (const t of [huge, ...Object.values(inputs)]) t.dispose();
  });

  it("picks a token's experts as torch.topk does when 16-bit scores tie (torch's picks on tied rows)", () => {
    // torch.topk(x, 2, sorted=False) on rows of 4 with ties, as torch 2.13 returned them on the CPU.
    const rows = [
      [0.25, 0.25, 0.25, 0.25],
      [0.5, 0.25, 0.25, 0.25],
      [0.25, 0.5, 0.25, 0.25],
      [0.25, 0.25, 0.25, 0.5],
      [0.5, 0.25, 0.5, 0.25],
      [0.125, 0.25, 0.25, 0.125],
      [0.5, 0.25, 0.25, 0.5],
    ];
    const torch = [
      [2, 3],
      [0, 2],
      [1, 3],
      [3, 2],
      [0, 2],
      [1, 2],
      [3, 0],
    ];
    expect(Array.from(torchTopkIndices(rows.flat(), rows.length, 4, 2))).toEqual(torch.flat());
  });

  it('reaches the worker and the CLI family: spawned and CLI-loaded pipelines and transformers compute as the local ones, bit for bit', async () => {
    const inputs = loadSafetensors(`${dir}/pipeline.safetensors`);
    const forward = loadSafetensors(`${dir}/transformer_forward.safetensors`);
    using api = HiDreamTransformer.load(`${dir}/transformer`, { dtype: 'bfloat16' });
    using cli = hidreamCliFamily.loadTransformer!(`${dir}/transformer`, { dtype: 'bfloat16' });
    using a = api.forward(goldenInputs(forward));
    using b = cli.forward(forward, 'transformer_forward.safetensors');
    expect(b.dtype).toBe('bfloat16');
    expect(Buffer.compare(Buffer.from(a.toBytes()), Buffer.from(b.toBytes()))).toBe(0);

    const settings = { height: meta.height, width: meta.width, steps: 3, seed: 3, defaultSampleSize: meta['pipe.default_sample_size'] };
    const req = hidreamCliFamily.request(inputs, 'pipeline.safetensors', settings) as Parameters<HiDreamPipeline['generate']>[0];
    using local = loadPipeline('bfloat16');
    const remote = await hidreamCliFamily.spawn(dir, { dtype: 'bfloat16' });
    try {
      const want = local.generate(req);
      const got = (await remote.generate(req)) as HiDreamGenerateResult;
      expect(got.latents.dtype).toBe('bfloat16');
      expect(Buffer.compare(Buffer.from(want.latents.toBytes()), Buffer.from(got.latents.toBytes()))).toBe(0);
      expect(Buffer.compare(Buffer.from(want.image!.toBytes()), Buffer.from(got.image!.toBytes()))).toBe(0);
      for (const t of [want.latents, want.image!, got.latents, got.image!]) t.dispose();
    } finally {
      await remote.close();
      for (const t of [...Object.values(inputs), ...Object.values(forward)]) t.dispose();
    }
  });
});
