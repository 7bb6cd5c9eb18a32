"""Makes the 16-bit reference data of @ditcache/adapter-wan (test/goldens/): what diffusers computes
with torch_dtype=torch.bfloat16 and torch.float16 on the shared wan-tiny models and this package's
image-to-video ones, so that the tests can check that `dtype: 'bfloat16'` / `'float16'` tracks
diffusers' run in that dtype, op for op, and is as close to the float32 reference as diffusers' is.

Not run by CI and never by the tests: the tests read only what this wrote. Run it by hand in a
throwaway venv with torch and diffusers (from the repository root):

    /work/shared/tools/reference-venv.sh /tmp/wanvenv DIFFUSERS_GIT_DIR
    /tmp/wanvenv/bin/python packages/adapter-wan/tools/make_16bit_references.py packages/adapter-wan/test/goldens

The inputs are those of the float32 references (testdata/goldens/wan-tiny and this package's
wan-i2v-tiny / wan-flf2v-tiny), which the tests read from there; this writes only the 16-bit
outputs, as float32 tensors (exact), named `_bf16` / `_fp16` beside the float32 files. Transformers
load as diffusers loads them for a 16-bit torch_dtype: every weight in that dtype but those of
`_keep_in_fp32_modules` (time_embedder, scale_shift_table, norm1 / norm2 / norm3, rope). The
pipelines follow the Wan model card's recipe: transformers in 16-bit, the VAE in float32
(`AutoencoderKLWan.from_pretrained(..., torch_dtype=torch.float32)`). No randomness: a rerun on
the same torch and diffusers writes the same tensors. test/goldens/README.md describes every file.
"""

import json
import math
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

import diffusers
from diffusers import AutoencoderKLWan, WanPipeline, WanTransformer3DModel

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[3]
WAN = REPO / "testdata/goldens/wan-tiny"
LOCAL = REPO / "packages/adapter-wan/test/goldens"
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
# On these tiny random-weight VAEs a frame's PSNR swings by tens of dB with the last bits of the
# latents (a few chaotic pixels carry the error), so the PSNR criterion is pooled over runs from
# this many initial noises.
SEEDS = range(100, 116)


def f32(tensors):
    return {k: v.detach().to(torch.float32).contiguous() for k, v in tensors.items()}


def relative_l2(a, b):
    return (torch.linalg.vector_norm(a.double() - b.double()) / torch.linalg.vector_norm(b.double())).item()


def psnr(a, b):
    """PSNR in dB of float images in [0, 1] (data range 1)."""
    mse = torch.mean((a.double() - b.double()) ** 2).item()
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


def record_forward(folder, inputs, dtype, image_key=None):
    """One 16-bit transformer call on the float32 reference's inputs (cast to the dtype, as the pipelines do)."""
    transformer = WanTransformer3DModel.from_pretrained(folder, torch_dtype=dtype).eval()
    recorded = {}

    def keep(name):
        def hook(_module, _args, output):
            for i, o in enumerate(output if isinstance(output, tuple) else (output,)):
                if o is not None:
                    recorded[f"{name}.out{i}"] = o
        return hook

    def keep_inputs(name):
        def hook(_module, args):
            for i, a in enumerate(args):
                if isinstance(a, torch.Tensor):
                    recorded[f"{name}.in{i}"] = a
        return hook

    handles = [transformer.condition_embedder.register_forward_hook(keep("condition_embedder"))]
    handles += [block.register_forward_hook(keep(f"blocks.{i}")) for i, block in enumerate(transformer.blocks)]
    handles += [transformer.blocks[0].register_forward_pre_hook(keep_inputs("blocks.0"))]
    kwargs = dict(hidden_states=inputs["hidden_states"].to(dtype), timestep=inputs["timestep"],
                  encoder_hidden_states=inputs["encoder_hidden_states"].to(dtype), return_dict=False)
    if image_key:
        kwargs["encoder_hidden_states_image"] = inputs[image_key].to(dtype)
    with torch.no_grad():
        sample = transformer(**kwargs)[0]
    for h in handles:
        h.remove()
    assert sample.dtype == dtype
    return f32({**recorded, "sample": sample})


def load_pipeline(folder, meta, dtype):
    """WanPipeline with transformers in `dtype` and a float32 VAE (the Wan model card's recipe)."""
    vae = AutoencoderKLWan.from_pretrained(folder / "vae", torch_dtype=torch.float32)
    extra = {} if meta.get("boundary_ratio") is not None else {"transformer_2": None}
    pipe = WanPipeline.from_pretrained(folder, vae=vae, tokenizer=None, text_encoder=None, torch_dtype=dtype, **extra)
    assert pipe.transformer.dtype == dtype and pipe.vae.dtype == torch.float32
    pipe.set_progress_bar_config(disable=True)
    return pipe


def call_args(ref, meta, latents):
    """The float32 golden's pipeline call, on `latents`."""
    args = dict(prompt_embeds=ref["prompt_embeds"], negative_prompt_embeds=ref["negative_prompt_embeds"], height=meta["height"],
                width=meta["width"], num_frames=meta["num_frames"], num_inference_steps=meta["num_inference_steps"],
                guidance_scale=meta["guidance_scale"], latents=latents)
    if meta.get("boundary_ratio") is not None:
        args["guidance_scale_2"] = meta["guidance_scale_2"]
    return args


def run_pipeline(folder, ref, meta, dtype):
    """One 16-bit run on the float32 golden's inputs, with the latents after every step and the frames."""
    pipe = load_pipeline(folder, meta, dtype)
    steps = []

    def on_step_end(_pipe, _i, _t, kwargs):
        steps.append(kwargs["latents"].clone())
        return {}

    with torch.no_grad():
        video = pipe(**call_args(ref, meta, ref["latents_in"]), callback_on_step_end=on_step_end, output_type="np", return_dict=False)[0]
    video = torch.from_numpy(video)
    out = {"latents_out": steps[-1], "step_latents": torch.stack(steps), "video_out": video}
    return f32(out), {"latents_dtype": str(steps[-1].dtype)}


def run_seeds(folder, ref, meta):
    """
    The final latents of runs from SEEDS' initial noise, in float32 and in each 16-bit dtype (the
    tests decode them with the float32 VAE, which equals diffusers'), and the pooled PSNR of the
    16-bit runs' frames against the float32 runs'.
    """
    latents_in = torch.stack([torch.randn(ref["latents_in"].shape, generator=torch.Generator().manual_seed(seed)) for seed in SEEDS])
    out, frames = {"latents_in": latents_in}, {}
    for tag, dtype in {"f32": torch.float32, **DTYPES}.items():
        pipe = load_pipeline(folder, meta, dtype)
        last, videos = [], []

        def on_step_end(_pipe, _i, _t, kwargs):
            last[-1:] = [kwargs["latents"].clone()]
            return {}

        for x in latents_in:
            with torch.no_grad():
                videos.append(torch.from_numpy(pipe(**call_args(ref, meta, x), callback_on_step_end=on_step_end, output_type="np", return_dict=False)[0]))
            out.setdefault(f"latents_out_{tag}", []).append(last[0])
        out[f"latents_out_{tag}"] = torch.stack(out[f"latents_out_{tag}"])
        frames[tag] = torch.stack(videos)
    pooled = {tag: psnr(frames[tag], frames["f32"]) for tag in DTYPES}
    return f32(out), pooled


def main(out_dir):
    out = Path(out_dir)
    meta = dict(diffusers=diffusers.__version__, torch=torch.__version__,
                recipe="transformers in torch_dtype, VAE float32 (the Wan model card's recipe)",
                errors="relative L2 of diffusers' 16-bit output against the float32 golden; psnr in dB of the float frames in [0, 1] (data range 1) against the float32 golden's")
    for tag, dtype in DTYPES.items():
        errors = meta[tag] = {}
        (out / "wan-tiny" / "wan22").mkdir(parents=True, exist_ok=True)
        ref = load_file(WAN / "transformer_forward.safetensors")
        fwd = record_forward(WAN / "transformer", ref, dtype)
        save_file(fwd, str(out / "wan-tiny" / f"transformer_forward_{tag}.safetensors"))
        errors["wan-tiny/transformer_forward.sample"] = relative_l2(fwd["sample"], ref["sample"])
        for name in ("wan-i2v-tiny", "wan-flf2v-tiny"):
            local = load_file(LOCAL / name / "transformer_forward.safetensors")
            rec = record_forward(LOCAL / name / "transformer", local, dtype, image_key="encoder_hidden_states_image")
            save_file(rec, str(out / name / f"transformer_forward_{tag}.safetensors"))
            errors[f"{name}/transformer_forward.sample"] = relative_l2(rec["sample"], local["sample"])

        for sub in ("wan-tiny", "wan-tiny/wan22"):
            folder = REPO / "testdata/goldens" / sub
            golden = load_file(folder / "pipeline.safetensors")
            tensors, info = run_pipeline(folder, golden, json.loads((folder / "meta.json").read_text()), dtype)
            save_file(tensors, str(out / sub / f"pipeline_{tag}.safetensors"))
            errors[f"{sub}/pipeline"] = {
                **info,
                "latents_out": relative_l2(tensors["latents_out"], golden["latents_out"]),
                "video_out": relative_l2(tensors["video_out"], golden["video_out"]),
                "video_out_psnr": psnr(tensors["video_out"], golden["video_out"]),
            }
    for sub in ("wan-tiny", "wan-tiny/wan22"):
        folder = REPO / "testdata/goldens" / sub
        seeds, pooled = run_seeds(folder, load_file(folder / "pipeline.safetensors"), json.loads((folder / "meta.json").read_text()))
        save_file(seeds, str(out / sub / "seeds_16bit.safetensors"))
        for tag in DTYPES:
            meta[tag][f"{sub}/seeds"] = {
                "latents_out": [relative_l2(a, b) for a, b in zip(seeds[f"latents_out_{tag}"], seeds["latents_out_f32"])],
                "video_out_pooled_psnr": pooled[tag],
            }
    meta["seeds"] = list(SEEDS)
    (out / "meta_16bit.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(json.dumps(meta, indent=2))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: make_16bit_references.py OUT_DIR")
    main(sys.argv[1])
