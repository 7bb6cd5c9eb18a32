"""Makes the reference data of examples/adapter-sd3 (test/goldens/): small random-weight SD3 and
SD3.5 pipeline folders, and what diffusers and cache-dit compute on them.

Not run by CI and never by the tests: the tests read only what this wrote. Run it by hand in a
throwaway venv with torch, diffusers and cache-dit (from the repository root):

    /work/shared/tools/reference-venv.sh /tmp/sd3venv DIFFUSERS_GIT_DIR CACHE_DIT_GIT_DIR
    /tmp/sd3venv/bin/python examples/adapter-sd3/tools/make_references.py examples/adapter-sd3/test/goldens

Everything is seeded, so a rerun on the same torch, diffusers and cache-dit writes the same
tensors. test/goldens/README.md describes every file.
"""

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

import diffusers
import cache_dit
from cache_dit import DBCacheConfig, TaylorSeerCalibratorConfig
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline

torch.set_num_threads(1)

# Two model folders: an SD3-medium-like one (joint blocks only, deep enough for cache-dit's
# default Fn_compute_blocks of 8 to leave middle blocks) and an SD3.5-medium-like one (dual
# attention in the first blocks, RMS-normed queries and keys).
SETS = {
    "sd3-tiny": dict(
        transformer=dict(sample_size=16, patch_size=2, in_channels=16, num_layers=10, attention_head_dim=4, num_attention_heads=2,
                         joint_attention_dim=32, caption_projection_dim=8, pooled_projection_dim=24, out_channels=16,
                         pos_embed_max_size=12, dual_attention_layers=(), qk_norm=None),
        text_tokens=6,
        # Latents of the transformer_forward call (B, 16, h, w): 6 x 4 patches, cropped at (3, 4) from the 12 x 12 grid.
        forward_latents=(2, 16, 12, 8),
        # The pipeline makes a 16 x 24 image: 8 x 12 latents, 4 x 6 patches, cropped at (4, 3).
        height=16, width=24, num_inference_steps=28, guidance_scale=5.0,
    ),
    "sd35-tiny": dict(
        transformer=dict(sample_size=16, patch_size=2, in_channels=16, num_layers=4, attention_head_dim=8, num_attention_heads=2,
                         joint_attention_dim=32, caption_projection_dim=16, pooled_projection_dim=24, out_channels=16,
                         pos_embed_max_size=10, dual_attention_layers=(0, 1), qk_norm="rms_norm"),
        text_tokens=5,
        # 4 x 7 patches, cropped at (3, 1) from the 10 x 10 grid.
        forward_latents=(2, 16, 8, 14),
        # 24 x 24 image: 12 x 12 latents, 6 x 6 patches, cropped at (2, 2).
        height=24, width=24, num_inference_steps=16, guidance_scale=4.5,
    ),
}

VAE = dict(in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
           block_out_channels=[4, 4], layers_per_block=1, latent_channels=16, norm_num_groups=2, sample_size=32,
           scaling_factor=1.5305, shift_factor=0.0609, use_quant_conv=False, use_post_quant_conv=False)
SCHEDULER = dict(shift=3.0)

# Every parameter and buffer gets Gaussian noise of this fraction of its own spread (or of 1 for a
# constant tensor such as a norm's ones), so that no layer is an identity or a zero.
PERTURBATION = 0.1
# The timestep embedding's output layer is scaled down so that the block residuals drift from
# step to step about as slowly as in a trained model (a random one changes them by 20-30% per
# step, and nothing could ever be cached at cache-dit's default threshold of 0.08).
TIMESTEP_EMBEDDING_SCALE = 0.25

# How far every recorded residual diff must stay from the threshold (relative), so that float
# error cannot flip a decision.
MIN_MARGIN = 0.02


def perturb(module, generator):
    with torch.no_grad():
        for _, p in list(module.named_parameters()) + list(module.named_buffers()):
            spread = p.std().item() if p.numel() > 1 else 0.0
            p.add_(torch.randn(p.shape, generator=generator) * PERTURBATION * (spread if spread > 0 else 1.0))


def build_pipeline(spec, seed):
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed + 1)
    transformer = SD3Transformer2DModel(**spec["transformer"])
    perturb(transformer, generator)
    with torch.no_grad():
        out = transformer.time_text_embed.timestep_embedder.linear_2
        out.weight.mul_(TIMESTEP_EMBEDDING_SCALE)
        out.bias.mul_(TIMESTEP_EMBEDDING_SCALE)
    vae = AutoencoderKL(**VAE)
    perturb(vae, generator)
    scheduler = FlowMatchEulerDiscreteScheduler(**SCHEDULER)
    return StableDiffusion3Pipeline(transformer=transformer, scheduler=scheduler, vae=vae, text_encoder=None, tokenizer=None,
                                    text_encoder_2=None, tokenizer_2=None, text_encoder_3=None, tokenizer_3=None)


def contiguous(tensors):
    return {k: v.detach().to(torch.float32).contiguous() for k, v in tensors.items()}


def record_forward(pipe, spec, generator):
    """One transformer call with every block's outputs and the stages around the blocks."""
    t = pipe.transformer
    c = t.config
    batch = spec["forward_latents"][0]
    inputs = {
        "hidden_states": torch.randn(spec["forward_latents"], generator=generator),
        "encoder_hidden_states": torch.randn(batch, spec["text_tokens"], c.joint_attention_dim, generator=generator),
        "pooled_projections": torch.randn(batch, c.pooled_projection_dim, generator=generator),
        "timestep": torch.tensor([999.0, 412.5]),
    }
    recorded = {}

    def keep(name):
        def hook(_module, _args, output):
            outputs = output if isinstance(output, tuple) else (output,)
            for i, o in enumerate(outputs):
                # A context_pre_only block returns no encoder stream: out0 is absent for it.
                if o is not None:
                    recorded[f"{name}.out{i}"] = o
        return hook

    handles = [getattr(t, name).register_forward_hook(keep(name)) for name in ["pos_embed", "time_text_embed", "context_embedder", "norm_out", "proj_out"]]
    handles += [block.register_forward_hook(keep(f"transformer_blocks.{i}")) for i, block in enumerate(t.transformer_blocks)]
    handles += [block.attn2.register_forward_hook(keep(f"transformer_blocks.{i}.attn2")) for i, block in enumerate(t.transformer_blocks) if block.attn2 is not None]
    with torch.no_grad():
        sample = t(**inputs, return_dict=False)[0]
    for h in handles:
        h.remove()
    return contiguous({**inputs, **recorded, "sample": sample})


def pipeline_inputs(pipe, spec, generator):
    c = pipe.transformer.config
    f = pipe.vae_scale_factor
    shape = (1, spec["text_tokens"], c.joint_attention_dim)
    return {
        "latents_in": torch.randn(1, c.in_channels, spec["height"] // f, spec["width"] // f, generator=generator),
        "prompt_embeds": torch.randn(shape, generator=generator),
        "pooled_prompt_embeds": torch.randn(1, c.pooled_projection_dim, generator=generator),
        "negative_prompt_embeds": torch.randn(shape, generator=generator),
        "negative_pooled_prompt_embeds": torch.randn(1, c.pooled_projection_dim, generator=generator),
    }


def call(pipe, spec, inputs, output_type, guidance_scale=None):
    guidance_scale = spec["guidance_scale"] if guidance_scale is None else guidance_scale
    with torch.no_grad():
        return pipe(prompt_embeds=inputs["prompt_embeds"], pooled_prompt_embeds=inputs["pooled_prompt_embeds"],
                    negative_prompt_embeds=inputs["negative_prompt_embeds"], negative_pooled_prompt_embeds=inputs["negative_pooled_prompt_embeds"],
                    height=spec["height"], width=spec["width"], num_inference_steps=spec["num_inference_steps"],
                    guidance_scale=guidance_scale, latents=inputs["latents_in"], output_type=output_type).images


def record_pipeline(pipe, spec, inputs):
    latents = call(pipe, spec, inputs, "latent")
    image = torch.from_numpy(call(pipe, spec, inputs, "np"))
    # guidance_scale 1 turns classifier-free guidance off: one batch-1 call per step on the prompt.
    without_cfg = call(pipe, spec, inputs, "latent", guidance_scale=1.0)
    return contiguous({**inputs, "latents_out": latents, "image_out": image, "latents_out_guidance_1": without_cfg,
                       "timesteps": pipe.scheduler.timesteps, "sigmas": pipe.scheduler.sigmas})


def cached_run(pipe, spec, inputs, config, taylorseer_order=None, encoder_calibrator=False):
    """The pipeline call under cache-dit; returns (latents, stats of the one cached chain)."""
    calibrator = TaylorSeerCalibratorConfig(taylorseer_order=taylorseer_order, enable_encoder_calibrator=encoder_calibrator) if taylorseer_order else None
    cache_dit.enable_cache(pipe, cache_config=DBCacheConfig(**config), calibrator_config=calibrator)
    try:
        latents = call(pipe, spec, inputs, "latent")
        stats = cache_dit.summary(pipe, logging=False)
    finally:
        cache_dit.disable_cache(pipe)
    # cache-dit's summary of a pipeline lists the one cached chain once per object that holds it.
    contexts = {s.cache_options["name"]: s for s in stats}
    assert len(contexts) == 1, "SD3 caches one chain, transformer.transformer_blocks"
    s = next(iter(contexts.values()))
    assert not s.cfg_cached_steps and not s.cfg_residual_diffs, "CFG is batched in SD3: no separate CFG branch"
    return latents, {"cached_steps": sorted(s.cached_steps), "residual_diffs": {str(k): float(v) for k, v in sorted(s.residual_diffs.items())}}


def margin_of(stats, threshold):
    diffs = list(stats["residual_diffs"].values())
    return min(abs(d - threshold) / threshold for d in diffs) if diffs else float("inf")


def mixes(stats):
    """Both cached and computed steps among those compared with the threshold."""
    compared = {int(k) for k in stats["residual_diffs"]}
    cached = set(stats["cached_steps"])
    return bool(cached) and bool(compared - cached)


CAPS = ("max_cached_steps", "max_continuous_cached_steps")


def caps_bind(pipe, spec, inputs, config, stats, taylorseer_order, encoder_calibrator):
    """A config with a cap on cached steps must cache other steps than the same config without it."""
    if not any(cap in config for cap in CAPS):
        return True
    _, uncapped = cached_run(pipe, spec, inputs, {k: v for k, v in config.items() if k not in CAPS}, taylorseer_order, encoder_calibrator)
    return uncapped["cached_steps"] != stats["cached_steps"]


def named(config, taylorseer_order, suffix=""):
    name = f"F{config['Fn_compute_blocks']}B{config['Bn_compute_blocks']}_W{config['max_warmup_steps']}"
    if "max_continuous_cached_steps" in config:
        name += f"_MC{config['max_continuous_cached_steps']}"
    if "max_cached_steps" in config:
        name += f"_M{config['max_cached_steps']}"
    name += f"_R{config['residual_diff_threshold']:.4g}"
    if taylorseer_order:
        name += f"_TS{taylorseer_order}"
    return name + suffix


def traced(pipe, spec, inputs, base, taylorseer_order=None, encoder_calibrator=False, suffix=""):
    """
    Picks a threshold for `base` that mixes cached and computed steps with a safe margin (and
    under which its caps change the decisions), then records the run.
    """
    _, probe = cached_run(pipe, spec, inputs, {**base, "residual_diff_threshold": 1e-9}, taylorseer_order, encoder_calibrator)
    diffs = sorted(probe["residual_diffs"].values())
    # Midpoints between the diffs of a run that caches nothing, nearest the median first.
    candidates = sorted({round((a + b) / 2, 4) for a, b in zip(diffs, diffs[1:])}, key=lambda r: abs(r - diffs[len(diffs) // 2]))
    for threshold in candidates:
        config = {**base, "residual_diff_threshold": threshold}
        latents, stats = cached_run(pipe, spec, inputs, config, taylorseer_order, encoder_calibrator)
        margin = margin_of(stats, threshold)
        if margin >= MIN_MARGIN and mixes(stats) and caps_bind(pipe, spec, inputs, config, stats, taylorseer_order, encoder_calibrator):
            return named(config, taylorseer_order, suffix), latents, {
                "config": config, "taylorseer_order": taylorseer_order, "enable_encoder_calibrator": encoder_calibrator if taylorseer_order else None,
                "margin": margin, "stats": [stats]}
    raise RuntimeError(f"no threshold for {base} mixes cached and computed steps with a margin of {MIN_MARGIN} (and lets its caps bind)")


def record_traces(pipe, spec, inputs, set_name):
    traces, tensors = {}, {}

    def add(name, latents, entry):
        traces[name] = entry
        tensors[f"{name}.latents_out"] = latents

    plans = [
        dict(base=dict(Fn_compute_blocks=1, Bn_compute_blocks=0, max_warmup_steps=2)),
        dict(base=dict(Fn_compute_blocks=2, Bn_compute_blocks=1, max_warmup_steps=3)),
        dict(base=dict(Fn_compute_blocks=1, Bn_compute_blocks=0, max_warmup_steps=2, max_continuous_cached_steps=2)),
        dict(base=dict(Fn_compute_blocks=1, Bn_compute_blocks=0, max_warmup_steps=2, max_cached_steps=4)),
        # The last block (context_pre_only) is among the middle blocks: cache-dit's encoder
        # calibrator would fail there, so it runs without one.
        dict(base=dict(Fn_compute_blocks=1, Bn_compute_blocks=0, max_warmup_steps=3), taylorseer_order=1),
        # The last block is a Bn block: the middle blocks keep the encoder stream, and the encoder
        # calibrator (cache-dit's default) forecasts it.
        dict(base=dict(Fn_compute_blocks=1, Bn_compute_blocks=1, max_warmup_steps=2), taylorseer_order=2, encoder_calibrator=True),
    ]
    for plan in plans:
        add(*traced(pipe, spec, inputs, **plan))

    if set_name == "sd3-tiny":
        # Every DBCacheConfig option at its default (Fn 8, Bn 0, warmup 8, threshold 0.08), with
        # and without TaylorSeer of order 1; the threshold is fixed, so its margin is only recorded.
        for order in [None, 1]:
            latents, stats = cached_run(pipe, spec, inputs, {}, order, False)
            assert mixes(stats), f"defaults with TaylorSeer {order}: no mix of cached and computed steps: {stats}"
            add("defaults" + (f"_TS{order}" if order else ""), latents, {
                "config": {}, "taylorseer_order": order, "enable_encoder_calibrator": False if order else None,
                "margin": margin_of(stats, 0.08), "stats": [stats]})
        # cache-dit's own default for the calibrator forecasts the encoder stream too, which the
        # last block does not return: record how that fails.
        try:
            cached_run(pipe, spec, inputs, {}, 1, True)
            failure = None
        except Exception as e:  # noqa: BLE001 - the failure is what is recorded
            failure = f"{type(e).__name__}: {e}"
        traces["defaults_TS1"]["cache_dit_with_encoder_calibrator"] = failure
    return traces, tensors


def main(out_dir):
    out_dir = Path(out_dir)
    for index, (set_name, spec) in enumerate(SETS.items()):
        folder = out_dir / set_name
        pipe = build_pipeline(spec, seed=100 * index)
        pipe.save_pretrained(folder)
        generator = torch.Generator().manual_seed(100 * index + 12)
        save_file(record_forward(pipe, spec, generator), folder / "transformer_forward.safetensors")
        inputs = pipeline_inputs(pipe, spec, generator)
        pipeline = record_pipeline(pipe, spec, inputs)
        save_file(pipeline, folder / "pipeline.safetensors")
        traces, tensors = record_traces(pipe, spec, inputs, set_name)
        save_file(contiguous(tensors), folder / "cache_traces.safetensors")
        meta = {
            "height": spec["height"], "width": spec["width"], "num_inference_steps": spec["num_inference_steps"],
            "guidance_scale": spec["guidance_scale"], "text_tokens": spec["text_tokens"],
            "produced_by": {"torch": torch.__version__, "diffusers": diffusers.__version__, "cache_dit": cache_dit.__version__,
                            "script": "examples/adapter-sd3/tools/make_references.py"},
            "perturbation": PERTURBATION, "timestep_embedding_scale": TIMESTEP_EMBEDDING_SCALE,
            "cache_traces": traces,
        }
        (folder / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
        print(set_name, {name: (t["stats"][0]["cached_steps"], round(t["margin"], 3)) for name, t in traces.items()})


if __name__ == "__main__":
    main(sys.argv[1])
