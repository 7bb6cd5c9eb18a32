"""Makes the 16-bit reference data of @ditcache/adapter-flux (test/goldens/): diffusers' FLUX in
torch_dtype=torch.bfloat16 and torch.float16 on the shared FLUX goldens (testdata/goldens/flux-tiny
and flux-tiny-guidance): one transformer call, every block's outputs, and one FluxPipeline call
(latents and image). The tests compare our bf16 / f16 runs with these, and both against the
float32 goldens, whose inputs and weights these share (no weights are written here).

Not run by CI and never by the tests: the tests read only what this wrote. Run it by hand in a
throwaway venv with torch and diffusers (from the repository root):

    /work/shared/tools/reference-venv.sh /tmp/fluxvenv DIFFUSERS_GIT_DIR
    /tmp/fluxvenv/bin/python packages/adapter-flux/tools/make_16bit_references.py testdata/goldens packages/adapter-flux/test/goldens

Everything is deterministic (inputs come from the goldens, the weights from their folders), so a
rerun on the same torch and diffusers writes the same tensors. test/goldens/README.md describes
every file.
"""

import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

import diffusers
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

torch.set_num_threads(1)

SETS = ["flux-tiny", "flux-tiny-guidance"]
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
FORWARD_INPUTS = ["hidden_states", "encoder_hidden_states", "pooled_projections", "timestep", "img_ids", "txt_ids", "guidance"]


def relative_l2(a, b):
    a, b = a.double(), b.double()
    return ((a - b).norm() / b.norm()).item()


def record_forward(goldens, dtype):
    """One transformer call in `dtype` on the float32 golden's inputs, with every block's outputs."""
    golden = load_file(str(goldens / "transformer_forward.safetensors"))
    transformer = FluxTransformer2DModel.from_pretrained(str(goldens / "transformer"), torch_dtype=dtype).eval()
    recorded = {}

    def hook(name):
        def save(_module, _args, output):
            recorded[f"{name}.out0"] = output[0].detach().clone()
            recorded[f"{name}.out1"] = output[1].detach().clone()

        return save

    for i, block in enumerate(transformer.transformer_blocks):
        block.register_forward_hook(hook(f"transformer_blocks.{i}"))
    for i, block in enumerate(transformer.single_transformer_blocks):
        block.register_forward_hook(hook(f"single_transformer_blocks.{i}"))
    # What a caller does with float32 inputs for a 16-bit model: latents and embeddings to its
    # dtype; timestep and guidance as they are (the model rounds them itself), ids as they are.
    inputs = {k: golden[k] for k in FORWARD_INPUTS if k in golden}
    for k in ("hidden_states", "encoder_hidden_states", "pooled_projections"):
        inputs[k] = inputs[k].to(dtype)
    with torch.inference_mode():
        sample = transformer(**inputs, return_dict=False)[0]
    out = {"sample": sample.contiguous(), **{k: v.contiguous() for k, v in recorded.items()}}
    errors = {k: relative_l2(v.float(), golden[k]) for k, v in out.items()}
    return out, errors


def record_pipeline(goldens, meta, dtype):
    """One FluxPipeline call in `dtype` (text encoders skipped) on the float32 golden's inputs."""
    golden = load_file(str(goldens / "pipeline.safetensors"))
    pipe = FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler.from_pretrained(str(goldens / "scheduler")),
        vae=AutoencoderKL.from_pretrained(str(goldens / "vae"), torch_dtype=dtype),
        text_encoder=None,
        tokenizer=None,
        text_encoder_2=None,
        tokenizer_2=None,
        transformer=FluxTransformer2DModel.from_pretrained(str(goldens / "transformer"), torch_dtype=dtype),
    )
    steps = []

    def on_step_end(_pipe, _i, _t, kwargs):
        steps.append(kwargs["latents"].detach().clone())
        return kwargs

    # The embeddings as the pipeline's own text encoders in `dtype` would return them.
    call = dict(
        prompt_embeds=golden["prompt_embeds"].to(dtype),
        pooled_prompt_embeds=golden["pooled_prompt_embeds"].to(dtype),
        latents=golden["latents_in"].to(dtype),
        height=meta["height"],
        width=meta["width"],
        num_inference_steps=meta["num_inference_steps"],
        guidance_scale=meta["guidance_scale"],
    )
    with torch.inference_mode():
        latents = pipe(**call, output_type="latent", callback_on_step_end=on_step_end).images
        image = pipe(**call, output_type="np").images
    out = {
        "latents_out": latents.contiguous(),
        "step_latents": torch.stack(steps).contiguous(),
        # output_type="np" is float32 whatever the dtype (VaeImageProcessor widens before numpy).
        "image_out": torch.from_numpy(np.ascontiguousarray(image)),
    }
    errors = {"latents_out": relative_l2(latents.float(), golden["latents_out"]), "image_out": relative_l2(out["image_out"], golden["image_out"])}
    return out, errors


def save(tensors, path):
    save_file(tensors, str(path))
    os.chmod(path, 0o644)  # save_file leaves the file private


def main(goldens_root, out_root):
    goldens_root, out_root = Path(goldens_root), Path(out_root)
    for name in SETS:
        goldens = goldens_root / name
        meta = json.loads((goldens / "meta.json").read_text())
        target = out_root / name
        target.mkdir(parents=True, exist_ok=True)
        summary = {
            "source": f"testdata/goldens/{name} (weights and inputs)",
            "diffusers_version": diffusers.__version__,
            "torch_version": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "pipeline": {k: meta[k] for k in ("height", "width", "num_inference_steps", "guidance_scale")},
            "relative_l2_vs_float32_golden": {},
        }
        for tag, dtype in DTYPES.items():
            forward, forward_errors = record_forward(goldens, dtype)
            save(forward, target / f"transformer_forward_{tag}.safetensors")
            pipeline, pipeline_errors = record_pipeline(goldens, meta, dtype)
            save(pipeline, target / f"pipeline_{tag}.safetensors")
            summary["relative_l2_vs_float32_golden"][tag] = {**forward_errors, **{f"pipeline.{k}": v for k, v in pipeline_errors.items()}}
            print(f"{name} {tag}: sample {forward_errors['sample']:.3e}, latents_out {pipeline_errors['latents_out']:.3e}, image_out {pipeline_errors['image_out']:.3e}")
        (target / "meta.json").write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:3])
