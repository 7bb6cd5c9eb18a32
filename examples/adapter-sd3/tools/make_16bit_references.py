"""Makes the 16-bit reference data of examples/adapter-sd3 (test/goldens/*/..._bf16 / _fp16 and
seeds_16bit): what diffusers computes with torch_dtype=torch.bfloat16 and torch.float16 on the
sd3-tiny and sd35-tiny folders, so that the tests can check that `dtype: 'bfloat16'` /
`'float16'` tracks diffusers' run in that dtype, op for op, and is as close to the float32
reference as diffusers' is.

Not run by CI and never by the tests: the tests read only what this wrote. Run it by hand in a
throwaway venv with torch and diffusers (from the repository root), after make_references.py:

    /work/shared/tools/reference-venv.sh /tmp/sd3venv DIFFUSERS_GIT_DIR
    /tmp/sd3venv/bin/python examples/adapter-sd3/tools/make_16bit_references.py examples/adapter-sd3/test/goldens

The inputs are those of the float32 references (transformer_forward.safetensors and
pipeline.safetensors of each folder), which the tests read from there; this writes only the 16-bit
outputs, as float32 tensors (exact) unless noted. Every component loads in the dtype, as
`StableDiffusion3Pipeline.from_pretrained(..., torch_dtype=...)` loads them (SD3Transformer2DModel
keeps nothing in float32; its positional embedding buffer takes the dtype too). The prompt
embeddings are cast to the dtype before the call, as 16-bit text encoders would return them; the
pipeline casts the initial latents itself. No randomness but the extra runs' initial noise, drawn
from fixed seeds: a rerun on the same torch and diffusers writes the same tensors.
test/goldens/README.md describes every file.
"""

import json
import math
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

import diffusers
from diffusers import StableDiffusion3Pipeline

torch.set_num_threads(1)

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
SETS = ["sd3-tiny", "sd35-tiny"]
# One run's PSNR moves by a few dB with the last bits of the latents on these tiny random-weight
# models, so the PSNR criterion is pooled over runs from this many initial noises.
SEEDS = range(100, 116)
EMBEDS = ["prompt_embeds", "pooled_prompt_embeds", "negative_prompt_embeds", "negative_pooled_prompt_embeds"]


def f32(tensors):
    return {k: v.detach().to(torch.float32).contiguous() for k, v in tensors.items()}


def relative_l2(a, b):
    return (torch.linalg.vector_norm(a.double() - b.double()) / torch.linalg.vector_norm(b.double())).item()


def psnr(a, b):
    """PSNR in dB of float images in [0, 1] (data range 1), pooled over everything given."""
    mse = torch.mean((a.double() - b.double()) ** 2).item()
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


def load_pipeline(folder, dtype):
    pipe = StableDiffusion3Pipeline.from_pretrained(folder, torch_dtype=dtype, text_encoder=None, tokenizer=None, text_encoder_2=None,
                                                    tokenizer_2=None, text_encoder_3=None, tokenizer_3=None)
    assert pipe.transformer.dtype == dtype and pipe.vae.dtype == dtype
    pipe.set_progress_bar_config(disable=True)
    return pipe


def record_forward(folder, inputs, dtype):
    """One 16-bit transformer call on the float32 golden's inputs cast to the dtype: every block's inputs and outputs."""
    transformer = load_pipeline(folder, dtype).transformer
    recorded = {}

    def keep(name):
        def hook(_module, _args, output):
            for i, o in enumerate(output if isinstance(output, tuple) else (output,)):
                # A context_pre_only block returns no encoder stream: out0 is absent for it.
                if o is not None:
                    recorded[f"{name}.out{i}"] = o
        return hook

    def keep_inputs(name):
        def hook(_module, _args, kwargs):
            for k in ("hidden_states", "encoder_hidden_states", "temb"):
                recorded[f"{name}.in.{k}"] = kwargs[k]
        return hook

    handles = [getattr(transformer, name).register_forward_hook(keep(name)) for name in ["pos_embed", "time_text_embed", "context_embedder"]]
    for i, block in enumerate(transformer.transformer_blocks):
        handles += [block.register_forward_hook(keep(f"transformer_blocks.{i}")),
                    block.register_forward_pre_hook(keep_inputs(f"transformer_blocks.{i}"), with_kwargs=True)]
    with torch.no_grad():
        sample = transformer(hidden_states=inputs["hidden_states"].to(dtype), encoder_hidden_states=inputs["encoder_hidden_states"].to(dtype),
                             pooled_projections=inputs["pooled_projections"].to(dtype), timestep=inputs["timestep"], return_dict=False)[0]
    for h in handles:
        h.remove()
    assert sample.dtype == dtype
    return f32({**recorded, "sample": sample})


def run(pipe, golden, meta, dtype, latents, on_step_end=None):
    """The float32 golden's pipeline call in `dtype` from `latents`: the image and the final latents."""
    last = []

    def step_end(_pipe, _i, _t, kwargs):
        last[-1:] = [kwargs["latents"].clone()]
        if on_step_end:
            on_step_end(kwargs["latents"])
        return {}

    with torch.no_grad():
        image = pipe(**{k: golden[k].to(dtype) for k in EMBEDS}, height=meta["height"], width=meta["width"],
                     num_inference_steps=meta["num_inference_steps"], guidance_scale=meta["guidance_scale"], latents=latents,
                     callback_on_step_end=step_end, output_type="np", return_dict=False)[0]
    assert last[0].dtype == dtype
    return torch.from_numpy(image), last[0]


def main(out_dir):
    out = Path(out_dir)
    info = dict(diffusers=diffusers.__version__, torch=torch.__version__, seeds=list(SEEDS),
                errors="relative L2 of diffusers' 16-bit output against the float32 golden; psnr in dB of the float images in [0, 1] (data range 1) against the float32 images")
    for name in SETS:
        folder = out / name
        meta = json.loads((folder / "meta.json").read_text())
        golden = load_file(folder / "pipeline.safetensors")
        forward = load_file(folder / "transformer_forward.safetensors")
        errors = info[name] = {}
        for tag, dtype in DTYPES.items():
            rec = record_forward(folder, forward, dtype)
            save_file(rec, str(folder / f"transformer_forward_{tag}.safetensors"))
            steps = []
            image, latents = run(load_pipeline(folder, dtype), golden, meta, dtype, golden["latents_in"], lambda x: steps.append(x.clone()))
            save_file(f32({"step_latents": torch.stack(steps), "latents_out": latents, "image_out": image}), str(folder / f"pipeline_{tag}.safetensors"))
            errors[tag] = {"transformer_forward.sample": relative_l2(rec["sample"], forward["sample"]),
                           "pipeline": {"latents_dtype": str(latents.dtype), "latents_out": relative_l2(latents, golden["latents_out"]),
                                        "image_out": relative_l2(image, golden["image_out"]), "image_out_psnr": psnr(image, golden["image_out"])}}

        seeds = {"latents_in": torch.stack([torch.randn(golden["latents_in"].shape, generator=torch.Generator().manual_seed(s)) for s in SEEDS])}
        images = {}
        for tag, dtype in {"f32": torch.float32, **DTYPES}.items():
            pipe = load_pipeline(folder, dtype)
            runs = [run(pipe, golden, meta, dtype, x) for x in seeds["latents_in"]]
            seeds[f"latents_out_{tag}"] = torch.stack([r[1] for r in runs]).float()
            images[tag] = torch.stack([r[0] for r in runs])
            # A 16-bit pipeline's image is its VAE's 16-bit output widened: stored in the dtype, exactly.
            seeds[f"image_out_{tag}"] = images[tag].to(dtype)
            assert torch.equal(seeds[f"image_out_{tag}"].float(), images[tag])
            if tag != "f32":
                errors[tag]["seeds"] = {"latents_out": [relative_l2(a, b) for a, b in zip(seeds[f"latents_out_{tag}"], seeds["latents_out_f32"])],
                                        "image_out_pooled_psnr": psnr(images[tag], images["f32"])}
        save_file({k: v.contiguous() for k, v in seeds.items()}, str(folder / "seeds_16bit.safetensors"))
    (out / "meta_16bit.json").write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps(info, indent=2))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: make_16bit_references.py OUT_DIR")
    main(sys.argv[1])
