"""Makes the image-to-video reference data of @ditcache/adapter-wan (test/goldens/): small
random-weight WanTransformer3DModel folders with an image embedder and added key / value
projections (Wan 2.1 I2V), one of them with the first-last-frame position embedding (Wan 2.1
FLF2V), and diffusers' output of one transformer call on each.

Not run by CI and never by the tests: the tests read only what this wrote. Run it by hand in a
throwaway venv with torch and diffusers (from the repository root):

    /work/shared/tools/reference-venv.sh /tmp/wanvenv DIFFUSERS_GIT_DIR
    /tmp/wanvenv/bin/python packages/adapter-wan/tools/make_i2v_references.py packages/adapter-wan/test/goldens

Everything is seeded, so a rerun on the same torch and diffusers writes the same tensors.
test/goldens/README.md describes every file.
"""

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

import diffusers
from diffusers import WanTransformer3DModel

torch.set_num_threads(1)

# diffusers' attention processor takes the last 512 tokens of the encoder stream as the text and
# the rest as the image, so the text is exactly 512 tokens here, as WanImageToVideoPipeline pads it.
TEXT_TOKENS = 512
IMAGE_TOKENS = 9

BASE = dict(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=36, out_channels=16, text_dim=32,
            freq_dim=256, ffn_dim=32, num_layers=3, cross_attn_norm=True, qk_norm="rms_norm_across_heads", eps=1e-6,
            image_dim=20, added_kv_proj_dim=24, rope_max_seq_len=32)

SETS = {
    # Wan 2.1 I2V: one CLIP image embedding per video.
    "wan-i2v-tiny": dict(transformer=dict(BASE, pos_embed_seq_len=None), images_per_video=1),
    # Wan 2.1 FLF2V: the first and the last frame's embeddings, joined into one sequence with a learned position embedding.
    "wan-flf2v-tiny": dict(transformer=dict(BASE, pos_embed_seq_len=2 * IMAGE_TOKENS), images_per_video=2),
}
# (B, in_channels, frames, height, width): a 3 x 2 x 3 patch grid.
LATENTS = (2, 36, 3, 4, 6)

# Every saved tensor gets Gaussian noise of this fraction of its own spread (or of 1 for a
# constant tensor such as a norm's ones or the zero-initialised position embedding), so that no
# layer is an identity or a zero. Only what state_dict saves: the rotary tables are buffers the
# model recomputes at load, and perturbing them would describe a model no folder can hold.
PERTURBATION = 0.1


def perturb(module, generator):
    with torch.no_grad():
        for p in module.state_dict().values():
            spread = p.std().item() if p.numel() > 1 else 0.0
            p.add_(torch.randn(p.shape, generator=generator) * PERTURBATION * (spread if spread > 0 else 1.0))


def record_forward(transformer, spec, generator):
    """One transformer call with every block's output and the condition embedder's outputs."""
    batch = LATENTS[0]
    inputs = {
        "hidden_states": torch.randn(LATENTS, generator=generator),
        "encoder_hidden_states": torch.randn(batch, TEXT_TOKENS, BASE["text_dim"], generator=generator),
        "encoder_hidden_states_image": torch.randn(batch * spec["images_per_video"], IMAGE_TOKENS, BASE["image_dim"], generator=generator),
        "timestep": torch.tensor([999.0, 412.5]),
    }
    recorded = {}

    def keep(name):
        def hook(_module, _args, output):
            outputs = output if isinstance(output, tuple) else (output,)
            for i, o in enumerate(outputs):
                if o is not None:
                    recorded[f"{name}.out{i}"] = o
        return hook

    handles = [transformer.condition_embedder.register_forward_hook(keep("condition_embedder"))]
    handles += [block.register_forward_hook(keep(f"blocks.{i}")) for i, block in enumerate(transformer.blocks)]
    with torch.no_grad():
        sample = transformer(**inputs, return_dict=False)[0]
    for h in handles:
        h.remove()
    return {k: v.detach().to(torch.float32).contiguous() for k, v in {**inputs, **recorded, "sample": sample}.items()}


def main(out_dir):
    out = Path(out_dir)
    for index, (name, spec) in enumerate(SETS.items()):
        seed = 1000 + index
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed + 1)
        folder = out / name
        made = WanTransformer3DModel(**spec["transformer"])
        perturb(made, generator)
        made.save_pretrained(folder / "transformer")
        # The references come from the folder as saved, as the tests load it.
        transformer = WanTransformer3DModel.from_pretrained(folder / "transformer").eval()
        save_file(record_forward(transformer, spec, generator), str(folder / "transformer_forward.safetensors"))
        meta = dict(diffusers=diffusers.__version__, torch=torch.__version__, seed=seed, text_tokens=TEXT_TOKENS, image_tokens=IMAGE_TOKENS,
                    images_per_video=spec["images_per_video"], latents=list(LATENTS))
        (folder / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        print(f"wrote {folder}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: make_i2v_references.py OUT_DIR")
    main(sys.argv[1])
