"""Builds test/data/pipeline-warnings.json: the truncation warnings diffusers' own encode_prompt logs for
long prompts on the adapters' test folders, which the adapters' prompt tests compare their encode-prompt
notes with, string for string.

Not run by CI, and the tests never need Python: run it by hand from the repository root when the
references must change (the text folders are the tests' own; transformer, VAE and scheduler are not
needed to encode a prompt and are left out):

    /work/refvenv/bin/python packages/text-encoders/tools/capture_pipeline_warnings.py

  * hidream:       adapter-hidream/test/goldens/hidream-prompt, its meta.json prompts[3] at max_sequence_length
                   12 (CLIPs truncated at 12 while diffusers quotes from token 217; T5; Llama 3);
  * hidream_short: the same with prompts[1], shorter than 218 CLIP tokens: the CLIPs' warnings quote nothing;
  * flux:          clip-tokenizer, t5-tokenizer, clip-text-model and t5-encoder of test/data (the CLI test's
                   folder), the last tokens.json prompt at max_sequence_length 16 (T5's warning quotes from
                   CLIP's token 76);
  * hunyuan_video: adapter-hunyuan-video/test/goldens/hunyuan-prompt, prompts[3] at max_sequence_length 106
                   (CLIP's warning; Llama is cut silently);
  * chroma:        t5-tokenizer and t5-encoder (the Chroma test's folder), the last tokens.json prompt at 16:
                   ChromaPipeline logs nothing.
"""
import json
import logging
from pathlib import Path

import torch

import diffusers
import transformers
from diffusers import ChromaPipeline, FluxPipeline, HiDreamImagePipeline, HunyuanVideoPipeline
from transformers import (AutoTokenizer, CLIPTextModel, CLIPTextModelWithProjection, LlamaForCausalLM, LlamaModel, T5EncoderModel)

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[3]
DATA = REPO / "packages/text-encoders/test/data"
HIDREAM = REPO / "packages/adapter-hidream/test/goldens/hidream-prompt"
HUNYUAN = REPO / "packages/adapter-hunyuan-video/test/goldens/hunyuan-prompt"


class Capture(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def captured(encode):
    """The warnings diffusers' loggers record while `encode` runs."""
    handler = Capture()
    root = logging.getLogger("diffusers")
    root.addHandler(handler)
    try:
        with torch.no_grad():
            encode()
    finally:
        root.removeHandler(handler)
    return handler.messages


def hidream(index):
    prompt = json.loads((HIDREAM / "meta.json").read_text())["prompts"][index]
    pipe = HiDreamImagePipeline(
        scheduler=None, vae=None, transformer=None,
        tokenizer=AutoTokenizer.from_pretrained(HIDREAM / "tokenizer"), tokenizer_2=AutoTokenizer.from_pretrained(HIDREAM / "tokenizer_2"),
        tokenizer_3=AutoTokenizer.from_pretrained(HIDREAM / "tokenizer_3"), tokenizer_4=AutoTokenizer.from_pretrained(HIDREAM / "tokenizer_4"),
        text_encoder=CLIPTextModelWithProjection.from_pretrained(HIDREAM / "text_encoder").eval(),
        text_encoder_2=CLIPTextModelWithProjection.from_pretrained(HIDREAM / "text_encoder_2").eval(),
        text_encoder_3=T5EncoderModel.from_pretrained(HIDREAM / "text_encoder_3").eval(),
        text_encoder_4=LlamaForCausalLM.from_pretrained(HIDREAM / "text_encoder_4", torch_dtype=torch.float32).eval())
    length = 12
    return {"prompt": prompt, "max_sequence_length": length, "warnings": captured(
        lambda: pipe.encode_prompt(prompt, do_classifier_free_guidance=False, max_sequence_length=length))}


def flux():
    prompt = json.loads((DATA / "tokens.json").read_text())["prompts"][-1]["text"]
    pipe = FluxPipeline(scheduler=None, vae=None, transformer=None,
                        tokenizer=AutoTokenizer.from_pretrained(DATA / "clip-tokenizer"), tokenizer_2=AutoTokenizer.from_pretrained(DATA / "t5-tokenizer"),
                        text_encoder=CLIPTextModel.from_pretrained(DATA / "clip-text-model", torch_dtype=torch.float32).eval(),
                        text_encoder_2=T5EncoderModel.from_pretrained(DATA / "t5-encoder", torch_dtype=torch.float32).eval())
    length = 16
    return {"prompt": prompt, "max_sequence_length": length, "warnings": captured(
        lambda: pipe.encode_prompt(prompt, prompt_2=None, max_sequence_length=length))}


def hunyuan_video():
    prompt = json.loads((HUNYUAN / "meta.json").read_text())["prompts"][3]
    pipe = HunyuanVideoPipeline(scheduler=None, vae=None, transformer=None,
                                tokenizer=AutoTokenizer.from_pretrained(HUNYUAN / "tokenizer"),
                                tokenizer_2=AutoTokenizer.from_pretrained(HUNYUAN / "tokenizer_2"),
                                text_encoder=LlamaModel.from_pretrained(HUNYUAN / "text_encoder", torch_dtype=torch.float32).eval(),
                                text_encoder_2=CLIPTextModel.from_pretrained(HUNYUAN / "text_encoder_2", torch_dtype=torch.float32).eval())
    length = 106
    return {"prompt": prompt, "max_sequence_length": length, "warnings": captured(
        lambda: pipe.encode_prompt(prompt, prompt_2=None, max_sequence_length=length))}


def chroma():
    prompt = json.loads((DATA / "tokens.json").read_text())["prompts"][-1]["text"]
    pipe = ChromaPipeline(scheduler=None, vae=None, transformer=None, tokenizer=AutoTokenizer.from_pretrained(DATA / "t5-tokenizer"),
                          text_encoder=T5EncoderModel.from_pretrained(DATA / "t5-encoder", torch_dtype=torch.float32).eval())
    length = 16
    return {"prompt": prompt, "max_sequence_length": length, "warnings": captured(
        lambda: pipe.encode_prompt(prompt, negative_prompt=None, do_classifier_free_guidance=False, max_sequence_length=length))}


def main():
    refs = {"versions": {"diffusers": diffusers.__version__, "transformers": transformers.__version__},
            "hidream": hidream(3), "hidream_short": hidream(1), "flux": flux(), "hunyuan_video": hunyuan_video(), "chroma": chroma()}
    out = DATA / "pipeline-warnings.json"
    out.write_text(json.dumps(refs, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    for name in ("hidream", "hidream_short", "flux", "hunyuan_video", "chroma"):
        print(name, [w[:140] for w in refs[name]["warnings"]])


if __name__ == "__main__":
    main()
