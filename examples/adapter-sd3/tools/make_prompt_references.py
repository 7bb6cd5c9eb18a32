"""Makes the prompt-encoding reference data of examples/adapter-sd3 (test/goldens/sd3-prompt/): two
small random-weight CLIP text encoders with projection and a T5 encoder, StableDiffusion3Pipeline's
prompt encoding with them, and one pipeline run from text.

Not run by CI and never by the tests: the tests read only what this wrote. Run it by hand in a
throwaway venv with torch, transformers, diffusers, sentencepiece and protobuf (from the
repository root):

    /work/shared/tools/reference-venv.sh /tmp/sd3venv DIFFUSERS_GIT_DIR
    /tmp/sd3venv/bin/python examples/adapter-sd3/tools/make_prompt_references.py examples/adapter-sd3/test/goldens/sd3-prompt

The pipeline is test/goldens/sd3-tiny (transformer, VAE, scheduler) with six more folders:
tokenizer/ and tokenizer_2/, the tiny CLIP tokenizer of @ditcache/text-encoders' test data (the
second padding with "!", as SD3's CLIP-G tokenizer does), tokenizer_3/, its tiny T5 tokenizer, and
text_encoder/, text_encoder_2/ (CLIPTextModelWithProjection, hidden 8 and 16, projections 8 and
16: together the transformer's pooled_projection_dim 24) and text_encoder_3/ (T5EncoderModel with
d_model 32, the transformer's joint_attention_dim). Seeded: a rerun on the same versions writes
the same tensors. test/goldens/README.md describes every file.
"""

import json
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

import diffusers
import transformers
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline
from transformers import CLIPTextConfig, CLIPTextModelWithProjection, CLIPTokenizer, T5Config, T5EncoderModel, T5TokenizerFast

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[3]
SD3 = REPO / "examples/adapter-sd3/test/goldens/sd3-tiny"
TEXT_DATA = REPO / "packages/text-encoders/test/data"

PROMPTS = ["a red circle at the top left", "two cats, sleeping on a very long and winding road under a sky full of stars and a pale moon", ""]
SEQUENCE_LENGTHS = [256, 12]
RUN = dict(prompt="a green square", negative_prompt="blurry", num_inference_steps=6, guidance_scale=5.0)


def clip(hidden, projection, vocab_size, seed):
    torch.manual_seed(seed)
    config = CLIPTextConfig(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=3, num_attention_heads=2,
                            max_position_embeddings=77, projection_dim=projection, hidden_act="gelu", bos_token_id=vocab_size - 2, eos_token_id=vocab_size - 1,
                            pad_token_id=vocab_size - 1)
    return CLIPTextModelWithProjection(config).eval()


def main(out_dir):
    out = Path(out_dir)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    tokenizer = CLIPTokenizer.from_pretrained(TEXT_DATA / "clip-tokenizer-json")
    tokenizer_2 = CLIPTokenizer.from_pretrained(TEXT_DATA / "clip-tokenizer-json", pad_token="!")
    tokenizer_3 = T5TokenizerFast.from_pretrained(TEXT_DATA / "t5-tokenizer")
    for name, tok in [("tokenizer", tokenizer), ("tokenizer_2", tokenizer_2), ("tokenizer_3", tokenizer_3)]:
        tok.save_pretrained(out / name)
    torch.manual_seed(11)
    t5 = T5EncoderModel(T5Config(vocab_size=len(tokenizer_3), d_model=32, d_kv=8, d_ff=48, num_layers=2, num_heads=4, feed_forward_proj="gated-gelu",
                                 dropout_rate=0.0, decoder_start_token_id=0)).eval()
    encoders = {"text_encoder": clip(8, 8, len(tokenizer), 9), "text_encoder_2": clip(16, 16, len(tokenizer), 10), "text_encoder_3": t5}
    for name, model in encoders.items():
        model.save_pretrained(out / name)
    loaded = {
        "text_encoder": CLIPTextModelWithProjection.from_pretrained(out / "text_encoder").eval(),
        "text_encoder_2": CLIPTextModelWithProjection.from_pretrained(out / "text_encoder_2").eval(),
        "text_encoder_3": T5EncoderModel.from_pretrained(out / "text_encoder_3").eval(),
    }
    pipe = StableDiffusion3Pipeline(transformer=SD3Transformer2DModel.from_pretrained(SD3 / "transformer"), vae=AutoencoderKL.from_pretrained(SD3 / "vae"),
                                    scheduler=FlowMatchEulerDiscreteScheduler.from_pretrained(SD3 / "scheduler"), tokenizer=tokenizer, tokenizer_2=tokenizer_2,
                                    tokenizer_3=tokenizer_3, **loaded)

    tensors = {}
    with torch.no_grad():
        for length in SEQUENCE_LENGTHS:
            embeds, _, pooled, _ = pipe.encode_prompt(PROMPTS, PROMPTS, PROMPTS, do_classifier_free_guidance=False, max_sequence_length=length)
            tensors[f"prompt_embeds_{length}"] = embeds
            tensors[f"pooled_prompt_embeds_{length}"] = pooled
        for i, tok in enumerate([tokenizer, tokenizer_2]):
            tensors[f"clip_input_ids_{i + 1}"] = tok(PROMPTS, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids.to(torch.float32)
        tensors["t5_input_ids_12"] = tokenizer_3(PROMPTS, padding="max_length", max_length=12, truncation=True, add_special_tokens=True, return_tensors="pt").input_ids.to(torch.float32)

        reference = load_file(str(SD3 / "pipeline.safetensors"))
        meta_sd3 = json.loads((SD3 / "meta.json").read_text())
        latents = pipe(**RUN, height=meta_sd3["height"], width=meta_sd3["width"], latents=reference["latents_in"], output_type="latent").images
        tensors["run_latents_in"] = reference["latents_in"]
        tensors["run_latents_out"] = latents

    save_file({k: v.detach().to(torch.float32).contiguous() for k, v in tensors.items()}, str(out / "prompts.safetensors"))
    meta = dict(diffusers=diffusers.__version__, transformers=transformers.__version__, torch=torch.__version__, prompts=PROMPTS,
                sequence_lengths=SEQUENCE_LENGTHS, run=dict(RUN, height=meta_sd3["height"], width=meta_sd3["width"]))
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: make_prompt_references.py OUT_DIR")
    main(sys.argv[1])
