"""Why: examples/adapter-sd3's test/cache-16bit.test.ts needs cache-dit's DBCache (and TaylorSeer) on
diffusers' StableDiffusion3Pipeline loaded in torch_dtype=torch.bfloat16, on the example's own
goldens (examples/adapter-sd3/test/goldens/sd3-tiny and sd35-tiny), for the cache configs of the
float32 traces there. This says how to load and call that pipeline; common.py does the rest (see
README.md).

    python tools/cache-references-16bit/sd3.py examples/adapter-sd3/test/goldens examples/adapter-sd3/test/goldens COMMIT

writes examples/adapter-sd3/test/goldens/{set}/cache_traces_bf16.{json,safetensors}.

The pipeline is loaded as examples/adapter-sd3/tools/make_16bit_references.py loads it: every
component in bf16, the float32 goldens' prompt embeddings cast to bf16 (as bf16 text encoders would
return them), the float32 initial latents as they are (the pipeline casts them). cache-dit's
registered SD3 adapter caches `transformer.transformer_blocks` as one context; CFG is batched.
"""

import sys

from diffusers import StableDiffusion3Pipeline
from safetensors.torch import load_file

import common
from common import DTYPE

NAME = "SD3"
SETS = ["sd3-tiny", "sd35-tiny"]
GOLDENS_LABEL = "examples/adapter-sd3/test/goldens"
PIPELINE_KEYS = ("height", "width", "num_inference_steps", "guidance_scale")
SEPARATE_CFG = False
COMPACT_STATS = False
EMBEDS = ["prompt_embeds", "pooled_prompt_embeds", "negative_prompt_embeds", "negative_pooled_prompt_embeds"]


def build_pipeline(goldens, meta):
    pipe = StableDiffusion3Pipeline.from_pretrained(goldens, torch_dtype=DTYPE, text_encoder=None, tokenizer=None, text_encoder_2=None,
                                                    tokenizer_2=None, text_encoder_3=None, tokenizer_3=None)
    assert pipe.transformer.dtype == DTYPE and pipe.vae.dtype == DTYPE
    return pipe


def call_args(goldens, meta):
    golden = load_file(str(goldens / "pipeline.safetensors"))
    return dict(**{k: golden[k].to(DTYPE) for k in EMBEDS}, height=meta["height"], width=meta["width"],
                num_inference_steps=meta["num_inference_steps"], guidance_scale=meta["guidance_scale"],
                latents=golden["latents_in"], output_type="latent")


def run(pipe, call):
    return pipe(**call).images


def sources(pipe):
    names = pipe.transformer._context_names
    assert len(names) == 1, f"SD3 caches one chain, cache-dit has {names}"
    return [("transformer.transformer_blocks", names[0])]


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit("usage: sd3.py GOLDENS_ROOT OUT_ROOT [CACHE_DIT_COMMIT]")
    common.main(sys.modules[__name__], *sys.argv[1:4])
