"""Why: @ditcache/adapter-flux's test/cache-16bit.test.ts needs cache-dit's DBCache (and TaylorSeer)
on diffusers' FluxPipeline loaded with torch_dtype=torch.bfloat16, on the shared FLUX goldens
(testdata/goldens/flux-tiny and flux-tiny-guidance), for the cache configs of the float32 traces
there. This says how to load and call that pipeline; common.py does the rest (see README.md).

    python tools/cache-references-16bit/flux.py testdata/goldens packages/adapter-flux/test/goldens COMMIT

writes packages/adapter-flux/test/goldens/{set}/cache_traces_bf16.{json,safetensors}.
"""

import sys

from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
from safetensors.torch import load_file

import common
from common import DTYPE

NAME = "FLUX"
SETS = ["flux-tiny", "flux-tiny-guidance"]
GOLDENS_LABEL = "testdata/goldens"
PIPELINE_KEYS = ("height", "width", "num_inference_steps", "guidance_scale")
SEPARATE_CFG = False
# One chain and no CFG branch: stats entries without source or cfg fields, as first written.
COMPACT_STATS = True


def build_pipeline(goldens, meta):
    """FluxPipeline in bf16, text encoders skipped, as packages/adapter-flux/tools/make_16bit_references.py builds it."""
    return FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler.from_pretrained(str(goldens / "scheduler")),
        vae=AutoencoderKL.from_pretrained(str(goldens / "vae"), torch_dtype=DTYPE),
        text_encoder=None,
        tokenizer=None,
        text_encoder_2=None,
        tokenizer_2=None,
        transformer=FluxTransformer2DModel.from_pretrained(str(goldens / "transformer"), torch_dtype=DTYPE),
    )


def call_args(goldens, meta):
    golden = load_file(str(goldens / "pipeline.safetensors"))
    # The embeddings and noise as a bf16 pipeline's own encoders and generator would give them.
    return dict(
        prompt_embeds=golden["prompt_embeds"].to(DTYPE),
        pooled_prompt_embeds=golden["pooled_prompt_embeds"].to(DTYPE),
        latents=golden["latents_in"].to(DTYPE),
        height=meta["height"],
        width=meta["width"],
        num_inference_steps=meta["num_inference_steps"],
        guidance_scale=meta["guidance_scale"],
        output_type="latent",
    )


def run(pipe, call):
    return pipe(**call).images


def sources(pipe):
    """(label, cache-dit context name) of each cached chain: FLUX caches the double and single blocks as one."""
    names = pipe.transformer._context_names
    assert len(names) == 1, f"FLUX caches one chain (double + single blocks), cache-dit has {names}"
    return [("transformer.transformer_blocks+single_transformer_blocks", names[0])]


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit("usage: flux.py GOLDENS_ROOT OUT_ROOT [CACHE_DIT_COMMIT]")
    common.main(sys.modules[__name__], *sys.argv[1:4])
