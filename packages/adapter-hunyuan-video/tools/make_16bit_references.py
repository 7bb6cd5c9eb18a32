"""Makes the 16-bit reference data of packages/adapter-hunyuan-video (test/goldens/references_16bit.safetensors):
diffusers' HunyuanVideo transformer and pipeline loaded with torch_dtype=bfloat16 and float16 from the
float32 folders that tools/make_references.py wrote, on the same inputs.

Run by hand after make_references.py (from the package folder):

    /work/refvenv-cd/bin/python tools/make_16bit_references.py test/goldens

test/goldens/README.md describes the file.
"""

import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from diffusers import HunyuanVideoPipeline, HunyuanVideoTransformer3DModel

torch.set_num_threads(1)

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}
FORWARD_ARGS = ("hidden_states", "timestep", "encoder_hidden_states", "encoder_attention_mask", "pooled_projections", "guidance")
PIPELINE_ARGS = ("prompt_embeds", "pooled_prompt_embeds", "prompt_attention_mask", "negative_prompt_embeds",
                 "negative_pooled_prompt_embeds", "negative_prompt_attention_mask")


def main(out):
    out = Path(out)
    ref = load_file(str(out / "references.safetensors"))
    import json
    runs = json.loads((out / "meta.json").read_text())["runs"]
    tensors = {}
    for name, dtype in DTYPES.items():
        transformer = HunyuanVideoTransformer3DModel.from_pretrained(out / "hv-tiny" / "transformer", torch_dtype=dtype)
        # Float inputs as a caller casts them to the model's dtype; timestep and guidance stay float32, as the pipeline passes them.
        args = {k: ref[f"forward.{k}"] for k in FORWARD_ARGS}
        args = {k: (v if k in ("timestep", "guidance") else v.to(dtype)) for k, v in args.items()}
        with torch.no_grad():
            tensors[f"forward_{name}.sample"] = transformer(**args, return_dict=False)[0].float()
        # The VAE stays float32 (only latents are recorded here).
        pipe = HunyuanVideoPipeline.from_pretrained(out / "hv-tiny", transformer=transformer, text_encoder=None, tokenizer=None,
                                                    text_encoder_2=None, tokenizer_2=None, torch_dtype=torch.float32)
        assert pipe.transformer.dtype == dtype, pipe.transformer.dtype
        for run in ("guided", "guided_cfg"):
            spec = runs[run]
            kwargs = {k: ref[f"{run}.{k}"] for k in PIPELINE_ARGS if f"{run}.{k}" in ref}
            with torch.no_grad():
                latents = pipe(**kwargs, latents=ref[f"{run}.latents_in"], height=spec["height"], width=spec["width"],
                               num_frames=spec["num_frames"], num_inference_steps=spec["steps"], guidance_scale=spec["guidance_scale"],
                               true_cfg_scale=spec["true_cfg_scale"], output_type="latent").frames
            tensors[f"{run}_{name}.latents_out"] = latents.float()
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(out / "references_16bit.safetensors"))
    print({k: tuple(v.shape) for k, v in tensors.items()})


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "test/goldens")
