"""Why: every cache-references-* tool runs diffusers' float32 FLUX and Wan pipelines on the shared
tiny goldens (testdata/goldens/flux-tiny, wan-tiny) with the same inputs as the goldens' own run,
so the pipeline and its call are built here once. Each loader returns (pipe, call kwargs, steps,
a function taking the pipeline's output to its latents).
"""

import json

import torch
from diffusers import AutoencoderKL, AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel, WanPipeline
from safetensors.torch import load_file


def flux(goldens):
    meta = json.loads((goldens / "meta.json").read_text())
    pipe = FluxPipeline(scheduler=FlowMatchEulerDiscreteScheduler.from_pretrained(str(goldens / "scheduler")),
                        vae=AutoencoderKL.from_pretrained(str(goldens / "vae")), text_encoder=None, tokenizer=None,
                        text_encoder_2=None, tokenizer_2=None,
                        transformer=FluxTransformer2DModel.from_pretrained(str(goldens / "transformer")))
    g = load_file(str(goldens / "pipeline.safetensors"))
    call = dict(prompt_embeds=g["prompt_embeds"], pooled_prompt_embeds=g["pooled_prompt_embeds"], latents=g["latents_in"],
                height=meta["height"], width=meta["width"], num_inference_steps=meta["num_inference_steps"],
                guidance_scale=meta["guidance_scale"], output_type="latent")
    return pipe, call, meta["num_inference_steps"], lambda out: out.images


def wan(goldens):
    meta = json.loads((goldens / "meta.json").read_text())
    vae = AutoencoderKLWan.from_pretrained(goldens / "vae", torch_dtype=torch.float32)
    pipe = WanPipeline.from_pretrained(goldens, vae=vae, tokenizer=None, text_encoder=None, transformer_2=None, torch_dtype=torch.float32)
    g = load_file(str(goldens / "pipeline.safetensors"))
    call = dict(prompt_embeds=g["prompt_embeds"], negative_prompt_embeds=g["negative_prompt_embeds"], height=meta["height"],
                width=meta["width"], num_frames=meta["num_frames"], num_inference_steps=meta["num_inference_steps"],
                guidance_scale=meta["guidance_scale"], latents=g["latents_in"], output_type="latent")
    return pipe, call, meta["num_inference_steps"], lambda out: out.frames
