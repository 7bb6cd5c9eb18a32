"""Makes the 16-bit reference data of @ditcache/adapter-hidream (test/goldens/hidream-tiny/): what
diffusers computes with torch_dtype=torch.bfloat16 and torch.float16 on the shared hidream-tiny
model, so that the tests can check that `dtype: 'bfloat16'` / `'float16'` tracks diffusers' run in
that dtype, op for op, and is as close to the float32 reference as diffusers' is.

Not run by CI and never by the tests: the tests read only what this wrote. Run it by hand in a
throwaway venv with torch and diffusers (from the repository root):

    /work/shared/tools/reference-venv.sh /tmp/hidreamvenv DIFFUSERS_GIT_DIR
    /tmp/hidreamvenv/bin/python packages/adapter-hidream/tools/make_16bit_references.py packages/adapter-hidream/test/goldens

The inputs are those of testdata/goldens/hidream-tiny, which the tests read from there; this writes
only the 16-bit outputs, as float32 tensors (exact), named `_bf16` / `_fp16`. Every component loads
in the dtype (HiDreamImageTransformer2DModel keeps nothing in float32; the VAE follows the
pipeline's dtype, as `HiDreamImagePipeline.from_pretrained(..., torch_dtype=...)` loads it). The
prompt embeddings and the initial latents are cast to the dtype before the call, as the pipeline's
16-bit text encoders would return them (diffusers takes the latents' dtype from the pooled
embedding and would refuse float32 latents in a 16-bit transformer). No randomness but the extra
runs' initial noise, drawn from fixed seeds: a rerun on the same torch and diffusers writes the
same tensors. test/goldens/README.md describes every file.
"""

import json
import math
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

import diffusers
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, HiDreamImagePipeline, HiDreamImageTransformer2DModel
from diffusers.models.transformers.transformer_hidream_image import MoEGate

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[3]
HIDREAM = REPO / "testdata/goldens/hidream-tiny"
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
# On this tiny random-weight model one run's PSNR moves by several dB with the last bits of the
# latents, so the PSNR criterion is pooled over runs from this many initial noises; and one
# transformer call's error moves by tens of percent when a token whose 2nd and 3rd routing scores
# tie goes to another expert, so the accuracy criterion of a call is pooled over these many calls.
SEEDS = range(100, 116)
FORWARD_SEEDS = range(200, 216)
EMBEDS = ["prompt_embeds_t5", "prompt_embeds_llama3", "pooled_prompt_embeds",
          "negative_prompt_embeds_t5", "negative_prompt_embeds_llama3", "negative_pooled_prompt_embeds"]


def f32(tensors):
    return {k: v.detach().to(torch.float32).contiguous() for k, v in tensors.items()}


def relative_l2(a, b):
    return (torch.linalg.vector_norm(a.double() - b.double()) / torch.linalg.vector_norm(b.double())).item()


def psnr(a, b):
    """PSNR in dB of float images in [0, 1] (data range 1), pooled over everything given."""
    mse = torch.mean((a.double() - b.double()) ** 2).item()
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


class TopkGaps:
    """The smallest gap between the k-th and the (k+1)-th routing score any token had, as the gate computed them."""

    def __init__(self, model):
        self.gap = math.inf
        self.handles = [m.register_forward_hook(self.hook) for m in model.modules() if isinstance(m, MoEGate)]

    def hook(self, gate, args, _output):
        x = args[0]
        scores = torch.nn.functional.linear(x.view(-1, x.shape[-1]), gate.weight, None).softmax(dim=-1)
        top = scores.float().topk(gate.top_k + 1, dim=-1).values
        self.gap = min(self.gap, (top[:, gate.top_k - 1] - top[:, gate.top_k]).min().item())

    def close(self):
        for h in self.handles:
            h.remove()
        return self.gap


def forward_inputs(seed):
    """
    The inputs of extra transformer call `seed`, drawn as the tests draw them (randnTensor is
    torch.randn with a fresh CPU generator per tensor): square latents for even seeds, non-square
    (padded to max_seq) for odd ones, the golden call's text shapes, timesteps spread over 0..1000.
    """
    draw = lambda shape, k: torch.randn(shape, generator=torch.Generator().manual_seed(10 * seed + k))
    return {"hidden_states": draw((2, 4, 16, 16 if seed % 2 == 0 else 24), 0), "encoder_hidden_states_t5": draw((2, 8, 32), 1),
            "encoder_hidden_states_llama3": draw((3, 2, 6, 16), 2), "pooled_embeds": draw((2, 64), 3),
            "timesteps": torch.tensor([1000.0 * ((seed * 7) % 16 + 0.5) / 16, 1000.0 * ((seed * 3) % 16 + 0.25) / 16])}


def record_forward(inputs, dtype):
    """One 16-bit transformer call on the float32 golden's inputs cast to the dtype, with every block's outputs."""
    transformer = HiDreamImageTransformer2DModel.from_pretrained(HIDREAM / "transformer", torch_dtype=dtype).eval()
    recorded = {}

    def keep(name):
        def hook(_module, _args, output):
            for i, o in enumerate(output if isinstance(output, tuple) else (output,)):
                recorded[f"{name}.out{i}"] = o
        return hook

    def keep_inputs(name):
        def hook(_module, _args, kwargs):
            for k in ("hidden_states", "encoder_hidden_states", "hidden_states_masks", "temb"):
                if kwargs.get(k) is not None:
                    recorded[f"{name}.in.{k}"] = kwargs[k]
        return hook

    handles = []
    for kind in ("double_stream_blocks", "single_stream_blocks"):
        for i, block in enumerate(getattr(transformer, kind)):
            handles += [block.register_forward_hook(keep(f"{kind}.{i}")), block.register_forward_pre_hook(keep_inputs(f"{kind}.{i}"), with_kwargs=True)]
    handles += [m.register_forward_hook(keep(name)) for name, m in (("t_embedder", transformer.t_embedder), ("p_embedder", transformer.p_embedder))]
    gaps = TopkGaps(transformer)
    with torch.no_grad():
        sample = transformer(hidden_states=inputs["hidden_states"].to(dtype), timesteps=inputs["timesteps"],
                             encoder_hidden_states_t5=inputs["encoder_hidden_states_t5"].to(dtype),
                             encoder_hidden_states_llama3=inputs["encoder_hidden_states_llama3"].to(dtype),
                             pooled_embeds=inputs["pooled_embeds"].to(dtype), return_dict=False)[0]
    for h in handles:
        h.remove()
    assert sample.dtype == dtype
    return f32({**recorded, "sample": sample}), gaps.close()


def load_pipeline(dtype, meta):
    transformer = HiDreamImageTransformer2DModel.from_pretrained(HIDREAM / "transformer", torch_dtype=dtype)
    vae = AutoencoderKL.from_pretrained(HIDREAM / "vae", torch_dtype=dtype)
    scheduler = FlowMatchEulerDiscreteScheduler.from_pretrained(HIDREAM / "scheduler")
    pipe = HiDreamImagePipeline(scheduler=scheduler, vae=vae, text_encoder=None, tokenizer=None, text_encoder_2=None, tokenizer_2=None,
                                text_encoder_3=None, tokenizer_3=None, text_encoder_4=None, tokenizer_4=None, transformer=transformer)
    pipe.default_sample_size = meta["pipe.default_sample_size"]
    pipe.set_progress_bar_config(disable=True)
    return pipe


def run(pipe, golden, meta, dtype, latents, on_step_end=None):
    """The float32 golden's pipeline call in `dtype` from `latents`: the frames, the final latents and the smallest top-k gap."""
    last = []

    def step_end(p, i, t, kwargs):
        last[-1:] = [kwargs["latents"].clone()]
        if on_step_end:
            on_step_end(kwargs["latents"])
        return {}

    gaps = TopkGaps(pipe.transformer)
    with torch.no_grad():
        image = pipe(**{k: golden[k].to(dtype) for k in EMBEDS}, height=meta["height"], width=meta["width"],
                     num_inference_steps=meta["num_inference_steps"], guidance_scale=meta["guidance_scale"], latents=latents.to(dtype),
                     callback_on_step_end=step_end, output_type="np", return_dict=False)[0]
    return torch.from_numpy(image), last[0], gaps.close()


def main(out_dir):
    out = Path(out_dir) / "hidream-tiny"
    out.mkdir(parents=True, exist_ok=True)
    meta = json.loads((HIDREAM / "meta.json").read_text())
    golden = load_file(HIDREAM / "pipeline.safetensors")
    info = dict(diffusers=diffusers.__version__, torch=torch.__version__,
                errors="relative L2 of diffusers' 16-bit output against the float32 golden; psnr in dB of the float images in [0, 1] (data range 1) against the float32 images",
                moe_min_topk_score_gap="the smallest gap between the 2nd and 3rd routing score (in the dtype the gate computes) of any token in the call or run",
                seeds=list(SEEDS))
    for tag, dtype in DTYPES.items():
        errors = info[tag] = {}
        for name in ("transformer_forward", "transformer_forward_nonsquare"):
            ref = load_file(HIDREAM / f"{name}.safetensors")
            rec, gap = record_forward(ref, dtype)
            save_file(rec, str(out / f"{name}_{tag}.safetensors"))
            errors[name] = {"sample": relative_l2(rec["sample"], ref["sample"]), "moe_min_topk_score_gap": gap}

        pipe = load_pipeline(dtype, meta)
        steps = []
        image, latents, gap = run(pipe, golden, meta, dtype, golden["latents_in"], lambda x: steps.append(x.clone()))
        save_file(f32({"step_latents": torch.stack(steps), "latents_out": latents, "image_out": image}), str(out / f"pipeline_{tag}.safetensors"))
        errors["pipeline"] = {"latents_dtype": str(latents.dtype), "latents_out": relative_l2(latents, golden["latents_out"]),
                              "image_out": relative_l2(image, golden["image_out"]), "image_out_psnr": psnr(image, golden["image_out"]),
                              "moe_min_topk_score_gap": gap}

    calls = {}
    for seed in FORWARD_SEEDS:
        inputs = forward_inputs(seed)
        for tag, dtype in {"f32": torch.float32, **DTYPES}.items():
            calls[f"{seed}.sample_{tag}"] = record_forward(inputs, dtype)[0]["sample"]
    save_file(f32(calls), str(out / "forward_seeds_16bit.safetensors"))
    for tag in DTYPES:
        info[tag]["forward_seeds"] = {"sample": [relative_l2(calls[f"{s}.sample_{tag}"], calls[f"{s}.sample_f32"]) for s in FORWARD_SEEDS]}
    info["forward_seeds"] = list(FORWARD_SEEDS)

    seeds = {"latents_in": torch.stack([torch.randn(golden["latents_in"].shape, generator=torch.Generator().manual_seed(s)) for s in SEEDS])}
    images = {}
    for tag, dtype in {"f32": torch.float32, **DTYPES}.items():
        pipe = load_pipeline(dtype, meta)
        runs = [run(pipe, golden, meta, dtype, x) for x in seeds["latents_in"]]
        seeds[f"latents_out_{tag}"] = torch.stack([r[1] for r in runs])
        images[tag] = torch.stack([r[0] for r in runs])
        # A 16-bit pipeline's image is its VAE's 16-bit output widened: stored in the dtype, exactly.
        seeds[f"image_out_{tag}"] = images[tag].to(dtype)
        assert torch.equal(seeds[f"image_out_{tag}"].float(), images[tag])
        if tag != "f32":
            info[tag]["seeds"] = {"latents_out": [relative_l2(a, b) for a, b in zip(seeds[f"latents_out_{tag}"], seeds["latents_out_f32"])],
                                  "image_out_pooled_psnr": psnr(images[tag], images["f32"]), "moe_min_topk_score_gap": min(r[2] for r in runs)}
    save_file({k: v.contiguous() if k.startswith("image_out") else v.detach().float().contiguous() for k, v in seeds.items()}, str(out / "seeds_16bit.safetensors"))
    (out / "meta_16bit.json").write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps(info, indent=2))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: make_16bit_references.py OUT_DIR")
    main(sys.argv[1])
