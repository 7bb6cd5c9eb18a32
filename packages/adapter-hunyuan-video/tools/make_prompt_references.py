"""Makes the prompt-encoding reference data of @ditcache/adapter-hunyuan-video (test/goldens/hunyuan-prompt/):
HunyuanVideoPipeline's two text encoders at small random weights, its encode_prompt on awkward
prompts, and one run from a prompt and a negative prompt (true CFG on top of embedded guidance).

Not run by CI and never by the tests: the tests read only what this wrote. Run it by hand from the
repository root in a venv with torch, transformers and diffusers (the versions go into meta.json):

    /work/refvenv-cd/bin/python packages/adapter-hunyuan-video/tools/make_prompt_references.py

The pipeline is test/goldens/hv-tiny (transformer, VAE, scheduler) with these folders:
  * tokenizer/: @ditcache/text-encoders' tiny Llama 3 tokenizer with HunyuanVideo's <image> and
    <pad> tokens (padding on the right), copied as it is, and read as PreTrainedTokenizerFast, which
    keeps tokenizer.json as the tokenizers library (and transformers 4) read it, as text-encoders'
    references do: transformers 5's LlamaTokenizer, which its tokenizer_config's LlamaTokenizerFast
    names, rebuilds the pre-tokenizer and would drop this file's spaces and newlines. It splits diffusers' prompt template into
    more tokens than Llama 3's 95, so the pipeline's crop_start 95 (which it passes, not counts)
    leaves the template's tail before each prompt: the references keep it, as diffusers does;
  * text_encoder/: LlamaModel (what the HunyuanVideo repository's model_index.json names), hidden
    12 (hv-tiny's text_embed_dim), 4 layers (the pipeline reads hidden_states[-3], the second
    layer's output), 2 heads of 6 over 1 key/value head, Llama 3's rotary (theta 500000);
  * tokenizer_2/: its tiny CLIP tokenizer (vocab.json and merges.txt, as HunyuanVideo ships it);
  * text_encoder_2/: CLIPTextModel, hidden 10 (hv-tiny's pooled_projection_dim), 2 layers.
Every weight is perturbed by PERTURBATION of its spread, so no layer is an identity.

prompts.safetensors (float32 throughout) holds, per max_sequence_length L in SEQUENCE_LENGTHS,
`input_ids_L` (P, L + 95) as the pipeline tokenizes the templated PROMPTS, and encode_prompt's
`prompt_embeds_L` (P, L, 12), `pooled_prompt_embeds_L` (P, 10) and `prompt_attention_mask_L` (P, L);
`clip_input_ids` (P, 77); and for the run `run_latents_in` and `run_latents_out`
(output_type="latent").
"""

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

import diffusers
import transformers
from diffusers import AutoencoderKLHunyuanVideo, FlowMatchEulerDiscreteScheduler, HunyuanVideoPipeline, HunyuanVideoTransformer3DModel
from diffusers.pipelines.hunyuan_video.pipeline_hunyuan_video import DEFAULT_PROMPT_TEMPLATE
from tokenizers import Tokenizer
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer, LlamaConfig, LlamaModel, PreTrainedTokenizerFast

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[3]
TINY = REPO / "packages/adapter-hunyuan-video/test/goldens/hv-tiny"
TEXT_DATA = REPO / "packages/text-encoders/test/data"
OUT = REPO / "packages/adapter-hunyuan-video/test/goldens/hunyuan-prompt"

LONG = " ".join(f"a {c} cube number {i} beside a tall lighthouse," for i, c in enumerate(["red", "blue", "green", "amber", "violet"] * 6))
PROMPTS = ["a photo of a cat", "Ünïcødé façade, 東京の夜景 🌃 and MIXED case: It's DON'T <|eot_id|>", "", LONG]
# The pipeline's default, and one that keeps the template's tail past the 95 cropped (97 tokens
# with the tiny tokenizer), <|eot_id|> and a few prompt tokens, so that all but the first and "" are cut.
SEQUENCE_LENGTHS = [256, 106]
RUN = dict(prompt="a red ball rolls on a table", negative_prompt="blurry, still", true_cfg_scale=3.0, guidance_scale=6.0, num_inference_steps=6,
           height=32, width=32, num_frames=5)
PERTURBATION = 0.1


def perturb(model, generator):
    with torch.no_grad():
        for _, p in model.named_parameters():
            spread = p.std().item() if p.numel() > 1 else 0.0
            p.add_(torch.randn(p.shape, generator=generator) * PERTURBATION * (spread if spread > 0 else 1.0))


def main():
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    shutil.copytree(TEXT_DATA / "hunyuan-video-tokenizer", OUT / "tokenizer")
    shutil.copytree(TEXT_DATA / "clip-tokenizer", OUT / "tokenizer_2")
    tokenizer = PreTrainedTokenizerFast.from_pretrained(OUT / "tokenizer")
    assert tokenizer.backend_tokenizer.to_str() == Tokenizer.from_file(str(OUT / "tokenizer/tokenizer.json")).to_str()
    assert (tokenizer.pad_token, tokenizer.padding_side) == ("<pad>", "right")
    tokenizer_2 = CLIPTokenizer.from_pretrained(OUT / "tokenizer_2")
    config = json.loads((TINY / "transformer/config.json").read_text())
    generator = torch.Generator().manual_seed(0)

    torch.manual_seed(31)
    llama = LlamaModel(LlamaConfig(vocab_size=len(tokenizer), hidden_size=config["text_embed_dim"], intermediate_size=24, num_hidden_layers=4,
                                   num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=8192, rms_norm_eps=1e-5,
                                   rope_theta=500000.0, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                   pad_token_id=tokenizer.pad_token_id)).eval()
    perturb(llama, generator)
    llama.save_pretrained(OUT / "text_encoder")
    torch.manual_seed(32)
    clip = CLIPTextModel(CLIPTextConfig(vocab_size=len(tokenizer_2), hidden_size=config["pooled_projection_dim"], intermediate_size=20,
                                        num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=77, hidden_act="quick_gelu",
                                        bos_token_id=tokenizer_2.bos_token_id, eos_token_id=tokenizer_2.eos_token_id,
                                        pad_token_id=tokenizer_2.pad_token_id)).eval()
    perturb(clip, generator)
    clip.save_pretrained(OUT / "text_encoder_2")

    pipe = HunyuanVideoPipeline(text_encoder=LlamaModel.from_pretrained(OUT / "text_encoder").eval(), tokenizer=tokenizer,
                                transformer=HunyuanVideoTransformer3DModel.from_pretrained(TINY / "transformer"),
                                vae=AutoencoderKLHunyuanVideo.from_pretrained(TINY / "vae"),
                                scheduler=FlowMatchEulerDiscreteScheduler.from_pretrained(TINY / "scheduler"),
                                text_encoder_2=CLIPTextModel.from_pretrained(OUT / "text_encoder_2").eval(), tokenizer_2=tokenizer_2)
    pipe.set_progress_bar_config(disable=True)

    crop = DEFAULT_PROMPT_TEMPLATE["crop_start"]
    template_tokens = len(tokenizer(DEFAULT_PROMPT_TEMPLATE["template"]).input_ids)
    tensors = {}
    truncated = {}
    with torch.no_grad():
        for length in SEQUENCE_LENGTHS:
            embeds, pooled, mask = pipe.encode_prompt(PROMPTS, max_sequence_length=length)
            tensors[f"prompt_embeds_{length}"] = embeds
            tensors[f"pooled_prompt_embeds_{length}"] = pooled
            tensors[f"prompt_attention_mask_{length}"] = mask
            texts = [DEFAULT_PROMPT_TEMPLATE["template"].format(p) for p in PROMPTS]
            ids = tokenizer(texts, max_length=length + crop, padding="max_length", truncation=True, return_tensors="pt").input_ids
            tensors[f"input_ids_{length}"] = ids
            full = [len(tokenizer(t).input_ids) for t in texts]
            truncated[str(length)] = [max(n - (length + crop), 0) for n in full]
        tensors["clip_input_ids"] = tokenizer_2(PROMPTS, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids

        shape = (1, config["in_channels"], (RUN["num_frames"] - 1) // 4 + 1, RUN["height"] // 8, RUN["width"] // 8)
        latents = torch.randn(shape, generator=torch.Generator().manual_seed(7))
        tensors["run_latents_in"] = latents
        tensors["run_latents_out"] = pipe(**RUN, latents=latents, output_type="latent").frames

    save_file({k: v.detach().to(torch.float32).contiguous() for k, v in tensors.items()}, str(OUT / "prompts.safetensors"))
    meta = dict(diffusers=diffusers.__version__, transformers=transformers.__version__, torch=torch.__version__, prompts=PROMPTS,
                sequence_lengths=SEQUENCE_LENGTHS, crop_start=crop, template_tokens=template_tokens, llama_truncated_tokens=truncated,
                clip_truncated_tokens=[max(len(tokenizer_2(p).input_ids) - 77, 0) for p in PROMPTS], run=RUN)
    (OUT / "meta.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {OUT}: " + ", ".join(f"{k} {tuple(v.shape)}" for k, v in tensors.items()))
    print(json.dumps({k: meta[k] for k in ["template_tokens", "llama_truncated_tokens", "clip_truncated_tokens"]}))


if __name__ == "__main__":
    main()
