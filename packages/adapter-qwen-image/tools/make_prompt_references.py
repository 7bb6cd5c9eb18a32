"""Makes the prompt-encoding reference data of @ditcache/adapter-qwen-image (test/goldens/qwen-prompt/):
QwenImagePipeline's Qwen2.5-VL text encoder at small random weights, its encode_prompt on awkward
prompts, and one true-CFG pipeline run from a prompt and a negative prompt.

Not run by CI and never by the tests: the tests read only what this wrote. Run it by hand from the
repository root in a venv with torch, transformers and diffusers (the versions go into meta.json):

    /work/refvenv-cd/bin/python packages/adapter-qwen-image/tools/make_prompt_references.py

The pipeline is test/goldens/qwen-tiny (transformer, VAE, scheduler) with these folders:
  * tokenizer/: @ditcache/text-encoders' tiny trained Qwen2 tokenizer (byte-level BPE with Qwen2's
    pre-tokenizer and special tokens), copied as it is;
  * text_encoder/: Qwen2_5_VLForConditionalGeneration, text hidden 24 (the transformer's
    joint_attention_dim), 2 layers, 2 heads of 12 over 1 key/value head, Qwen2.5-VL's multimodal
    rotary on text, and a token-sized vision tower (unused on text, as in the pipeline).
Every weight is perturbed by PERTURBATION of its spread, so no layer is an identity.

prompts.safetensors (float32 throughout) holds `input_ids` and `attention_mask` of the templated
PROMPTS as the pipeline tokenizes them (padded to the longest, at most 1024 + 34), per
max_sequence_length L in SEQUENCE_LENGTHS `prompt_embeds_L` and `prompt_embeds_mask_L` (encode_prompt's
outputs; meta.json says which masks diffusers returned as None, all ones), for the OVERLONG prompt
(cut by the tokenizer at 1058 tokens, the template's tail included) `overlong_prompt_embeds_tail`,
the last TAIL of its 1024 embeddings, and for the run `run_latents_in` and `run_latents_out`
(output_type="latent").
"""

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

import diffusers
import transformers
from diffusers import AutoencoderKLQwenImage, FlowMatchEulerDiscreteScheduler, QwenImagePipeline, QwenImageTransformer2DModel
from transformers import AutoTokenizer, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[3]
TINY = REPO / "packages/adapter-qwen-image/test/goldens/qwen-tiny"
TOKENIZER = REPO / "packages/text-encoders/test/data/qwen2-tokenizer"
OUT = REPO / "packages/adapter-qwen-image/test/goldens/qwen-prompt"

LONG = " ".join(f"a {c} cube number {i} beside a tall lighthouse," for i, c in enumerate(["red", "blue", "green", "amber"] * 2))
PROMPTS = ["a photo of a cat", "Ünïcødé façade, 東京の夜景 🌃 and MIXED case: It's DON'T <|im_end|>", "", LONG]
# The pipeline's longest and a length that cuts all but "" (5 tokens after the template's 34).
SEQUENCE_LENGTHS = [1024, 8]
OVERLONG = " ".join(f"tile {i}" for i in range(600))
TAIL = 16
RUN = dict(prompt="a red ball on a table", negative_prompt="blurry", true_cfg_scale=4.0, num_inference_steps=6, height=48, width=48)
PERTURBATION = 0.1


def perturb(model, generator):
    with torch.no_grad():
        for _, p in model.named_parameters():
            spread = p.std().item() if p.numel() > 1 else 0.0
            p.add_(torch.randn(p.shape, generator=generator) * PERTURBATION * (spread if spread > 0 else 1.0))


def text_encoder(vocab_size, hidden, generator):
    config = Qwen2_5_VLConfig(
        text_config=dict(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=48, num_hidden_layers=2, num_attention_heads=2,
                         num_key_value_heads=1, max_position_embeddings=2048, rms_norm_eps=1e-6, rope_theta=1000000.0,
                         rope_scaling={"type": "mrope", "mrope_section": [2, 2, 2]}, bos_token_id=None, eos_token_id=None),
        vision_config=dict(depth=1, hidden_size=8, intermediate_size=8, num_heads=1, out_hidden_size=hidden, patch_size=2, temporal_patch_size=1,
                           fullatt_block_indexes=[0]),
        tie_word_embeddings=True)
    torch.manual_seed(21)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    perturb(model, generator)
    return model


def main():
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    shutil.copytree(TOKENIZER, OUT / "tokenizer")
    tokenizer = AutoTokenizer.from_pretrained(OUT / "tokenizer")
    hidden = json.loads((TINY / "transformer/config.json").read_text())["joint_attention_dim"]
    text_encoder(len(tokenizer), hidden, torch.Generator().manual_seed(0)).save_pretrained(OUT / "text_encoder")
    encoder = Qwen2_5_VLForConditionalGeneration.from_pretrained(OUT / "text_encoder", torch_dtype=torch.float32).eval()
    pipe = QwenImagePipeline(scheduler=FlowMatchEulerDiscreteScheduler.from_pretrained(TINY / "scheduler"),
                             vae=AutoencoderKLQwenImage.from_pretrained(TINY / "vae"), text_encoder=encoder, tokenizer=tokenizer,
                             transformer=QwenImageTransformer2DModel.from_pretrained(TINY / "transformer"))
    pipe.set_progress_bar_config(disable=True)

    tensors = {}
    none_masks = {}
    with torch.no_grad():
        drop = pipe.prompt_template_encode_start_idx
        tokens = tokenizer([pipe.prompt_template_encode.format(p) for p in PROMPTS], max_length=pipe.tokenizer_max_length + drop, padding=True,
                           truncation=True, return_tensors="pt")
        tensors["input_ids"] = tokens.input_ids.to(torch.float32)
        tensors["attention_mask"] = tokens.attention_mask.to(torch.float32)
        for length in SEQUENCE_LENGTHS:
            embeds, mask = pipe.encode_prompt(PROMPTS, max_sequence_length=length)
            tensors[f"prompt_embeds_{length}"] = embeds
            none_masks[length] = mask is None
            tensors[f"prompt_embeds_mask_{length}"] = torch.ones(embeds.shape[:2]) if mask is None else mask.to(torch.float32)
        overlong, overlong_mask = pipe.encode_prompt(OVERLONG, max_sequence_length=1024)
        assert overlong.shape[1] == 1024 and overlong_mask is None, "the overlong prompt must fill the 1024 + 34 tokens"
        tensors["overlong_prompt_embeds_tail"] = overlong[:, -TAIL:]

        h, w = RUN["height"] // pipe.vae_scale_factor, RUN["width"] // pipe.vae_scale_factor
        latents = torch.randn(1, (h // 2) * (w // 2), pipe.transformer.config.in_channels, generator=torch.Generator().manual_seed(7))
        tensors["run_latents_in"] = latents
        tensors["run_latents_out"] = pipe(**RUN, latents=latents, output_type="latent").images

    save_file({k: v.detach().to(torch.float32).contiguous() for k, v in tensors.items()}, str(OUT / "prompts.safetensors"))
    meta = dict(diffusers=diffusers.__version__, transformers=transformers.__version__, torch=torch.__version__, prompts=PROMPTS,
                sequence_lengths=SEQUENCE_LENGTHS, mask_is_none={str(k): v for k, v in none_masks.items()}, overlong_prompt=OVERLONG,
                overlong_tail=TAIL, run=RUN)
    (OUT / "meta.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {OUT}: " + ", ".join(f"{k} {tuple(v.shape)}" for k, v in tensors.items()))


if __name__ == "__main__":
    main()
