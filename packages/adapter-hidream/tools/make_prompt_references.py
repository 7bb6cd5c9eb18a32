"""Makes the prompt-encoding reference data of @ditcache/adapter-hidream (test/goldens/hidream-prompt/):
HiDreamImagePipeline's four text encoders at small random weights, its encode_prompt on awkward
prompts, and one pipeline run from text.

Not run by CI and never by the tests: the tests read only what this wrote. Run it by hand from the
repository root in a venv with torch, transformers and diffusers (the versions go into meta.json):

    /work/refvenv/bin/python packages/adapter-hidream/tools/make_prompt_references.py

The pipeline is testdata/goldens/hidream-tiny (transformer, VAE, scheduler) with these folders:
  * tokenizer/, tokenizer_2/: @ditcache/text-encoders' tiny CLIP tokenizer (HiDream's CLIP
    tokenizers are CLIP's, with a 218-token limit of their own in the pipeline);
  * tokenizer_3/: its tiny T5 tokenizer (tokenizer.json);
  * tokenizer_4/: its tiny Llama 3 tokenizer (byte-level BPE with Llama 3's pre-tokenizer and
    special tokens, trained by tools/make_llm_tokenizer_references.py; no pad token, as Llama
    3.1's, which the pipeline replaces with its eos token), copied here;
  * text_encoder/, text_encoder_2/: CLIPTextModelWithProjection, hidden 16 and 24, projections 32
    each (together the transformer's text_emb_dim 64), 248 positions as HiDream's long CLIPs;
  * text_encoder_3/: T5EncoderModel, d_model 32 (caption_channels[0]);
  * text_encoder_4/: LlamaForCausalLM, hidden 16 (caption_channels[1]), 3 layers (llama_layers
    reads up to layer 2), grouped-query attention, Llama 3.1's rotary scaling, bf16 weights.
Every weight is perturbed by PERTURBATION of its spread, so no layer is an identity.

prompts.safetensors holds, per max_sequence_length L in SEQUENCE_LENGTHS: `prompt_embeds_t5_L`,
`prompt_embeds_llama3_L` (layers, P, L, 16), `pooled_prompt_embeds_L` for PROMPTS, the token ids
of each tokenizer (`input_ids_{1,2,3,4}_L`, float32), and for the run: `run_latents_in` and
`run_latents_out` (output_type="latent"). meta.json: the prompts, lengths, run settings, versions,
and the run's smallest gap between a token's k-th and (k+1)-th expert score (a tie there could
route a token to another expert on float error).
"""

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

import diffusers
import transformers
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, HiDreamImagePipeline, HiDreamImageTransformer2DModel
from transformers import (CLIPTextConfig, CLIPTextModelWithProjection, CLIPTokenizer, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast,
                          T5Config, T5EncoderModel, T5TokenizerFast)

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[3]
TINY = REPO / "testdata/goldens/hidream-tiny"
TEXT_DATA = REPO / "packages/text-encoders/test/data"
OUT = REPO / "packages/adapter-hidream/test/goldens/hidream-prompt"

LONG = " ".join(f"a {c} cube number {i} beside a tall lighthouse," for i, c in enumerate(["red", "blue", "green", "amber", "violet"] * 6))
PROMPTS = ["a photo of a cat", "Ünïcødé façade, 東京の夜景 🌃 and MIXED case: It's DON'T", "", LONG]
SEQUENCE_LENGTHS = [128, 12]
# A run whose tokens all choose their experts by a clear score gap (meta.json records it).
RUN = dict(prompt="a red ball", negative_prompt="noise", num_inference_steps=6, guidance_scale=5.0)
PERTURBATION = 0.1


def perturb(model, generator):
    with torch.no_grad():
        for _, p in model.named_parameters():
            spread = p.std().item() if p.numel() > 1 else 0.0
            p.add_(torch.randn(p.shape, generator=generator) * PERTURBATION * (spread if spread > 0 else 1.0))


def clip(hidden, vocab_size, tokenizer, seed, generator):
    torch.manual_seed(seed)
    config = CLIPTextConfig(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2, num_attention_heads=2,
                            max_position_embeddings=248, projection_dim=32, hidden_act="gelu", bos_token_id=tokenizer.bos_token_id,
                            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    model = CLIPTextModelWithProjection(config).eval()
    perturb(model, generator)
    return model


class ExpertGap:
    """The smallest gap between the k-th and (k+1)-th expert score of any token routed during a run."""

    def __init__(self, transformer):
        self.gap = float("inf")
        for module in transformer.modules():
            if type(module).__name__ == "MoEGate":
                module.register_forward_hook(self.record)

    def record(self, gate, inputs, _output):
        hidden = inputs[0].reshape(-1, inputs[0].shape[-1])
        scores = torch.nn.functional.linear(hidden.to(torch.float32), gate.weight.to(torch.float32)).softmax(dim=-1)
        top = scores.sort(dim=-1, descending=True).values
        self.gap = min(self.gap, (top[:, gate.top_k - 1] - top[:, gate.top_k]).min().item())


def main():
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    generator = torch.Generator().manual_seed(0)
    tokenizer = CLIPTokenizer.from_pretrained(TEXT_DATA / "clip-tokenizer-json")
    tokenizer_3 = T5TokenizerFast.from_pretrained(TEXT_DATA / "t5-tokenizer")
    tokenizer_4 = PreTrainedTokenizerFast.from_pretrained(TEXT_DATA / "llama3-tokenizer")
    # Saved without a pad token, as Llama 3.1's: the pipeline makes its eos token the pad token.
    for name, tok in [("tokenizer", tokenizer), ("tokenizer_2", tokenizer), ("tokenizer_3", tokenizer_3), ("tokenizer_4", tokenizer_4)]:
        tok.save_pretrained(OUT / name)

    torch.manual_seed(11)
    t5 = T5EncoderModel(T5Config(vocab_size=len(tokenizer_3), d_model=32, d_kv=8, d_ff=48, num_layers=2, num_heads=4, feed_forward_proj="gated-gelu",
                                 dropout_rate=0.0, decoder_start_token_id=0)).eval()
    perturb(t5, generator)
    torch.manual_seed(12)
    llama = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer_4), hidden_size=16, intermediate_size=32, num_hidden_layers=3, num_attention_heads=2,
                                         num_key_value_heads=1, max_position_embeddings=131072, rms_norm_eps=1e-5, rope_theta=500000.0,
                                         rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                                       "original_max_position_embeddings": 8192})).eval()
    perturb(llama, generator)
    encoders = {"text_encoder": clip(16, len(tokenizer), tokenizer, 9, generator), "text_encoder_2": clip(24, len(tokenizer), tokenizer, 10, generator),
                "text_encoder_3": t5, "text_encoder_4": llama.to(torch.bfloat16)}
    for name, model in encoders.items():
        model.save_pretrained(OUT / name)
    loaded = {
        "text_encoder": CLIPTextModelWithProjection.from_pretrained(OUT / "text_encoder").eval(),
        "text_encoder_2": CLIPTextModelWithProjection.from_pretrained(OUT / "text_encoder_2").eval(),
        "text_encoder_3": T5EncoderModel.from_pretrained(OUT / "text_encoder_3").eval(),
        "text_encoder_4": LlamaForCausalLM.from_pretrained(OUT / "text_encoder_4", torch_dtype=torch.float32).eval(),
    }
    transformer = HiDreamImageTransformer2DModel.from_pretrained(TINY / "transformer")
    pipe = HiDreamImagePipeline(scheduler=FlowMatchEulerDiscreteScheduler.from_pretrained(TINY / "scheduler"), vae=AutoencoderKL.from_pretrained(TINY / "vae"),
                                tokenizer=tokenizer, tokenizer_2=tokenizer, tokenizer_3=tokenizer_3, tokenizer_4=tokenizer_4, transformer=transformer, **loaded)
    meta_tiny = json.loads((TINY / "meta.json").read_text())
    pipe.default_sample_size = meta_tiny["pipe.default_sample_size"]

    tensors = {}
    with torch.no_grad():
        for length in SEQUENCE_LENGTHS:
            t5_embeds, _, llama_embeds, _, pooled, _ = pipe.encode_prompt(PROMPTS, do_classifier_free_guidance=False, max_sequence_length=length)
            tensors[f"prompt_embeds_t5_{length}"] = t5_embeds
            tensors[f"prompt_embeds_llama3_{length}"] = llama_embeds
            tensors[f"pooled_prompt_embeds_{length}"] = pooled
            assert pipe.tokenizer_4.pad_token == pipe.tokenizer_4.eos_token
            for i, (tok, limit) in enumerate([(tokenizer, 218), (tokenizer, 218), (tokenizer_3, tokenizer_3.model_max_length),
                                              (tokenizer_4, tokenizer_4.model_max_length)]):
                ids = tok(PROMPTS, padding="max_length", max_length=min(length, limit), truncation=True, add_special_tokens=True, return_tensors="pt").input_ids
                tensors[f"input_ids_{i + 1}_{length}"] = ids.to(torch.float32)

        reference = load_file(str(TINY / "pipeline.safetensors"))
        gap = ExpertGap(transformer)
        latents = pipe(**RUN, height=meta_tiny["height"], width=meta_tiny["width"], latents=reference["latents_in"], output_type="latent").images
        tensors["run_latents_in"] = reference["latents_in"]
        tensors["run_latents_out"] = latents

    save_file({k: v.detach().to(torch.float32).contiguous() for k, v in tensors.items()}, str(OUT / "prompts.safetensors"))
    meta = dict(diffusers=diffusers.__version__, transformers=transformers.__version__, torch=torch.__version__, prompts=PROMPTS,
                sequence_lengths=SEQUENCE_LENGTHS, run=dict(RUN, height=meta_tiny["height"], width=meta_tiny["width"]),
                default_sample_size=meta_tiny["pipe.default_sample_size"], run_min_expert_score_gap=gap.gap)
    (OUT / "meta.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {OUT}; smallest expert score gap {gap.gap:.3g}")


if __name__ == "__main__":
    main()
