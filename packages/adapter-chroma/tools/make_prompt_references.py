"""Makes the prompt-encoding reference data of packages/adapter-chroma (test/goldens/chroma-prompt/):
diffusers' ChromaPipeline with the tiny T5 and tokenizer of @ditcache/text-encoders' reference data
(packages/text-encoders/test/data/t5-encoder and t5-tokenizer, whose width 32 fits chroma-tiny's
joint_attention_dim) and chroma-tiny's transformer, VAE and scheduler: encode_prompt's embeddings
and masks for a few prompts, and one pipeline call from text (CFG with a negative prompt).

Not run by CI and never by the tests. Run it by hand after make_references.py, in the same venv
(from the repository root):

    /work/refvenv-cd/bin/python packages/adapter-chroma/tools/make_prompt_references.py packages/adapter-chroma/test/goldens

The attention mask is the boolean key mask, as in make_references.py (whose processor this uses).
"""

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import T5EncoderModel, T5TokenizerFast

import diffusers
from diffusers import AutoencoderKL, ChromaPipeline, ChromaTransformer2DModel, FlowMatchEulerDiscreteScheduler

sys.path.insert(0, str(Path(__file__).parent))
from make_references import use_key_mask  # noqa: E402

torch.set_num_threads(1)

TEXT_DATA = Path(__file__).parents[2] / "text-encoders" / "test" / "data"
# Short, empty and longer than MAX_LENGTH (truncated: no pad token left to keep).
PROMPTS = ["a photo of a cat", "", "a very long prompt about the colours of the sea, the sky and the sand at dusk"]
NEGATIVE = "blurry, low quality"
MAX_LENGTH = 16
RUN = dict(height=12, width=20, num_inference_steps=4, guidance_scale=4.0)


def main(goldens):
    folder = Path(goldens) / "chroma-tiny"
    transformer = ChromaTransformer2DModel.from_pretrained(str(folder / "transformer"))
    use_key_mask(transformer)
    pipe = ChromaPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler.from_pretrained(str(folder / "scheduler")),
        vae=AutoencoderKL.from_pretrained(str(folder / "vae")),
        text_encoder=T5EncoderModel.from_pretrained(str(TEXT_DATA / "t5-encoder"), torch_dtype=torch.float32),
        tokenizer=T5TokenizerFast.from_pretrained(str(TEXT_DATA / "t5-tokenizer")),
        transformer=transformer,
    )
    tensors = {}
    with torch.no_grad():
        embeds, _, mask, _, _, _ = pipe.encode_prompt(PROMPTS, do_classifier_free_guidance=False, max_sequence_length=MAX_LENGTH)
        tensors["prompt_embeds"], tensors["prompt_attention_mask"] = embeds, mask
        generator = torch.Generator().manual_seed(5)
        latents = torch.randn(1, 4, RUN["height"] // 2, RUN["width"] // 2, generator=generator)
        tensors["latents_in"] = ChromaPipeline._pack_latents(latents, 1, 4, RUN["height"] // 2, RUN["width"] // 2)
        tensors["latents_out"] = pipe(prompt=PROMPTS[0], negative_prompt=NEGATIVE, max_sequence_length=MAX_LENGTH, latents=tensors["latents_in"],
                                      output_type="latent", **RUN).images
    out = Path(goldens) / "chroma-prompt"
    out.mkdir(exist_ok=True)
    save_file({k: v.float().contiguous() for k, v in tensors.items()}, out / "prompts.safetensors")
    meta = {"prompts": PROMPTS, "negative_prompt": NEGATIVE, "max_sequence_length": MAX_LENGTH, **RUN,
            "produced_by": {"torch": torch.__version__, "diffusers": diffusers.__version__, "script": "packages/adapter-chroma/tools/make_prompt_references.py"}}
    (out / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    print("masks", mask.sum(dim=1).tolist())


if __name__ == "__main__":
    main(sys.argv[1])
