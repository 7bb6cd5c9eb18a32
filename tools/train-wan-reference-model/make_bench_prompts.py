"""Writes the bench prompts file of models/wan-shapes: eight prompts, each encoded by ditcache's own
`encode-prompt` on the folder (with diffusers' default empty negative prompt, for classifier-free
guidance), stacked one row per prompt into one safetensors file with the settings the model was
trained for in its metadata.

    /work/refvenv/bin/python tools/train-wan-reference-model/make_bench_prompts.py models/wan-shapes OUT.safetensors
"""
import json
import os
import subprocess
import sys
import tempfile

import torch
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train import BENCH_PROMPTS  # noqa: E402

CLI = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "packages", "cli", "dist", "cli.js")


def main(model, out):
    with open(os.path.join(model, "ditcache.json")) as f:
        defaults = json.load(f)
    rows = {"prompt_embeds": [], "negative_prompt_embeds": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i, prompt in enumerate(BENCH_PROMPTS):
            path = os.path.join(tmp, f"{i}.safetensors")
            subprocess.run(["node", CLI, "encode-prompt", "--model", model, "--prompt", prompt, "--negative-prompt", "",
                            "--max-sequence-length", str(defaults["max_sequence_length"]), "--out", path], check=True)
            tensors = load_file(path)
            for name in rows:
                rows[name].append(tensors[name])
    meta = {"prompts": json.dumps(BENCH_PROMPTS)}
    for key in ("height", "width", "num_inference_steps", "guidance_scale", "num_frames"):
        meta[key] = str(defaults[key])
    save_file({name: torch.cat(r).contiguous() for name, r in rows.items()}, out, metadata=meta)
    print(f"wrote {out}: {len(BENCH_PROMPTS)} prompts, {meta}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: make_bench_prompts.py MODEL_DIR OUT.safetensors")
    main(sys.argv[1], sys.argv[2])
