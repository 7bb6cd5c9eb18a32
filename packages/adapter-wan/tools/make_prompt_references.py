"""Makes the prompt-encoding reference data of @ditcache/adapter-wan (test/goldens/wan-prompt/): a
small random-weight UMT5 text encoder, WanPipeline's prompt encoding with it, and one pipeline run
from text.

Not run by CI and never by the tests: the tests read only what this wrote. Run it by hand in a
throwaway venv with torch, transformers and diffusers (from the repository root):

    /work/shared/tools/reference-venv.sh /tmp/wanvenv DIFFUSERS_GIT_DIR
    /tmp/wanvenv/bin/python packages/adapter-wan/tools/make_prompt_references.py packages/adapter-wan/test/goldens/wan-prompt

The pipeline is testdata/goldens/wan-tiny (transformer, VAE, scheduler) with two more folders:
tokenizer/, the tiny SentencePiece unigram tokenizer of @ditcache/text-encoders' test data (a
T5TokenizerFast, as Wan's umt5-xxl tokenizer is), and text_encoder/, a UMT5EncoderModel whose
d_model is the transformer's text_dim. Everything is seeded, so a rerun on the same torch,
transformers and diffusers writes the same tensors. test/goldens/README.md describes every file.
"""

import json
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

import diffusers
import transformers
from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanPipeline, WanTransformer3DModel
from transformers import T5TokenizerFast, UMT5Config, UMT5EncoderModel

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[3]
WAN = REPO / "testdata/goldens/wan-tiny"
TOKENIZER = REPO / "packages/text-encoders/test/data/t5-tokenizer"

# Prompts as users write them: HTML entities, runs of whitespace, curly quotes, ligatures and
# full-width forms (which WanPipeline's prompt_clean and ftfy undo), unicode, one prompt longer
# than the short sequence length, and the empty negative prompt diffusers uses by default.
PROMPTS = [
    "a red circle at the top left",
    "  two   cats &amp; a dog,\n\tsleeping  ",
    "caf\u00e9 \u00e0 la cr\u00e8me &lt;3 &#39;quoted&#39;",
    "\u201ca \ufb01sh\u201d in \uff26\uff35\uff2c\uff2c\u3000\uff37\uff29\uff24\uff34\uff28 &ldquo;video&rdquo;",
    "a very long prompt that goes on and on about the colours of the sea, the sky and the sand so that it cannot fit",
    "",
]
# Cleaned only (meta.json): whitespace and control characters where Python and JavaScript differ.
CLEANED_ONLY = ["a\x1cb\x85c\u3000d\u2003e\xa0f", "\ufeffa b\ufeff", "line\r\nbreaks\u2028and\u2029more", "&amp;amp; twice"]
SEQUENCE_LENGTHS = [512, 16]
# The run from text: a prompt, a negative prompt, the pipeline's own max_sequence_length (512).
RUN = dict(prompt="a green square in the middle", negative_prompt="blurry &amp; dark", num_inference_steps=8, guidance_scale=5.0)


def make_text_encoder(vocab_size, d_model):
    torch.manual_seed(7)
    config = UMT5Config(vocab_size=vocab_size, d_model=d_model, d_kv=8, d_ff=48, num_layers=2, num_decoder_layers=2, num_heads=4,
                        relative_attention_num_buckets=32, relative_attention_max_distance=128, feed_forward_proj="gated-gelu",
                        dropout_rate=0.0, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    return UMT5EncoderModel(config).eval()


def main(out_dir):
    # WanPipeline runs ftfy.fix_text on prompts only when ftfy is installed, as Wan requires; the
    # references must come from that path.
    if not diffusers.pipelines.wan.pipeline_wan.is_ftfy_available():
        sys.exit("install ftfy in this venv: WanPipeline cleans prompts with it")
    out = Path(out_dir)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    tokenizer = T5TokenizerFast.from_pretrained(TOKENIZER)
    tokenizer.save_pretrained(out / "tokenizer")
    transformer = WanTransformer3DModel.from_pretrained(WAN / "transformer")
    encoder = make_text_encoder(len(tokenizer), transformer.config.text_dim)
    encoder.save_pretrained(out / "text_encoder")
    encoder = UMT5EncoderModel.from_pretrained(out / "text_encoder").eval()
    pipe = WanPipeline(tokenizer=tokenizer, text_encoder=encoder, transformer=transformer, vae=AutoencoderKLWan.from_pretrained(WAN / "vae"),
                       scheduler=FlowMatchEulerDiscreteScheduler.from_pretrained(WAN / "scheduler"))

    tensors = {}
    cases = []
    with torch.no_grad():
        for length in SEQUENCE_LENGTHS:
            embeds, _ = pipe.encode_prompt(PROMPTS, do_classifier_free_guidance=False, max_sequence_length=length)
            tensors[f"prompt_embeds_{length}"] = embeds
            encoded = tokenizer([diffusers.pipelines.wan.pipeline_wan.prompt_clean(p) for p in PROMPTS], padding="max_length",
                                max_length=length, truncation=True, add_special_tokens=True, return_attention_mask=True, return_tensors="pt")
            tensors[f"input_ids_{length}"] = encoded.input_ids.to(torch.float32)
            tensors[f"attention_mask_{length}"] = encoded.attention_mask.to(torch.float32)
            if length == min(SEQUENCE_LENGTHS):
                # The encoder alone, on the ids and mask: its last hidden state before the pipeline zeroes the padding.
                tensors[f"last_hidden_state_{length}"] = encoder(encoded.input_ids, encoded.attention_mask).last_hidden_state
        cases = [dict(prompt=p, cleaned=diffusers.pipelines.wan.pipeline_wan.prompt_clean(p)) for p in PROMPTS]

        reference = load_file(str(WAN / "pipeline.safetensors"))
        meta_wan = json.loads((WAN / "meta.json").read_text())
        latents = pipe(**RUN, height=meta_wan["height"], width=meta_wan["width"], num_frames=meta_wan["num_frames"],
                       latents=reference["latents_in"], output_type="latent").frames
        tensors["run_latents_in"] = reference["latents_in"]
        tensors["run_latents_out"] = latents
        # encode_prompt defaults to 226 tokens; the pipeline call to 512, as the run above used.
        run_embeds, run_negative = pipe.encode_prompt(RUN["prompt"], RUN["negative_prompt"], do_classifier_free_guidance=True, max_sequence_length=512)
        tensors["run_prompt_embeds"] = run_embeds
        tensors["run_negative_prompt_embeds"] = run_negative

    save_file({k: v.detach().to(torch.float32).contiguous() for k, v in tensors.items()}, str(out / "prompts.safetensors"))
    cleaned_only = [dict(prompt=p, cleaned=diffusers.pipelines.wan.pipeline_wan.prompt_clean(p)) for p in CLEANED_ONLY]
    meta = dict(diffusers=diffusers.__version__, transformers=transformers.__version__, torch=torch.__version__, prompts=cases, cleaned_only=cleaned_only,
                sequence_lengths=SEQUENCE_LENGTHS, run=dict(RUN, height=meta_wan["height"], width=meta_wan["width"], num_frames=meta_wan["num_frames"]))
    (out / "meta.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: make_prompt_references.py OUT_DIR")
    main(sys.argv[1])
