"""Why: @ditcache/adapter-hidream's test/cache-16bit.test.ts needs cache-dit's DBCache (and TaylorSeer)
on diffusers' HiDreamImagePipeline loaded in torch_dtype=torch.bfloat16, on the shared
testdata/goldens/hidream-tiny, for the cache configs of the float32 traces there. This says how to
load and call that pipeline and which block lists cache-dit caches; common.py does the rest (see
README.md).

    python tools/cache-references-16bit/hidream.py testdata/goldens packages/adapter-hidream/test/goldens COMMIT

writes packages/adapter-hidream/test/goldens/hidream-tiny/cache_traces_bf16.{json,safetensors}.

The pipeline is loaded as packages/adapter-hidream/tools/make_16bit_references.py loads it: every
component in bf16, the float32 goldens' embeddings and initial latents cast to bf16 (as bf16 text
encoders would return them; diffusers takes the latents' dtype from the pooled embedding).
cache-dit's registered HiDream adapter applies its HiDreamPatchFunctor and caches
`transformer.double_stream_blocks` and `transformer.single_stream_blocks`, one context each; CFG is
batched, so there is no separate CFG branch.
"""

import sys

from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, HiDreamImagePipeline, HiDreamImageTransformer2DModel
from safetensors.torch import load_file

import common
from common import DTYPE

NAME = "HiDream"
SETS = ["hidream-tiny"]
GOLDENS_LABEL = "testdata/goldens"
PIPELINE_KEYS = ("height", "width", "num_inference_steps", "guidance_scale", "pipe.default_sample_size")
SEPARATE_CFG = False
COMPACT_STATS = False
EMBEDS = ["prompt_embeds_t5", "prompt_embeds_llama3", "pooled_prompt_embeds",
          "negative_prompt_embeds_t5", "negative_prompt_embeds_llama3", "negative_pooled_prompt_embeds"]


def build_pipeline(goldens, meta):
    pipe = HiDreamImagePipeline(
        scheduler=FlowMatchEulerDiscreteScheduler.from_pretrained(goldens / "scheduler"),
        vae=AutoencoderKL.from_pretrained(goldens / "vae", torch_dtype=DTYPE),
        text_encoder=None, tokenizer=None, text_encoder_2=None, tokenizer_2=None,
        text_encoder_3=None, tokenizer_3=None, text_encoder_4=None, tokenizer_4=None,
        transformer=HiDreamImageTransformer2DModel.from_pretrained(goldens / "transformer", torch_dtype=DTYPE),
    )
    pipe.default_sample_size = meta["pipe.default_sample_size"]
    return pipe


def call_args(goldens, meta):
    golden = load_file(str(goldens / "pipeline.safetensors"))
    return dict(**{k: golden[k].to(DTYPE) for k in EMBEDS}, height=meta["height"], width=meta["width"],
                num_inference_steps=meta["num_inference_steps"], guidance_scale=meta["guidance_scale"],
                latents=golden["latents_in"].to(DTYPE), output_type="latent")


def run(pipe, call):
    return pipe(**call).images


def sources(pipe):
    """(label, cache-dit context name) per cached block list, in the order of the adapter's blocks."""
    names = pipe.transformer._context_names
    labels = ["transformer.double_stream_blocks", "transformer.single_stream_blocks"]
    assert len(names) == 2 and all(n.startswith(l.split(".")[1]) for n, l in zip(names, labels)), f"cache-dit has contexts {names}"
    return list(zip(labels, names))


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit("usage: hidream.py GOLDENS_ROOT OUT_ROOT [CACHE_DIT_COMMIT]")
    common.main(sys.modules[__name__], *sys.argv[1:4])
