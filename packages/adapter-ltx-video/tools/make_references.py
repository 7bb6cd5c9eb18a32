"""Makes the reference data of @ditcache/adapter-ltx-video (test/goldens/): small random-weight
LTX-Video pipeline folders, and what diffusers and cache-dit compute on them.

Not run by CI and never by the tests: the tests read only what this wrote. Run it by hand in a
throwaway venv with torch, diffusers and cache-dit (from the repository root):

    /work/shared/tools/reference-venv.sh /tmp/ltxvenv DIFFUSERS_GIT_DIR CACHE_DIT_GIT_DIR
    /tmp/ltxvenv/bin/python packages/adapter-ltx-video/tools/make_references.py packages/adapter-ltx-video/test/goldens

Everything is seeded, so a rerun on the same torch, diffusers and cache-dit writes the same
tensors. test/goldens/README.md describes every file.
"""

import json
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

import cache_dit
import diffusers
from cache_dit import BlockAdapter, DBCacheConfig, ForwardPattern, ParamsModifier, TaylorSeerCalibratorConfig
from diffusers import AutoencoderKLLTXVideo, FlowMatchEulerDiscreteScheduler, LTXPipeline, LTXVideoTransformer3DModel

torch.set_num_threads(1)

# Two model folders. ltx-tiny: an LTX-Video 0.9.0-like VAE (no timestep conditioning, plain
# depth-to-space upsamplers), a width of 16 (rotary padding of 16 % 6 = 4 channels), four blocks.
# ltx-095-tiny: a 0.9.5-like VAE (timestep-conditioned decoder, residual upsamplers with an
# upscale factor), a width of 24 (no rotary padding).
SETS = {
    "ltx-tiny": dict(
        transformer=dict(in_channels=8, out_channels=8, patch_size=1, patch_size_t=1, num_attention_heads=2, attention_head_dim=8,
                         cross_attention_dim=16, num_layers=4, caption_channels=12),
        vae=dict(latent_channels=8, block_out_channels=(8, 8, 8), down_block_types=("LTXVideoDownBlock3D",) * 3,
                 spatio_temporal_scaling=(True, True, False), layers_per_block=(1, 1, 1, 1), downsample_type=("conv",) * 3,
                 decoder_block_out_channels=(8, 8, 16), decoder_layers_per_block=(1, 1, 1, 1),
                 decoder_spatio_temporal_scaling=(True, True, False), decoder_inject_noise=(False,) * 4,
                 upsample_residual=(False,) * 3, upsample_factor=(1,) * 3, timestep_conditioning=False, patch_size=2, patch_size_t=1,
                 scaling_factor=1.0),
        # Transformer call: batch 2, (frames, height, width) of the latent grid, text tokens and valid tokens per row.
        forward=dict(grid=(3, 2, 3), text_tokens=6, valid=[4, 6], frame_rate=25),
        # Pipeline: 9 frames of 32 x 32 -> 3 x 4 x 4 latents (and 5 frames -> 2 x 4 x 4); text tokens padded, as T5's are.
        pipeline=dict(height=32, width=32, num_frames=9, other_num_frames=5, frame_rate=25, steps=12, guidance_scale=3.0, text_tokens=7, valid=[5], negative_valid=[2]),
    ),
    "ltx-095-tiny": dict(
        transformer=dict(in_channels=8, out_channels=8, patch_size=1, patch_size_t=1, num_attention_heads=3, attention_head_dim=8,
                         cross_attention_dim=24, num_layers=3, caption_channels=10),
        vae=dict(latent_channels=8, block_out_channels=(8, 8), down_block_types=("LTXVideoDownBlock3D",) * 2,
                 spatio_temporal_scaling=(True, True), layers_per_block=(1, 1, 1), downsample_type=("conv",) * 2,
                 decoder_block_out_channels=(8, 16), decoder_layers_per_block=(1, 1, 1),
                 decoder_spatio_temporal_scaling=(True, True), decoder_inject_noise=(False,) * 3,
                 upsample_residual=(True, True), upsample_factor=(2, 2), timestep_conditioning=True, patch_size=2, patch_size_t=1,
                 scaling_factor=1.0),
        forward=dict(grid=(2, 3, 2), text_tokens=5, valid=[5, 2], frame_rate=24),
        # 5 frames of 32 x 32 -> 2 x 4 x 4 latents; and 1 frame.
        pipeline=dict(height=32, width=32, num_frames=5, other_num_frames=1, frame_rate=24, steps=10, guidance_scale=4.0, text_tokens=5, valid=[3], negative_valid=[5]),
    ),
}

# LTX-Video's scheduler_config.json.
SCHEDULER = dict(base_image_seq_len=1024, base_shift=0.95, max_image_seq_len=4096, max_shift=2.05, num_train_timesteps=1000,
                 shift=1.0, shift_terminal=0.1, use_dynamic_shifting=True, time_shift_type="exponential")

# Every parameter and buffer gets Gaussian noise of this fraction of its own spread (or of 1 for a
# constant tensor such as a norm's ones), so that no layer is an identity or a zero.
PERTURBATION = 0.1
# The timestep embedding's output layer is scaled down so that the block residuals drift from
# step to step about as slowly as in a trained model.
TIMESTEP_EMBEDDING_SCALE = 0.25
# How far every recorded residual diff must stay from the threshold (relative).
MIN_MARGIN = 0.02


def perturb(module, generator):
    with torch.no_grad():
        for _, p in list(module.named_parameters()) + list(module.named_buffers()):
            spread = p.std().item() if p.numel() > 1 else 0.0
            p.add_(torch.randn(p.shape, generator=generator) * PERTURBATION * (spread if spread > 0 else 1.0))


def build_pipeline(spec, seed):
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed + 1)
    transformer = LTXVideoTransformer3DModel(**spec["transformer"])
    perturb(transformer, generator)
    with torch.no_grad():
        out = transformer.time_embed.emb.timestep_embedder.linear_2
        out.weight.mul_(TIMESTEP_EMBEDDING_SCALE)
        out.bias.mul_(TIMESTEP_EMBEDDING_SCALE)
    vae = AutoencoderKLLTXVideo(**spec["vae"])
    perturb(vae, generator)
    with torch.no_grad():
        # Per-channel latent statistics away from 0 and 1, so that denormalising shows.
        vae.latents_mean.copy_(torch.randn(vae.latents_mean.shape, generator=generator) * 0.3)
        vae.latents_std.copy_(0.5 + torch.rand(vae.latents_std.shape, generator=generator))
    scheduler = FlowMatchEulerDiscreteScheduler(**SCHEDULER)
    return LTXPipeline(transformer=transformer, vae=vae, scheduler=scheduler, text_encoder=None, tokenizer=None)


def contiguous(tensors):
    return {k: (v.detach().to(torch.float32) if v.is_floating_point() or v.dtype == torch.bool else v.detach()).clone().contiguous() for k, v in tensors.items()}


def mask(valid, tokens):
    return torch.stack([torch.arange(tokens) < v for v in valid]).to(torch.int64)


def record_forward(pipe, spec, generator):
    """One transformer call with every block's outputs and the stages around the blocks."""
    t = pipe.transformer
    c = t.config
    f = spec["forward"]
    frames, height, width = f["grid"]
    batch = len(f["valid"])
    scale = (pipe.vae_temporal_compression_ratio / f["frame_rate"], pipe.vae_spatial_compression_ratio, pipe.vae_spatial_compression_ratio)
    inputs = {
        "hidden_states": torch.randn(batch, frames * height * width, c.in_channels, generator=generator),
        "encoder_hidden_states": torch.randn(batch, f["text_tokens"], c.caption_channels, generator=generator),
        "timestep": torch.tensor([999.0, 412.5]),
        "encoder_attention_mask": mask(f["valid"], f["text_tokens"]),
        "num_frames": frames, "height": height, "width": width,
        "rope_interpolation_scale": torch.tensor(scale, dtype=torch.float32),
    }
    recorded = {}

    def keep(name):
        def hook(_module, _args, output):
            outputs = output if isinstance(output, tuple) else (output,)
            for i, o in enumerate(outputs):
                recorded[f"{name}.out{i}"] = o
        return hook

    handles = [getattr(t, name).register_forward_hook(keep(name)) for name in ["rope", "time_embed", "caption_projection", "proj_in", "norm_out", "proj_out"]]
    handles += [block.register_forward_hook(keep(f"transformer_blocks.{i}")) for i, block in enumerate(t.transformer_blocks)]
    with torch.no_grad():
        sample = t(**inputs, return_dict=False)[0]
    for h in handles:
        h.remove()
    scalars = {k: torch.tensor([float(inputs[k])], dtype=torch.float32) for k in ["num_frames", "height", "width"]}
    return contiguous({**inputs, **scalars, "encoder_attention_mask": inputs["encoder_attention_mask"].to(torch.float32), **recorded, "sample": sample})


def packed_noise(pipe, spec, num_frames, generator):
    c = pipe.transformer.config
    p = spec["pipeline"]
    frames = (num_frames - 1) // pipe.vae_temporal_compression_ratio + 1
    s = pipe.vae_spatial_compression_ratio
    latents = torch.randn(1, pipe.vae.config.latent_channels, frames, p["height"] // s, p["width"] // s, generator=generator)
    return pipe._pack_latents(latents, c.patch_size, c.patch_size_t)


def record_forward_16bit(folder, forward):
    """The same transformer call with the model loaded in bfloat16 and float16 (torch_dtype): its inputs cast to that dtype."""
    out = {}
    inputs = {k: forward[k] for k in ["hidden_states", "encoder_hidden_states", "timestep", "encoder_attention_mask", "rope_interpolation_scale"]}
    grid = {k: int(forward[k].item()) for k in ["num_frames", "height", "width"]}
    for dtype, name in [(torch.bfloat16, "bf16"), (torch.float16, "fp16")]:
        t = LTXVideoTransformer3DModel.from_pretrained(folder / "transformer", torch_dtype=dtype)
        with torch.no_grad():
            out[f"sample_{name}"] = t(**{**inputs, "hidden_states": inputs["hidden_states"].to(dtype),
                                         "encoder_hidden_states": inputs["encoder_hidden_states"].to(dtype)}, **grid, return_dict=False)[0]
    return contiguous(out)


def pipeline_inputs(pipe, spec, generator):
    c = pipe.transformer.config
    p = spec["pipeline"]
    shape = (1, p["text_tokens"], c.caption_channels)
    return {
        "latents_in": packed_noise(pipe, spec, p["num_frames"], generator),
        "prompt_embeds": torch.randn(shape, generator=generator),
        "prompt_attention_mask": mask(p["valid"], p["text_tokens"]),
        "negative_prompt_embeds": torch.randn(shape, generator=generator),
        "negative_prompt_attention_mask": mask(p["negative_valid"], p["text_tokens"]),
    }


def call(pipe, spec, inputs, output_type, **overrides):
    p = {**spec["pipeline"], **overrides}
    extra = {k: p[k] for k in ["decode_timestep", "decode_noise_scale", "generator"] if k in p}
    with torch.no_grad():
        return pipe(prompt_embeds=inputs["prompt_embeds"], prompt_attention_mask=inputs["prompt_attention_mask"],
                    negative_prompt_embeds=inputs["negative_prompt_embeds"], negative_prompt_attention_mask=inputs["negative_prompt_attention_mask"],
                    height=p["height"], width=p["width"], num_frames=p["num_frames"], frame_rate=p["frame_rate"],
                    num_inference_steps=p["steps"], guidance_scale=p["guidance_scale"], latents=inputs["latents_in"], output_type=output_type,
                    **extra).frames


def record_pipeline(pipe, spec, inputs):
    latents = call(pipe, spec, inputs, "latent")
    timesteps, sigmas = pipe.scheduler.timesteps.clone(), pipe.scheduler.sigmas.clone()
    video = torch.from_numpy(np.asarray(call(pipe, spec, inputs, "np")))
    out = {**inputs, "latents_out": latents, "video_out": video, "timesteps": timesteps, "sigmas": sigmas,
           # guidance_scale 1 turns classifier-free guidance off: one batch-1 call per step on the prompt.
           "latents_out_guidance_1": call(pipe, spec, inputs, "latent", guidance_scale=1.0),
           # Another frame rate changes the rotary positions along the frames, and so the result.
           "latents_out_fps_12": call(pipe, spec, inputs, "latent", frame_rate=12)}
    # Another frame count: its own packed noise (same seed stream), frames, latents and video.
    frames = spec["pipeline"]["other_num_frames"]
    other = {**inputs, "latents_in": packed_noise(pipe, spec, frames, torch.Generator().manual_seed(frames))}
    out[f"frames_{frames}.latents_in"] = other["latents_in"]
    out[f"frames_{frames}.latents_out"] = call(pipe, spec, other, "latent", num_frames=frames)
    out[f"frames_{frames}.video_out"] = torch.from_numpy(np.asarray(call(pipe, spec, other, "np", num_frames=frames)))
    if pipe.vae.config.timestep_conditioning:
        # Decoding at a timestep with noise: torch.Generator().manual_seed(7) draws the noise (latents are given, so it draws nothing else).
        out["video_out_decode_t0.05"] = torch.from_numpy(np.asarray(call(pipe, spec, inputs, "np", decode_timestep=0.05, decode_noise_scale=0.025,
                                                                         generator=torch.Generator().manual_seed(7))))
        # No latents given: the generator of seed 11 draws the initial latents, then the decode noise.
        out["video_out_seed_11_decode_t0.05"] = torch.from_numpy(np.asarray(call(pipe, spec, {**inputs, "latents_in": None}, "np", decode_timestep=0.05,
                                                                                 decode_noise_scale=0.025, generator=torch.Generator().manual_seed(11))))
    return contiguous(out)


def cached_run(pipe, spec, inputs, config, order=None, modifiers=None, guidance_scale=None):
    """The pipeline call under cache-dit; returns (latents, stats of its one context)."""
    adapter = BlockAdapter(pipe=pipe, transformer=pipe.transformer, blocks=pipe.transformer.transformer_blocks,
                           forward_pattern=ForwardPattern.Pattern_2, check_forward_pattern=True,
                           params_modifiers=[ParamsModifier(cache_config=DBCacheConfig().reset(**m)) for m in modifiers] if modifiers else None)
    calibrator = TaylorSeerCalibratorConfig(taylorseer_order=order) if order else None
    cache_dit.enable_cache(adapter, cache_config=DBCacheConfig(**config), calibrator_config=calibrator)
    try:
        overrides = {} if guidance_scale is None else {"guidance_scale": guidance_scale}
        latents = call(pipe, spec, inputs, "latent", steps=spec["cache_steps"], **overrides)
        stats = cache_dit.summary(pipe, logging=False)
    finally:
        cache_dit.disable_cache(pipe)
    contexts = {s.cache_options["name"]: s for s in stats}
    assert len(contexts) == 1, f"LTX caches one chain, got {list(contexts)}"
    s = next(iter(contexts.values()))
    assert not s.cfg_cached_steps and not s.cfg_residual_diffs, "CFG is batched in LTX: no separate CFG branch"
    return latents, {"cached_steps": sorted(s.cached_steps),
                     "residual_diffs": {str(k): float(v) for k, v in sorted(s.residual_diffs.items())}}


def margin_of(stats, threshold):
    diffs = list(stats["residual_diffs"].values())
    return min(abs(d - threshold) / threshold for d in diffs) if diffs else float("inf")


def mixes(stats):
    compared = {int(k) for k in stats["residual_diffs"]}
    cached = set(stats["cached_steps"])
    return bool(cached) and bool(compared - cached)


CAPS = ("max_cached_steps", "max_continuous_cached_steps")

# (DBCacheConfig keys, TaylorSeer order, params_modifiers[, guidance_scale]); the threshold is
# searched for, in the modifier when there is one (it then overrides the base config's). The last
# runs without CFG (guidance 1: one call per step on the prompt alone).
CACHE_CONFIGS = [
    (dict(Fn_compute_blocks=1, Bn_compute_blocks=0, max_warmup_steps=2), None, None),
    (dict(Fn_compute_blocks=2, Bn_compute_blocks=1, max_warmup_steps=3), None, None),
    (dict(Fn_compute_blocks=1, Bn_compute_blocks=1, max_warmup_steps=2, max_continuous_cached_steps=1), None, None),
    (dict(Fn_compute_blocks=1, Bn_compute_blocks=0, max_warmup_steps=1, max_cached_steps=3), None, None),
    (dict(Fn_compute_blocks=1, Bn_compute_blocks=0, max_warmup_steps=2), 1, None),
    (dict(Fn_compute_blocks=1, Bn_compute_blocks=1, max_warmup_steps=3), 2, None),
    (dict(Fn_compute_blocks=1, Bn_compute_blocks=0, max_warmup_steps=2), None, [dict(Fn_compute_blocks=2, Bn_compute_blocks=0, max_warmup_steps=3)]),
    (dict(Fn_compute_blocks=2, Bn_compute_blocks=0, max_warmup_steps=2), 1, [dict(Fn_compute_blocks=1, Bn_compute_blocks=1, max_warmup_steps=2)]),
    (dict(Fn_compute_blocks=1, Bn_compute_blocks=0, max_warmup_steps=2), 1, None, 1.0),
]


def named(config, order, modifiers, guidance_scale=None):
    name = f"F{config['Fn_compute_blocks']}B{config['Bn_compute_blocks']}_W{config['max_warmup_steps']}"
    if "max_continuous_cached_steps" in config:
        name += f"_MC{config['max_continuous_cached_steps']}"
    if "max_cached_steps" in config:
        name += f"_M{config['max_cached_steps']}"
    if order:
        name += f"_TS{order}"
    if modifiers:
        m = modifiers[0]
        name += f"_PM_F{m['Fn_compute_blocks']}B{m['Bn_compute_blocks']}_W{m['max_warmup_steps']}"
    if guidance_scale is not None:
        name += f"_G{guidance_scale:g}"
    return name


def traced(pipe, spec, inputs, base, order, modifiers, guidance_scale=None):
    """A threshold that mixes cached and computed steps with a safe margin (and lets caps bind), and the run under it."""
    def run(threshold):
        if modifiers:
            return cached_run(pipe, spec, inputs, base, order, [{**modifiers[0], "residual_diff_threshold": threshold}], guidance_scale)
        return cached_run(pipe, spec, inputs, {**base, "residual_diff_threshold": threshold}, order, None, guidance_scale)

    _, probe = run(1e-9)
    diffs = sorted(probe["residual_diffs"].values())
    candidates = sorted({round((a + b) / 2, 4) for a, b in zip(diffs, diffs[1:])}, key=lambda r: abs(r - diffs[len(diffs) // 2]))
    for threshold in candidates:
        latents, stats = run(threshold)
        margin = margin_of(stats, threshold)
        if margin < MIN_MARGIN or not mixes(stats):
            continue
        if any(cap in base for cap in CAPS):
            _, uncapped = cached_run(pipe, spec, inputs, {k: v for k, v in base.items() if k not in CAPS} | {"residual_diff_threshold": threshold}, order, None,
                                     guidance_scale)
            if uncapped["cached_steps"] == stats["cached_steps"]:
                continue
        config = base if modifiers else {**base, "residual_diff_threshold": threshold}
        mods = [{**modifiers[0], "residual_diff_threshold": threshold}] if modifiers else None
        return named(base, order, modifiers, guidance_scale), latents, {"config": config, "taylorseer_order": order, "params_modifiers": mods,
                                                                        "guidance_scale": guidance_scale, "margin": margin, "stats": [stats]}
    raise RuntimeError(f"no threshold for {base} / {modifiers} mixes cached and computed steps with a margin of {MIN_MARGIN}")


def record_traces(pipe, spec, inputs):
    traces, tensors = {}, {}
    for base, order, modifiers, *guidance in CACHE_CONFIGS:
        name, latents, entry = traced(pipe, spec, inputs, base, order, modifiers, *guidance)
        traces[name] = entry
        tensors[f"{name}.latents_out"] = latents
        print(" ", name, entry["stats"][0]["cached_steps"], round(entry["margin"], 4), flush=True)
    return traces, tensors


def record_decoder(pipe, generator):
    """The VAE decoder alone on random latents (and, when conditioned, a timestep)."""
    vae = pipe.vae
    z = torch.randn(1, vae.config.latent_channels, 2, 3, 2, generator=generator)
    out = {"z": z}
    with torch.no_grad():
        temb = torch.tensor([0.05]) if vae.config.timestep_conditioning else None
        out["sample"] = vae.decode(z, temb, return_dict=False)[0]
        if temb is not None:
            out["temb"] = temb
    return contiguous(out)


def strip_encoder(path):
    """Keeps the VAE's decoder and latent statistics only: nothing here encodes, and the goldens stay small."""
    weights = load_file(path)
    save_file({k: v for k, v in weights.items() if not k.startswith("encoder.")}, path)


# Rotary tables of wider models than the goldens' (more frequencies: torch's linspace runs its
# vectorised path), each (width, latent grid, rope_interpolation_scale).
# From 34 frequencies on (width 204), torch's pow runs SLEEF on its vectorised chunks; 2048 is
# LTX-Video's width.
ROPE_CASES = [(48, (5, 4, 3), (8 / 24, 32, 32)), (96, (7, 2, 2), (8 / 30, 32, 32)), (192, (3, 3, 3), (8 / 25, 32, 32)), (200, (2, 3, 4), None),
              (256, (3, 2, 2), (8 / 25, 32, 32)), (2048, (2, 1, 2), (8 / 25, 32, 32))]


def record_rope(out_dir):
    from diffusers.models.transformers.transformer_ltx import LTXVideoRotaryPosEmbed
    tables = {}
    for dim, grid, scale in ROPE_CASES:
        rope = LTXVideoRotaryPosEmbed(dim)
        cos, sin = rope(torch.zeros(1, grid[0] * grid[1] * grid[2], dim), *grid, scale)
        tables[f"dim{dim}.cos"], tables[f"dim{dim}.sin"] = cos, sin
    save_file(contiguous(tables), out_dir / "rope_tables.safetensors")
    return [dict(dim=dim, grid=grid, scale=scale) for dim, grid, scale in ROPE_CASES]


def main(out_dir):
    out_dir = Path(out_dir)
    (out_dir / "rope_tables.json").write_text(json.dumps(record_rope(out_dir), indent=1) + "\n")
    for index, (set_name, spec) in enumerate(SETS.items()):
        print(set_name, flush=True)
        folder = out_dir / set_name
        pipe = build_pipeline(spec, seed=100 * index)
        pipe.save_pretrained(folder)
        strip_encoder(folder / "vae" / "diffusion_pytorch_model.safetensors")
        generator = torch.Generator().manual_seed(100 * index + 12)
        forward = record_forward(pipe, spec, generator)
        save_file(forward, folder / "transformer_forward.safetensors")
        save_file(record_forward_16bit(folder, forward), folder / "transformer_forward_16bit.safetensors")
        inputs = pipeline_inputs(pipe, spec, generator)
        save_file(record_pipeline(pipe, spec, inputs), folder / "pipeline.safetensors")
        save_file(record_decoder(pipe, generator), folder / "vae_decode.safetensors")
        meta = {
            "forward": spec["forward"], "pipeline": spec["pipeline"],
            "produced_by": {"torch": torch.__version__, "diffusers": diffusers.__version__, "cache_dit": cache_dit.__version__,
                            "script": "packages/adapter-ltx-video/tools/make_references.py"},
            "perturbation": PERTURBATION, "timestep_embedding_scale": TIMESTEP_EMBEDDING_SCALE,
        }
        if set_name == "ltx-tiny":
            spec["cache_steps"] = 16
            traces, tensors = record_traces(pipe, spec, inputs)
            save_file(contiguous(tensors), folder / "cache_traces.safetensors")
            meta["cache_steps"] = spec["cache_steps"]
            meta["cache_traces"] = traces
            meta["min_margin"] = min(t["margin"] for t in traces.values())
            print("min margin", meta["min_margin"])
        (folder / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "test/goldens")
