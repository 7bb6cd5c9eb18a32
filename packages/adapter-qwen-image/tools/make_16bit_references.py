"""Makes the 16-bit reference data of @ditcache/adapter-qwen-image (test/goldens/references_16bit.safetensors):
diffusers' Qwen-Image in torch_dtype=torch.bfloat16 and torch.float16 on the qwen-tiny folder and the
float32 references' inputs (make_references.py wrote both): one transformer call with every block's
outputs, and the `cfg_square` pipeline run (latents and image). The tests compare our bf16 / fp16
runs with these, and both against the float32 references.

Not run by CI and never by the tests. Run it by hand after make_references.py (from the repository root):

    /work/refvenv-cd/bin/python packages/adapter-qwen-image/tools/make_16bit_references.py packages/adapter-qwen-image/test/goldens

Deterministic: inputs and weights come from the goldens. test/goldens/README.md describes the file.
"""

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from diffusers import AutoencoderKLQwenImage, FlowMatchEulerDiscreteScheduler, QwenImagePipeline, QwenImageTransformer2DModel

torch.set_num_threads(1)

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
RUN = "cfg_square"


def relative_l2(a, b):
    a, b = a.double(), b.double()
    return ((a - b).norm() / b.norm()).item()


def record_forward(folder, ref, dtype, tag, out):
    transformer = QwenImageTransformer2DModel.from_pretrained(str(folder / "transformer"), torch_dtype=dtype).eval()
    for i, block in enumerate(transformer.transformer_blocks):
        def save(_m, _a, output, i=i):
            out[f"{tag}.forward.block_{i}.encoder_hidden_states"] = output[0].detach().clone()
            out[f"{tag}.forward.block_{i}.hidden_states"] = output[1].detach().clone()
        block.register_forward_hook(save)
    # What a caller does with float32 inputs for a 16-bit model: latents and embeddings to its
    # dtype; the timestep as it is (the model rounds it), the mask and img_shapes as they are.
    with torch.no_grad():
        sample = transformer(hidden_states=ref["forward.hidden_states"].to(dtype), encoder_hidden_states=ref["forward.encoder_hidden_states"].to(dtype),
                             encoder_hidden_states_mask=ref["forward.encoder_hidden_states_mask"], timestep=ref["forward.timestep"],
                             img_shapes=[[tuple(s) for s in sample] for sample in ref["forward.img_shapes"].tolist()], return_dict=False)[0]
    out[f"{tag}.forward.sample"] = sample.contiguous()
    return relative_l2(sample, ref["forward.sample"])


def record_pipeline(folder, ref, spec, dtype, tag, out):
    pipe = QwenImagePipeline(scheduler=FlowMatchEulerDiscreteScheduler.from_pretrained(str(folder / "scheduler")),
                             vae=AutoencoderKLQwenImage.from_pretrained(str(folder / "vae"), torch_dtype=dtype),
                             text_encoder=None, tokenizer=None,
                             transformer=QwenImageTransformer2DModel.from_pretrained(str(folder / "transformer"), torch_dtype=dtype))
    pipe.set_progress_bar_config(disable=True)
    final = {}

    def keep(_p, _i, _t, kw):
        final["latents"] = kw["latents"].clone()
        return kw

    with torch.no_grad():
        image = pipe(prompt_embeds=ref[f"{RUN}.prompt_embeds"].to(dtype), prompt_embeds_mask=ref[f"{RUN}.prompt_embeds_mask"],
                     negative_prompt_embeds=ref[f"{RUN}.negative_prompt_embeds"].to(dtype),
                     negative_prompt_embeds_mask=ref[f"{RUN}.negative_prompt_embeds_mask"], latents=ref[f"{RUN}.latents_in"].to(dtype),
                     height=spec["height"], width=spec["width"], num_inference_steps=spec["steps"], true_cfg_scale=spec["true_cfg_scale"],
                     output_type="np", callback_on_step_end=keep).images
    out[f"{tag}.{RUN}.latents_out"] = final["latents"].contiguous()
    out[f"{tag}.{RUN}.image"] = torch.from_numpy(image).float().contiguous()
    return relative_l2(final["latents"], ref[f"{RUN}.latents_out"]), relative_l2(out[f"{tag}.{RUN}.image"], ref[f"{RUN}.image"])


def main(goldens):
    goldens = Path(goldens)
    ref = load_file(str(goldens / "references.safetensors"))
    meta = json.loads((goldens / "meta.json").read_text())
    folder = goldens / meta["runs"][RUN]["set"]
    out = {}
    for tag, dtype in DTYPES.items():
        sample_err = record_forward(folder, ref, dtype, tag, out)
        latents_err, image_err = record_pipeline(folder, ref, meta["runs"][RUN], dtype, tag, out)
        print(f"{tag}: sample {sample_err:.3g}, latents {latents_err:.3g}, image {image_err:.3g} relative L2 from float32")
    save_file(out, str(goldens / "references_16bit.safetensors"))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "test/goldens")
