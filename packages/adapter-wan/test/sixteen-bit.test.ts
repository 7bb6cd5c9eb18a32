// Wan computing in bfloat16 and float16 (`dtype`, diffusers' torch_dtype) against diffusers in the
// same dtype (test/goldens/*_bf16 / *_fp16, from tools/make_16bit_references.py) and, the issue's
// criteria, against float32: our 16-bit error within 1.5x of diffusers' own, and our frames' PSNR
// against diffusers' float32 frames at most 1 dB below that of diffusers' 16-bit ones.
//
// The PSNR is pooled over 16 runs from other initial noise (seeds_16bit.safetensors): the tiny
// random-weight VAE turns the last bits of the latents into errors of up to 0.4 in a few pixels,
// so one run's PSNR swings between 22 and 95 dB with them, for diffusers' 16-bit runs as for ours;
// the frames come from decoding each run's final latents with the float32 VAE, which is
// diffusers' (the first test checks that handoff against diffusers' 16-bit frames).
//
// Tolerance against diffusers' 16-bit run, in units of roundoff of the dtype (u = 2^-8 for
// bfloat16, 2^-11 for float16): 1 u for each block given diffusers' inputs, 3 u for whole calls
// and runs. Both sides round the same ops at the same places, so what is left is float32
// accumulation in another order and attention: PyTorch's CPU flash attention rounds the
// unnormalised softmax numerators to the dtype before the product with V, the runtime's does not,
// which moves a tenth of the attention outputs by one unit. Measured (bf16 and fp16 alike): each block from diffusers' own inputs 0.1-0.3 u on wan-tiny,
// 0.5-0.7 u on the I2V / FLF2V models (512 text keys), held to 1 u; of that, attention is most:
// diffusers' own blocks with a float32-softmax attention are 0.3-0.35 u / 0.4-0.5 u from its
// reference, and a missed rounding adds about 0.3 u (the norms' modulation in bf16: 0.42-0.51 u
// on wan-tiny). Whole calls: samples 1.0-1.2 u; final latents 1.6-2.6 u (the error grows by about
// 0.15 u a step, as sampling amplifies any last-bit difference: at the end of a run it is as
// large as the 16-bit error itself, so the per-block test is the one that shows the rounding).
import { readFileSync } from 'node:fs';

import { describe, expect, it } from 'vitest';

import { loadSafetensors, memoryStats, mul, tidy, type Tensor } from '@ditcache/cuda-runtime';

import wanCliFamily from '../src/cli-family.js';
import { WanPipeline, WanTransformer, type WanBlock, type WanGenerateResult } from '../src/index.js';
import { goldens, localGoldens, relativeL2 } from './helpers.js';

const DTYPES = [
  { dtype: 'bfloat16', tag: 'bf16', roundoff: 2 ** -8 },
  { dtype: 'float16', tag: 'fp16', roundoff: 2 ** -11 },
] as const;

/** The issue's bound on our 16-bit error against float32, relative to diffusers' own. */
const ACCURACY_RATIO = 1.5;
/** The issue's bound on our frames' PSNR against float32, below diffusers' 16-bit frames' (dB). */
const PSNR_MARGIN = 1;

/** PSNR (dB) of frames in [0, 1] against `reference` (data range 1). */
function psnr(frames: Tensor, reference: Tensor): number {
  const [a, b] = [frames.toFloat32Array(), reference.toFloat32Array()];
  let sum = 0;
  for (let i = 0; i < a.length; ++i) sum += (a[i] - b[i]) ** 2;
  return 10 * Math.log10(a.length / sum);
}

/** Wraps blocks so that each one's output is copied out as `blocks.{i}.out0`. */
function recording(blocks: WanBlock[], into: Map<string, Tensor>): WanBlock[] {
  return blocks.map((block, i) => ({
    forward(hidden, encoder, temb, rotary, image) {
      const out = block.forward(hidden, encoder, temb, rotary, image);
      into.set(`blocks.${i}.out0`, out.clone().keep());
      return out;
    },
  }));
}

const FORWARDS = [
  { set: 'wan-tiny', dir: `${goldens}/wan-tiny`, refDir: `${localGoldens}/wan-tiny` },
  { set: 'wan-i2v-tiny', dir: `${localGoldens}/wan-i2v-tiny`, refDir: `${localGoldens}/wan-i2v-tiny` },
  { set: 'wan-flf2v-tiny', dir: `${localGoldens}/wan-flf2v-tiny`, refDir: `${localGoldens}/wan-flf2v-tiny` },
];

describe.each(DTYPES.flatMap((d) => FORWARDS.map((f) => ({ ...f, ...d }))))('WanTransformer in $dtype on $set', ({ dir, refDir, dtype, tag, roundoff }) => {
  it("tracks diffusers' run in the same dtype block by block, and is as close to float32 as it", () => {
    const float32 = loadSafetensors(`${dir}/transformer_forward.safetensors`);
    const ref = loadSafetensors(`${refDir}/transformer_forward_${tag}.safetensors`);
    using transformer = WanTransformer.load(`${dir}/transformer`, { dtype });
    expect(transformer.dtype).toBe(dtype);
    // diffusers' _keep_in_fp32_modules: the modulation tables, time_embedder and the affine norms stay float32.
    expect([transformer.scaleShiftTable.dtype, transformer.conditionEmbedder.timeEmbedder.linear1.weight.dtype]).toEqual(['float32', 'float32']);
    expect(transformer.projOut.weight.dtype).toBe(dtype);
    const outputs = new Map<string, Tensor>();
    transformer.blocks = recording(transformer.blocks, outputs);
    const before = memoryStats();
    // The float32 goldens' inputs: the transformer rounds latents and embeddings to its dtype.
    const sample = transformer.forward({
      hiddenStates: float32.hidden_states,
      timestep: float32.timestep,
      encoderHiddenStates: float32.encoder_hidden_states,
      encoderHiddenStatesImage: float32.encoder_hidden_states_image,
    });
    outputs.set('sample', sample);
    expect(outputs.size).toBe(1 + transformer.config.num_layers);
    for (const [name, t] of outputs) {
      expect(t.dtype, name).toBe(dtype);
      expect(relativeL2(t, ref[name]), `${name} vs diffusers ${dtype}`).toBeLessThan(3 * roundoff);
    }
    expect(relativeL2(sample, float32.sample)).toBeLessThanOrEqual(ACCURACY_RATIO * relativeL2(ref.sample, float32.sample));
    for (const t of outputs.values()) t.dispose();
    expect(memoryStats()).toEqual(before);
    for (const t of [...Object.values(float32), ...Object.values(ref)]) t.dispose();
  });
});

describe.each(DTYPES.flatMap((d) => FORWARDS.map((f) => ({ ...f, ...d }))))(
  'WanTransformer blocks in $dtype on $set',
  ({ dir, refDir, dtype, tag, roundoff }) => {
    it("give diffusers' output from diffusers' inputs within one unit of roundoff: they round where diffusers rounds", () => {
      const float32 = loadSafetensors(`${dir}/transformer_forward.safetensors`);
      const ref = loadSafetensors(`${refDir}/transformer_forward_${tag}.safetensors`);
      using transformer = WanTransformer.load(`${dir}/transformer`, { dtype });
      const grid = float32.hidden_states.shape.slice(2).map((side, i) => side / transformer.config.patch_size[i]) as [number, number, number];
      tidy(() => {
        // diffusers joins the image tokens in front of the text; they travel apart here.
        const joined = ref['blocks.0.in1'].cast(dtype);
        const textTokens = float32.encoder_hidden_states.shape[1];
        const imageTokens = joined.shape[1] - textTokens;
        const text = joined.narrow(1, imageTokens, textTokens);
        const image = imageTokens ? joined.narrow(1, 0, imageTokens) : null;
        const rotary = transformer.rotaryEmbedding(grid);
        transformer.blocks.forEach((block, i) => {
          const input = ref[i === 0 ? 'blocks.0.in0' : `blocks.${i - 1}.out0`].cast(dtype);
          const out = block.forward(input, text, ref['blocks.0.in2'].cast(dtype), rotary, image);
          expect(relativeL2(out, ref[`blocks.${i}.out0`]), `block ${i}`).toBeLessThan(roundoff);
        });
        // The condition embedder: the timestep embedding computed in float32 (time_embedder's float32
        // weights) and rounded once, as diffusers' (measured 0-0.12 u: float32 accumulation in
        // another order can tip a rounding of temb, which time_proj carries on).
        const conditions = transformer.conditionEmbedder.forward(float32.timestep.toFloat32Array(), float32.encoder_hidden_states.cast(dtype));
        expect(relativeL2(conditions.temb, ref['condition_embedder.out0'])).toBeLessThan(0.5 * roundoff);
        expect(relativeL2(conditions.timestepProj.reshape(...ref['condition_embedder.out1'].shape), ref['condition_embedder.out1'])).toBeLessThan(
          0.5 * roundoff,
        );
      });
      for (const t of [...Object.values(float32), ...Object.values(ref)]) t.dispose();
    });
  },
);

describe.each(DTYPES.flatMap((d) => ['wan-tiny', 'wan-tiny/wan22'].map((set) => ({ set, ...d }))))(
  'WanPipeline in $dtype on $set',
  ({ set, dtype, tag, roundoff }) => {
    it("generates diffusers' latents and frames in that dtype (VAE in float32), as close to float32 as diffusers'", () => {
      const meta = JSON.parse(readFileSync(`${goldens}/${set}/meta.json`, 'utf-8')) as Record<string, number>;
      const float32 = loadSafetensors(`${goldens}/${set}/pipeline.safetensors`);
      const ref = loadSafetensors(`${localGoldens}/${set}/pipeline_${tag}.safetensors`);
      using pipe = WanPipeline.fromPretrained(`${goldens}/${set}`, { dtype });
      expect([pipe.dtype, pipe.transformer2?.dtype ?? dtype]).toEqual([dtype, dtype]);
      const refSteps = ref.step_latents.split(meta.num_inference_steps, 0).map((t) => t.squeeze(0));
      const steps: Tensor[] = [];
      const before = memoryStats();
      const result = pipe.generate({
        promptEmbeds: float32.prompt_embeds,
        negativePromptEmbeds: float32.negative_prompt_embeds,
        latents: float32.latents_in,
        height: meta.height,
        width: meta.width,
        numFrames: meta.num_frames,
        numInferenceSteps: meta.num_inference_steps,
        guidanceScale: meta.guidance_scale,
        guidanceScale2: meta.guidance_scale_2,
        callback: ({ latents }) => void steps.push(latents.clone().keep()),
      });
      // FlowMatchEuler (Wan 2.1) hands back latents in the model's dtype, UniPC (Wan 2.2) in float32,
      // as diffusers' schedulers do; the frames are float32, from the float32 VAE.
      expect(result.latents.dtype).toBe(set === 'wan-tiny' ? dtype : 'float32');
      expect(result.video!.dtype).toBe('float32');
      steps.forEach((latents, i) => expect(relativeL2(latents, refSteps[i]), `step ${i}`).toBeLessThan(3 * roundoff));
      expect(relativeL2(result.latents, ref.latents_out)).toBeLessThan(3 * roundoff);
      expect(relativeL2(result.latents, float32.latents_out)).toBeLessThanOrEqual(ACCURACY_RATIO * relativeL2(ref.latents_out, float32.latents_out));
      // The VAE stage: diffusers' 16-bit latents, decoded here, are diffusers' frames.
      const frames = pipe.decodeLatents(ref.latents_out);
      expect(relativeL2(frames, ref.video_out)).toBeLessThan(1e-5);
      for (const t of [...steps, result.latents, result.video!, frames]) t.dispose();
      expect(memoryStats()).toEqual(before);
      refSteps.forEach((t) => t.dispose());
      for (const t of [...Object.values(float32), ...Object.values(ref)]) t.dispose();
    });
  },
);

describe.each(['wan-tiny', 'wan-tiny/wan22'])('WanPipeline in 16-bit on %s, 16 runs', (set) => {
  it("is as close to float32 as diffusers' run in the same dtype: latents within 1.5x, frames' PSNR within 1 dB", () => {
    const meta = JSON.parse(readFileSync(`${goldens}/${set}/meta.json`, 'utf-8')) as Record<string, number>;
    const embeds = loadSafetensors(`${goldens}/${set}/pipeline.safetensors`);
    const seeds = loadSafetensors(`${localGoldens}/${set}/seeds_16bit.safetensors`);
    const runs = seeds.latents_in.shape[0];
    const run = (name: string, i: number): Tensor => seeds[name].narrow(0, i, 1).squeeze(0);
    using float32 = WanPipeline.fromPretrained(`${goldens}/${set}`);
    const reference = Array.from({ length: runs }, (_, i) => float32.decodeLatents(run('latents_out_f32', i)).keep());
    /** PSNR (dB) of all runs' frames together against the float32 runs' frames. */
    const pooledPsnr = (frames: Tensor[]): number => -10 * Math.log10(frames.reduce((sum, f, i) => sum + 10 ** (-psnr(f, reference[i]) / 10), 0) / runs);
    for (const { dtype, tag } of DTYPES) {
      using pipe = WanPipeline.fromPretrained(`${goldens}/${set}`, { dtype });
      const ours: Tensor[] = [];
      const latentErrors = { ours: 0, diffusers: 0 };
      for (let i = 0; i < runs; ++i) {
        const result = pipe.generate({
          promptEmbeds: embeds.prompt_embeds,
          negativePromptEmbeds: embeds.negative_prompt_embeds,
          latents: run('latents_in', i),
          height: meta.height,
          width: meta.width,
          numFrames: meta.num_frames,
          numInferenceSteps: meta.num_inference_steps,
          guidanceScale: meta.guidance_scale,
          guidanceScale2: meta.guidance_scale_2,
        });
        latentErrors.ours += relativeL2(result.latents, run('latents_out_f32', i)) / runs;
        latentErrors.diffusers += relativeL2(run(`latents_out_${tag}`, i), run('latents_out_f32', i)) / runs;
        ours.push(result.video!);
        result.latents.dispose();
      }
      const theirs = Array.from({ length: runs }, (_, i) => float32.decodeLatents(run(`latents_out_${tag}`, i)));
      expect(latentErrors.ours, `${dtype} latents`).toBeLessThanOrEqual(ACCURACY_RATIO * latentErrors.diffusers);
      expect(pooledPsnr(ours), `${dtype} PSNR`).toBeGreaterThanOrEqual(pooledPsnr(theirs) - PSNR_MARGIN);
      for (const t of [...ours, ...theirs]) t.dispose();
    }
    for (const t of [...reference, ...Object.values(seeds), ...Object.values(embeds)]) t.dispose();
  });
});

describe('dtype', () => {
  const folder = `${goldens}/wan-tiny/wan22`;

  it('is refused when unknown, naming the valid ones', () => {
    expect(() => WanTransformer.load(`${folder}/transformer`, { dtype: 'bf16' as 'bfloat16' })).toThrow(/'bf16'.*float32, bfloat16, float16/);
    expect(() => WanPipeline.fromPretrained(folder, { dtype: 'half' as 'float16' })).toThrow(/dtype.*'half'.*float32, bfloat16, float16/);
  });

  it('stops a float16 run whose activations overflow with an error naming the step and the block; bfloat16 runs it', () => {
    const meta = JSON.parse(readFileSync(`${folder}/meta.json`, 'utf-8')) as Record<string, number>;
    const inputs = loadSafetensors(`${folder}/pipeline.safetensors`);
    // Prompt embeddings 30000 times too large: the projected text leaves float16's range in block 0.
    const huge = tidy(() => mul(inputs.prompt_embeds, 3e4));
    const request = {
      promptEmbeds: huge,
      negativePromptEmbeds: inputs.negative_prompt_embeds,
      latents: inputs.latents_in,
      height: meta.height,
      width: meta.width,
      numFrames: meta.num_frames,
      numInferenceSteps: 3,
      decode: false,
    };
    using fp16 = WanPipeline.fromPretrained(folder, { dtype: 'float16' });
    const before = memoryStats();
    expect(() => fp16.generate(request)).toThrow(/float16 overflow at step 1 of 3, in blocks\.0: .*bfloat16/);
    expect(memoryStats()).toEqual(before);
    using bf16 = WanPipeline.fromPretrained(folder, { dtype: 'bfloat16' });
    bf16.generate(request).latents.dispose();
    for (const t of [huge, ...Object.values(inputs)]) t.dispose();
  });

  it('reaches the worker: a spawned pipeline generates what the local one does, bit for bit', async () => {
    const meta = JSON.parse(readFileSync(`${folder}/meta.json`, 'utf-8')) as Record<string, number>;
    const inputs = loadSafetensors(`${folder}/pipeline.safetensors`);
    const request = {
      promptEmbeds: inputs.prompt_embeds,
      negativePromptEmbeds: inputs.negative_prompt_embeds,
      seed: 7,
      height: meta.height,
      width: meta.width,
      numFrames: meta.num_frames,
      numInferenceSteps: 4,
    };
    const local = WanPipeline.fromPretrained(folder, { dtype: 'bfloat16' });
    const remote = await WanPipeline.spawn(folder, { dtype: 'bfloat16' });
    try {
      const a = local.generate(request);
      const b = await remote.generate(request);
      expect(Buffer.compare(Buffer.from(a.latents.toBytes()), Buffer.from(b.latents.toBytes()))).toBe(0);
      expect(Buffer.compare(Buffer.from(a.video!.toBytes()), Buffer.from(b.video!.toBytes()))).toBe(0);
      for (const t of [a.latents, a.video!, b.latents, b.video!]) t.dispose();
    } finally {
      local.dispose();
      await remote.close();
      for (const t of Object.values(inputs)) t.dispose();
    }
  });

  it('reaches the CLI family: ditcache forward / generate --dtype load and generate as the API does, bit for bit', async () => {
    const x = loadSafetensors(`${goldens}/wan-tiny/transformer_forward.safetensors`);
    using api = WanTransformer.load(`${folder}/transformer`, { dtype: 'float16' });
    using cli = wanCliFamily.loadTransformer!(`${folder}/transformer`, { dtype: 'float16' });
    using a = api.forward({ hiddenStates: x.hidden_states, timestep: x.timestep, encoderHiddenStates: x.encoder_hidden_states });
    using b = cli.forward(x, 'transformer_forward.safetensors');
    expect(b.dtype).toBe('float16');
    expect(Buffer.compare(Buffer.from(a.toBytes()), Buffer.from(b.toBytes()))).toBe(0);

    const meta = JSON.parse(readFileSync(`${folder}/meta.json`, 'utf-8')) as Record<string, number>;
    const inputs = loadSafetensors(`${folder}/pipeline.safetensors`);
    const settings = { height: meta.height, width: meta.width, frames: meta.num_frames, steps: 3, seed: 3 };
    const request = wanCliFamily.request(inputs, 'pipeline.safetensors', settings) as Parameters<WanPipeline['generate']>[0];
    using local = WanPipeline.fromPretrained(folder, { dtype: 'float16' });
    const remote = await wanCliFamily.spawn(folder, { dtype: 'float16' });
    try {
      const want = local.generate(request);
      const got = (await remote.generate(request)) as WanGenerateResult;
      expect(Buffer.compare(Buffer.from(want.latents.toBytes()), Buffer.from(got.latents.toBytes()))).toBe(0);
      for (const t of [want.latents, want.video!, got.latents, got.video!]) t.dispose();
    } finally {
      await remote.close();
      for (const t of [...Object.values(inputs), ...Object.values(x)]) t.dispose();
    }
  });
});
