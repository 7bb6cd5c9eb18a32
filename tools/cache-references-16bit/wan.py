"""Why: @ditcache/adapter-wan's test/cache-16bit.test.ts needs cache-dit's DBCache (TaylorSeer,
ParamsModifiers) on diffusers' WanPipeline with its transformers loaded in torch_dtype=torch.bfloat16,
on the shared Wan goldens (testdata/goldens/wan-tiny, Wan 2.1, and its wan22/ with Wan 2.2's two
experts), for the cache configs of the float32 traces there. This says how to load and call that
pipeline and which block lists cache-dit caches; common.py does the rest (see README.md).

    python tools/cache-references-16bit/wan.py testdata/goldens packages/adapter-wan/test/goldens COMMIT

writes packages/adapter-wan/test/goldens/wan-tiny{,/wan22}/cache_traces_bf16.{json,safetensors}.

The pipeline is the Wan model card's 16-bit recipe, as packages/adapter-wan/tools/make_16bit_references.py
loads it: transformers in bf16 (diffusers keeps their _keep_in_fp32_modules in float32), the VAE in
float32, the float32 goldens' prompt embeddings and initial latents as they are (the pipeline casts
the embeddings to the transformer's dtype and each call's latents too). cache-dit's registered Wan
adapter caches `transformer.blocks` and, for Wan 2.2, `transformer_2.blocks` as one context each,
with separate CFG (cond is the non-CFG branch unless cfg_compute_first).
"""

import sys

import torch
from diffusers import AutoencoderKLWan, WanPipeline
from safetensors.torch import load_file

import common
from common import DTYPE

NAME = "Wan"
SETS = ["wan-tiny", "wan-tiny/wan22"]
GOLDENS_LABEL = "testdata/goldens"
PIPELINE_KEYS = ("height", "width", "num_frames", "num_inference_steps", "guidance_scale", "guidance_scale_2", "boundary_ratio")
SEPARATE_CFG = True
COMPACT_STATS = False


def build_pipeline(goldens, meta):
    vae = AutoencoderKLWan.from_pretrained(goldens / "vae", torch_dtype=torch.float32)
    extra = {} if meta.get("boundary_ratio") is not None else {"transformer_2": None}
    pipe = WanPipeline.from_pretrained(goldens, vae=vae, tokenizer=None, text_encoder=None, torch_dtype=DTYPE, **extra)
    assert pipe.transformer.dtype == DTYPE and pipe.vae.dtype == torch.float32
    return pipe


def call_args(goldens, meta):
    golden = load_file(str(goldens / "pipeline.safetensors"))
    args = dict(prompt_embeds=golden["prompt_embeds"], negative_prompt_embeds=golden["negative_prompt_embeds"], height=meta["height"],
                width=meta["width"], num_frames=meta["num_frames"], num_inference_steps=meta["num_inference_steps"],
                guidance_scale=meta["guidance_scale"], latents=golden["latents_in"], output_type="latent")
    if meta.get("boundary_ratio") is not None:
        args["guidance_scale_2"] = meta["guidance_scale_2"]
    return args


def run(pipe, call):
    return pipe(**call).frames


def sources(pipe):
    """(label, cache-dit context name) per cached block list: each expert's `blocks`."""
    out = []
    for attr in ("transformer", "transformer_2"):
        transformer = getattr(pipe, attr, None)
        if transformer is not None:
            names = transformer._context_names
            assert len(names) == 1, f"{attr}: cache-dit has contexts {names}"
            out.append((f"{attr}.blocks", names[0]))
    return out


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit("usage: wan.py GOLDENS_ROOT OUT_ROOT [CACHE_DIT_COMMIT]")
    common.main(sys.modules[__name__], *sys.argv[1:4])
