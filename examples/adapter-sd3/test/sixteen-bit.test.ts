// SD3 and SD3.5 computing in bfloat16 and float16 (`dtype`, diffusers' torch_dtype) against
// diffusers in the same dtype (test/goldens/*/..._bf16 / _fp16, from tools/make_16bit_references.py)
// and, the issue's criteria, against float32: our 16-bit error within 1.5x of diffusers' own, and
// our images' PSNR against diffusers' float32 images at most 1 dB below that of diffusers' 16-bit
// ones (pooled over 16 runs from other initial noise: one run's PSNR moves by a few dB with the
// last bits of the latents on these tiny models, for diffusers' runs as for ours).
//
// Tolerance against diffusers' 16-bit run, in units of roundoff of the dtype (u = 2^-8 for
// bfloat16, 2^-11 for float16): 1 u for each block given diffusers' own inputs, 3 u for whole
// calls, every step's latents and the image. Both sides round the same ops at the same places
// (SD3.5's q / k norms round twice, as diffusers' RMSNorm does: rounding once puts those blocks
// 0.1-0.15 u further away), so what is left is float32 accumulation in another order and
// attention, whose softmax numerators PyTorch's CPU flash attention rounds to the dtype and the
// runtime's kernel does not. Measured, bf16 and fp16 alike: blocks 0.0-0.35 u, samples 0.65-1.0
// u, latents 1.65-2.0 u, images 1.7-2.2 u; the 16-bit VAE alone, from diffusers' latents, 1.5-1.7 u.
import { describe, expect, it } from 'vitest';

import { loadSafetensors, memoryStats, mul, tidy, type Tensor } from '@ditcache/cuda-runtime';

import sd3CliFamily from '../src/cli-family.js';
import { SD3Transformer, StableDiffusion3Pipeline, type SD3Block } from '../src/index.js';
import { goldenRequest, goldens, metaOf, relativeL2, SETS } from './helpers.js';

const DTYPES = [
  { dtype: 'bfloat16', tag: 'bf16', roundoff: 2 ** -8 },
  { dtype: 'float16', tag: 'fp16', roundoff: 2 ** -11 },
] as const;
const CASES = SETS.flatMap((set) => DTYPES.map((d) => ({ set, ...d })));

/** The issue's bound on our 16-bit error against float32, relative to diffusers' own. */
const ACCURACY_RATIO = 1.5;
/** The issue's bound on our images' PSNR against float32, below diffusers' 16-bit images' (dB). */
const PSNR_MARGIN = 1;

/** Mean squared error of two images in [0, 1]. */
function mse(a: Tensor, b: Tensor): number {
  const [x, y] = [a.toFloat32Array(), b.toFloat32Array()];
  let sum = 0;
  for (let i = 0; i < x.length; ++i) sum += (x[i] - y[i]) ** 2;
  return sum / x.length;
}

/** Wraps blocks so that each one's outputs are copied out under `transformer_blocks.{i}.out0/out1`. */
function recording(blocks: SD3Block[], into: Map<string, Tensor>): SD3Block[] {
  return blocks.map((block, i) => ({
    forward(hidden, encoder, temb) {
      const [e, h] = block.forward(hidden, encoder, temb);
      if (e) into.set(`transformer_blocks.${i}.out0`, e.clone().keep());
      into.set(`transformer_blocks.${i}.out1`, h.clone().keep());
      return [e, h];
    },
  }));
}

describe.each(CASES)('SD3Transformer in $dtype on $set', ({ set, dtype, tag, roundoff }) => {
  it("gives diffusers' block outputs from diffusers' block inputs, rounding where it rounds", () => {
    const ref = loadSafetensors(`${goldens}/${set}/transformer_forward_${tag}.safetensors`);
    using transformer = SD3Transformer.load(`${goldens}/${set}/transformer`, { dtype });
    expect(transformer.dtype).toBe(dtype);
    tidy(() => {
      transformer.transformerBlocks.forEach((block, i) => {
        const p = `transformer_blocks.${i}`;
        const [e, h] = block.forward(
          ref[`${p}.in.hidden_states`].cast(dtype),
          ref[`${p}.in.encoder_hidden_states`].cast(dtype),
          ref[`${p}.in.temb`].cast(dtype),
        );
        expect(h.dtype).toBe(dtype);
        expect(relativeL2(h, ref[`${p}.out1`]), `${p}.out1`).toBeLessThan(roundoff);
        if (e) expect(relativeL2(e, ref[`${p}.out0`]), `${p}.out0`).toBeLessThan(roundoff);
      });
    });
    for (const t of Object.values(ref)) t.dispose();
  });

  it("tracks diffusers' call in the same dtype block by block, and is as close to float32 as it", () => {
    const float32 = loadSafetensors(`${goldens}/${set}/transformer_forward.safetensors`);
    const ref = loadSafetensors(`${goldens}/${set}/transformer_forward_${tag}.safetensors`);
    using transformer = SD3Transformer.load(`${goldens}/${set}/transformer`, { dtype });
    const outputs = new Map<string, Tensor>();
    transformer.transformerBlocks = recording(transformer.transformerBlocks, outputs);
    const before = memoryStats();
    // The float32 goldens' inputs: the transformer rounds latents and embeddings to its dtype.
    const sample = transformer.forward({
      hiddenStates: float32.hidden_states,
      encoderHiddenStates: float32.encoder_hidden_states,
      pooledProjections: float32.pooled_projections,
      timestep: float32.timestep,
    });
    outputs.set('sample', sample);
    expect(outputs.size).toBe(2 * transformer.config.num_layers);
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

describe.each(CASES)('StableDiffusion3Pipeline in $dtype on $set', ({ set, dtype, tag, roundoff }) => {
  it("generates diffusers' latents and image in that dtype (VAE included), as close to float32 as diffusers'", () => {
    const meta = metaOf(set);
    const float32 = loadSafetensors(`${goldens}/${set}/pipeline.safetensors`);
    const ref = loadSafetensors(`${goldens}/${set}/pipeline_${tag}.safetensors`);
    using pipe = StableDiffusion3Pipeline.fromPretrained(`${goldens}/${set}`, { dtype });
    expect([pipe.dtype, pipe.vae.dtype]).toEqual([dtype, dtype]);
    const refSteps = ref.step_latents.split(meta.num_inference_steps, 0).map((t) => t.squeeze(0));
    const steps: Tensor[] = [];
    const before = memoryStats();
    const result = pipe.generate({ ...goldenRequest(float32, meta), callback: ({ latents }) => void steps.push(latents.clone().keep()) });
    // Latents stay in the dtype; the image is widened to float32 as diffusers' output_type="np".
    expect(result.latents.dtype).toBe(dtype);
    expect(result.image!.dtype).toBe('float32');
    steps.forEach((latents, i) => expect(relativeL2(latents, refSteps[i]), `step ${i}`).toBeLessThan(3 * roundoff));
    expect(relativeL2(result.latents, ref.latents_out)).toBeLessThan(3 * roundoff);
    expect(relativeL2(result.image!, ref.image_out)).toBeLessThan(3 * roundoff);
    expect(relativeL2(result.latents, float32.latents_out)).toBeLessThanOrEqual(ACCURACY_RATIO * relativeL2(ref.latents_out, float32.latents_out));
    // The VAE stage on its own: diffusers' 16-bit latents, decoded here in 16-bit, are diffusers' image.
    const image = tidy(() => pipe.decodeLatents(ref.latents_out.cast(dtype)));
    expect(relativeL2(image, ref.image_out)).toBeLessThan(3 * roundoff);
    for (const t of [...steps, result.latents, result.image!, image]) t.dispose();
    expect(memoryStats()).toEqual(before);
    refSteps.forEach((t) => t.dispose());
    for (const t of [...Object.values(float32), ...Object.values(ref)]) t.dispose();
  });
});

describe.each(SETS)('StableDiffusion3Pipeline in 16-bit on %s, 16 runs', (set) => {
  it("is as close to float32 as diffusers' runs in the same dtype: latents within 1.5x, images' PSNR within 1 dB", () => {
    const meta = metaOf(set);
    const embeds = loadSafetensors(`${goldens}/${set}/pipeline.safetensors`);
    const seeds = loadSafetensors(`${goldens}/${set}/seeds_16bit.safetensors`);
    const runs = seeds.latents_in.shape[0];
    const run = (name: string, i: number): Tensor => seeds[name].narrow(0, i, 1).squeeze(0);
    /** PSNR (dB, data range 1) of all runs' images together against the float32 runs' images. */
    const pooledPsnr = (images: Tensor[]): number => -10 * Math.log10(images.reduce((sum, image, i) => sum + mse(image, run('image_out_f32', i)), 0) / runs);
    for (const { dtype, tag } of DTYPES) {
      using pipe = StableDiffusion3Pipeline.fromPretrained(`${goldens}/${set}`, { dtype });
      const ours: Tensor[] = [];
      const latentErrors = { ours: 0, diffusers: 0 };
      for (let i = 0; i < runs; ++i) {
        const result = pipe.generate({ ...goldenRequest(embeds, meta), latents: run('latents_in', i) });
        latentErrors.ours += relativeL2(result.latents, run('latents_out_f32', i)) / runs;
        latentErrors.diffusers += relativeL2(run(`latents_out_${tag}`, i), run('latents_out_f32', i)) / runs;
        ours.push(result.image!);
        result.latents.dispose();
      }
      const theirs = Array.from({ length: runs }, (_, i) => run(`image_out_${tag}`, i));
      expect(latentErrors.ours, `${dtype} latents`).toBeLessThanOrEqual(ACCURACY_RATIO * latentErrors.diffusers);
      expect(pooledPsnr(ours), `${dtype} PSNR`).toBeGreaterThanOrEqual(pooledPsnr(theirs) - PSNR_MARGIN);
      for (const t of ours) t.dispose();
    }
    for (const t of [...Object.values(seeds), ...Object.values(embeds)]) t.dispose();
  });
});

describe('dtype', () => {
  const dir = `${goldens}/sd35-tiny`;

  it('is refused when unknown, naming the valid ones', () => {
    expect(() => SD3Transformer.load(`${dir}/transformer`, { dtype: 'bf16' as 'bfloat16' })).toThrow(/'bf16'.*float32, bfloat16, float16/);
    expect(() => StableDiffusion3Pipeline.fromPretrained(dir, { dtype: 'half' as 'float16' })).toThrow(/dtype.*'half'.*float32, bfloat16, float16/);
  });

  it('stops a float16 run whose activations overflow with an error naming the step and the block; bfloat16 runs it', () => {
    const meta = metaOf('sd35-tiny');
    const inputs = loadSafetensors(`${dir}/pipeline.safetensors`);
    // Prompt embeddings 30000 times too large: the text stream leaves float16's range in block 0.
    const huge = tidy(() => mul(inputs.prompt_embeds, 3e4));
    const request = { ...goldenRequest(inputs, meta), promptEmbeds: huge, guidanceScale: 1, numInferenceSteps: 3, decode: false };
    using fp16 = StableDiffusion3Pipeline.fromPretrained(dir, { dtype: 'float16' });
    const before = memoryStats();
    expect(() => fp16.generate(request)).toThrow(/float16 overflow at step 1 of 3, in transformer_blocks\.0: .*bfloat16/);
    expect(memoryStats()).toEqual(before);
    using bf16 = StableDiffusion3Pipeline.fromPretrained(dir, { dtype: 'bfloat16' });
    bf16.generate(request).latents.dispose();
    for (const t of [huge, ...Object.values(inputs)]) t.dispose();
  });

  it('reaches the CLI family: a transformer loaded for ditcache forward --dtype computes as the API one, bit for bit', () => {
    const forward = loadSafetensors(`${dir}/transformer_forward.safetensors`);
    using api = SD3Transformer.load(`${dir}/transformer`, { dtype: 'bfloat16' });
    using cli = sd3CliFamily.loadTransformer!(`${dir}/transformer`, { dtype: 'bfloat16' });
    const x = {
      hiddenStates: forward.hidden_states,
      encoderHiddenStates: forward.encoder_hidden_states,
      pooledProjections: forward.pooled_projections,
      timestep: forward.timestep,
    };
    using a = api.forward(x);
    using b = cli.forward(forward, 'transformer_forward.safetensors');
    expect(b.dtype).toBe('bfloat16');
    expect(Buffer.compare(Buffer.from(a.toBytes()), Buffer.from(b.toBytes()))).toBe(0);
    for (const t of Object.values(forward)) t.dispose();
  });
});
