"""Makes the prompt-encoding reference data of packages/adapter-ltx-video (test/goldens/ltx-prompt/):
diffusers' LTXPipeline with a tiny random T5 (d_model 12, ltx-tiny's caption_channels; every weight
perturbed) and @ditcache/text-encoders' tiny T5 tokenizer, and ltx-tiny's transformer, VAE and
scheduler: encode_prompt's embeddings, masks and token ids for awkward prompts (one empty, one
longer than MAX_LENGTH), the truncation warning diffusers logs, and one pipeline call from text
(CFG with a negative prompt, output_type="latent").

Not run by CI and never by the tests. Run it by hand after make_references.py (from the
repository root):

    /work/refvenv-cd/bin/python packages/adapter-ltx-video/tools/make_prompt_references.py packages/adapter-ltx-video/test/goldens
"""

import json
import logging
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import T5Config, T5EncoderModel, T5TokenizerFast

import diffusers
from diffusers import AutoencoderKLLTXVideo, FlowMatchEulerDiscreteScheduler, LTXPipeline, LTXVideoTransformer3DModel

torch.set_num_threads(1)

TOKENIZER = Path(__file__).parents[2] / "text-encoders" / "test" / "data" / "t5-tokenizer"
# Short, empty, with odd spacing and punctuation, and longer than MAX_LENGTH (truncated).
PROMPTS = ["a cat walks on the beach", "", "  Hello,   WORLD!! 123 ", "a very long prompt about the colours of the sea, the sky and the sand at dusk"]
NEGATIVE = "blurry, low quality"
MAX_LENGTH = 16
PERTURBATION = 0.1
RUN = dict(height=32, width=32, num_frames=9, frame_rate=25, num_inference_steps=6, guidance_scale=3.0)


def tiny_t5(d_model, vocab_size):
    torch.manual_seed(20)
    config = T5Config(vocab_size=vocab_size, d_model=d_model, d_kv=6, d_ff=24, num_layers=2, num_heads=2, feed_forward_proj="gated-gelu",
                      relative_attention_num_buckets=32, relative_attention_max_distance=128, is_encoder_decoder=False, use_cache=False)
    model = T5EncoderModel(config).eval()
    generator = torch.Generator().manual_seed(21)
    with torch.no_grad():
        for p in model.parameters():
            spread = p.std().item() if p.numel() > 1 else 0.0
            p.add_(torch.randn(p.shape, generator=generator) * PERTURBATION * (spread if spread > 0 else 1.0))
    return model


class Warnings(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def main(goldens):
    folder = Path(goldens) / "ltx-tiny"
    out = Path(goldens) / "ltx-prompt"
    out.mkdir(exist_ok=True)
    transformer = LTXVideoTransformer3DModel.from_pretrained(str(folder / "transformer"))
    shutil.copytree(TOKENIZER, out / "tokenizer", dirs_exist_ok=True)
    tokenizer = T5TokenizerFast.from_pretrained(str(out / "tokenizer"))
    tiny_t5(transformer.config.caption_channels, len(tokenizer)).save_pretrained(str(out / "text_encoder"))
    pipe = LTXPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler.from_pretrained(str(folder / "scheduler")),
        vae=AutoencoderKLLTXVideo.from_pretrained(str(folder / "vae")),
        text_encoder=T5EncoderModel.from_pretrained(str(out / "text_encoder"), torch_dtype=torch.float32),
        tokenizer=tokenizer,
        transformer=transformer,
    )
    warnings = Warnings()
    logging.getLogger("diffusers.pipelines.ltx.pipeline_ltx").addHandler(warnings)
    tensors = {}
    with torch.no_grad():
        embeds, mask, _, _ = pipe.encode_prompt(PROMPTS, do_classifier_free_guidance=False, max_sequence_length=MAX_LENGTH)
        tensors["prompt_embeds"], tensors["prompt_attention_mask"] = embeds, mask
        tensors["input_ids"] = tokenizer(PROMPTS, padding="max_length", max_length=MAX_LENGTH, truncation=True, add_special_tokens=True,
                                         return_tensors="pt").input_ids
        encode_warnings = list(warnings.messages)
        # The default max_sequence_length (128), for the prompt of the run.
        tensors["prompt_embeds_128"], tensors["prompt_attention_mask_128"], _, _ = pipe.encode_prompt(PROMPTS[0], do_classifier_free_guidance=False)
        tensors["latents_in"] = load_file(str(folder / "pipeline.safetensors"))["latents_in"]
        tensors["latents_out"] = pipe(prompt=PROMPTS[0], negative_prompt=NEGATIVE, max_sequence_length=MAX_LENGTH, latents=tensors["latents_in"],
                                      output_type="latent", **RUN).frames
        # No negative prompt: diffusers encodes "".
        tensors["latents_out_no_negative"] = pipe(prompt=PROMPTS[0], max_sequence_length=MAX_LENGTH, latents=tensors["latents_in"],
                                                  output_type="latent", **RUN).frames
    save_file({k: (v.float() if k != "input_ids" else v.to(torch.int32)).contiguous() for k, v in tensors.items()}, out / "prompts.safetensors")
    meta = {"prompts": PROMPTS, "negative_prompt": NEGATIVE, "max_sequence_length": MAX_LENGTH, "warnings": encode_warnings,
            "perturbation": PERTURBATION, **RUN,
            "produced_by": {"torch": torch.__version__, "diffusers": diffusers.__version__, "script": "packages/adapter-ltx-video/tools/make_prompt_references.py"}}
    (out / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    print("masks", mask.sum(dim=1).tolist(), "warnings", encode_warnings)


if __name__ == "__main__":
    main(sys.argv[1])
