"""Makes the reference data of packages/adapter-hunyuan-video (test/goldens/): two small random-weight
HunyuanVideo pipeline folders, and what diffusers and cache-dit compute on them.

Not run by CI and never by the tests: the tests read only what this wrote. Run it by hand in a
venv with torch, diffusers and cache-dit (from the package folder):

    /work/refvenv-cd/bin/python tools/make_references.py test/goldens

Everything is seeded, so a rerun on the same torch, diffusers and cache-dit writes the same
tensors. test/goldens/README.md describes every file.
"""

import json
import math
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

import cache_dit
import diffusers
from cache_dit import BlockAdapter, DBCacheConfig, ForwardPattern, ParamsModifier, TaylorSeerCalibratorConfig
from diffusers import AutoencoderKLHunyuanVideo, FlowMatchEulerDiscreteScheduler, HunyuanVideoPipeline, HunyuanVideoTransformer3DModel

torch.set_num_threads(1)

# Two model folders. hv-tiny: embedded guidance (as HunyuanVideo-T2V is), deep enough in both block
# lists for Fn / Bn to leave middle blocks in each of cache-dit's two contexts. hv-cfg: no guidance
# embedding, other widths and rope axes, for true CFG.
SETS = {
    "hv-tiny": dict(
        transformer=dict(in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=8, num_layers=3, num_single_layers=4,
                         num_refiner_layers=2, mlp_ratio=2.0, patch_size=2, patch_size_t=1, qk_norm="rms_norm", guidance_embeds=True,
                         text_embed_dim=12, pooled_projection_dim=10, rope_theta=256.0, rope_axes_dim=(2, 2, 4)),
        vae=dict(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(4, 4, 8, 8), layers_per_block=1, norm_num_groups=2,
                 scaling_factor=0.476986),
        seed=11,
    ),
    "hv-cfg": dict(
        transformer=dict(in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=6, num_layers=2, num_single_layers=3,
                         num_refiner_layers=1, mlp_ratio=4.0, patch_size=2, patch_size_t=1, qk_norm="rms_norm", guidance_embeds=False,
                         text_embed_dim=8, pooled_projection_dim=6, rope_theta=256.0, rope_axes_dim=(2, 2, 2)),
        vae=dict(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(4, 4, 4, 4), layers_per_block=1, norm_num_groups=2,
                 scaling_factor=0.7),
        seed=23,
    ),
}
SCHEDULER = dict(shift=7.0)

# Pipeline runs: the set, the video size and the call's settings. `valid` are the valid (leading)
# tokens of each prompt's mask, the rest padding.
RUNS = {
    # Embedded guidance, no negative prompt: one transformer call per step.
    "guided": ("hv-tiny", dict(height=32, width=48, num_frames=9, steps=12, guidance_scale=6.0, true_cfg_scale=1.0, batch=1, tokens=7,
                               valid=[5])),
    # Embedded guidance and true CFG (cond, then uncond, per step), two videos.
    "guided_cfg": ("hv-tiny", dict(height=32, width=32, num_frames=5, steps=10, guidance_scale=4.0, true_cfg_scale=3.0, batch=2, tokens=6,
                                   valid=[4, 6], negative_tokens=5, negative_valid=[3, 5])),
    # No guidance embedding, true CFG, one frame.
    "cfg_one_frame": ("hv-cfg", dict(height=48, width=32, num_frames=1, steps=10, guidance_scale=6.0, true_cfg_scale=2.5, batch=1, tokens=6,
                                     valid=[3], negative_tokens=6, negative_valid=[6])),
}

# The cache configs: (run, DBCacheConfig keys, TaylorSeer order, params_modifiers). Each context's
# threshold (the base one, or its ParamsModifier's) is searched for: see pick_thresholds().
CACHE_CONFIGS = {
    "F1B0_W2": ("guided", dict(Fn_compute_blocks=1, Bn_compute_blocks=0, max_warmup_steps=2), None, None),
    "F2B1_W3": ("guided", dict(Fn_compute_blocks=2, Bn_compute_blocks=1, max_warmup_steps=3), None, None),
    "F1B0_W2_MC1": ("guided", dict(Fn_compute_blocks=1, Bn_compute_blocks=0, max_warmup_steps=2, max_continuous_cached_steps=1), None, None),
    "F1B1_W1_M3": ("guided", dict(Fn_compute_blocks=1, Bn_compute_blocks=1, max_warmup_steps=1, max_cached_steps=3), None, None),
    "F1B0_W2_TS1": ("guided", dict(Fn_compute_blocks=1, Bn_compute_blocks=0, max_warmup_steps=2), 1, None),
    "F1B1_W2_TS2": ("guided", dict(Fn_compute_blocks=1, Bn_compute_blocks=1, max_warmup_steps=2), 2, None),
    "PM_dual_F2B0_single_F1B1": ("guided", dict(Fn_compute_blocks=1, Bn_compute_blocks=0, max_warmup_steps=2), None,
                                 [dict(Fn_compute_blocks=2, Bn_compute_blocks=0, max_warmup_steps=3, residual_diff_threshold=0.1),
                                  dict(Fn_compute_blocks=1, Bn_compute_blocks=1, max_warmup_steps=2, residual_diff_threshold=0.1)]),
    "PM_TS1": ("guided", dict(Fn_compute_blocks=1, Bn_compute_blocks=0, max_warmup_steps=2), 1,
               [dict(Fn_compute_blocks=1, Bn_compute_blocks=0, max_warmup_steps=2, residual_diff_threshold=0.1),
                dict(Fn_compute_blocks=2, Bn_compute_blocks=1, max_warmup_steps=3, residual_diff_threshold=0.1)]),
    # True CFG, each call of a step its own branch (cond = cache-dit's non-CFG step, uncond its CFG step).
    "F1B0_W2_separateCfg": ("guided_cfg", dict(Fn_compute_blocks=1, Bn_compute_blocks=0, max_warmup_steps=2, enable_separate_cfg=True), None, None),
    # (True CFG without enable_separate_cfg is left out: cache-dit then counts every transformer call as a step of
    # one branch, while ditcache's pipelines announce cond and uncond, which always keep separate state: see
    # packages/core/README.md, "Fixed on purpose", and test/cache.test.ts.)
    "F1B1_W2_TS1_separateCfg": ("cfg_one_frame", dict(Fn_compute_blocks=1, Bn_compute_blocks=1, max_warmup_steps=2, enable_separate_cfg=True),
                                1, None),
}

# Every parameter gets Gaussian noise of this fraction of its own spread (or of 1 for a constant
# tensor such as a norm's ones), so that no layer is an identity or a zero.
PERTURBATION = 0.1
# The timestep embedding's output layer is scaled down so that the block residuals drift from step
# to step about as slowly as in a trained model.
TIMESTEP_EMBEDDING_SCALE = 0.25
# The tile sizes (in pixels) of the spatial-tiling decodes.
VAE_TILING = dict(tile_sample_min_height=24, tile_sample_min_width=24, tile_sample_stride_height=16, tile_sample_stride_width=16)
# How far every recorded residual diff must stay from its threshold (relative).
MIN_MARGIN = 0.02

CONTEXTS = ("transformer.transformer_blocks", "transformer.single_transformer_blocks")


def perturb(module, generator):
    with torch.no_grad():
        for _, p in list(module.named_parameters()) + list(module.named_buffers()):
            spread = p.std().item() if p.numel() > 1 else 0.0
            p.add_(torch.randn(p.shape, generator=generator) * PERTURBATION * (spread if spread > 0 else 1.0))


def build_pipeline(spec, folder):
    seed = spec["seed"]
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed + 1)
    transformer = HunyuanVideoTransformer3DModel(**spec["transformer"])
    perturb(transformer, generator)
    with torch.no_grad():
        out = transformer.time_text_embed.timestep_embedder.linear_2
        out.weight.mul_(TIMESTEP_EMBEDDING_SCALE)
        out.bias.mul_(TIMESTEP_EMBEDDING_SCALE)
    vae = AutoencoderKLHunyuanVideo(**spec["vae"])
    perturb(vae, generator)
    scheduler = FlowMatchEulerDiscreteScheduler(**SCHEDULER)
    pipe = HunyuanVideoPipeline(text_encoder=None, tokenizer=None, transformer=transformer, vae=vae, scheduler=scheduler,
                                text_encoder_2=None, tokenizer_2=None)
    pipe.save_pretrained(folder)
    return pipe


def contiguous(tensors):
    return {k: v.detach().to(torch.float32).contiguous().clone() for k, v in tensors.items()}


def mask_of(rows, tokens):
    return torch.tensor([[1.0 if isinstance(r, int) and j < r or isinstance(r, list) and r[j] else 0.0 for j in range(tokens)] for r in rows])


def forward_reference(pipe, generator, batch, frames, hw, tokens, mask_rows, guidance):
    """One transformer call with every block's outputs and the stages around the blocks."""
    t = pipe.transformer
    c = t.config
    inputs = {
        "hidden_states": torch.randn(batch, c.in_channels, frames, *hw, generator=generator),
        "timestep": torch.tensor([987.5, 412.25][:batch]),
        "encoder_hidden_states": torch.randn(batch, tokens, c.text_embed_dim, generator=generator),
        "encoder_attention_mask": mask_of(mask_rows, tokens),
        "pooled_projections": torch.randn(batch, c.pooled_projection_dim, generator=generator),
    }
    if guidance:
        inputs["guidance"] = torch.tensor([6000.0, 3500.0][:batch])
    recorded = {}

    def keep(name):
        def hook(_module, _args, output):
            outputs = output if isinstance(output, tuple) else (output,)
            for i, o in enumerate(outputs):
                if torch.is_tensor(o):
                    recorded[f"{name}.out{i}"] = o
        return hook

    modules = {"x_embedder": t.x_embedder, "time_text_embed": t.time_text_embed, "context_embedder": t.context_embedder,
               "context_embedder.time_text_embed": t.context_embedder.time_text_embed, "norm_out": t.norm_out, "proj_out": t.proj_out}
    modules.update({f"context_embedder.token_refiner.refiner_blocks.{i}": b for i, b in enumerate(t.context_embedder.token_refiner.refiner_blocks)})
    modules.update({f"transformer_blocks.{i}": b for i, b in enumerate(t.transformer_blocks)})
    modules.update({f"single_transformer_blocks.{i}": b for i, b in enumerate(t.single_transformer_blocks)})
    handles = [m.register_forward_hook(keep(n)) for n, m in modules.items()]
    with torch.no_grad():
        sample = t(**inputs, return_dict=False)[0]
    for h in handles:
        h.remove()
    return contiguous({**inputs, **recorded, "sample": sample})


def vae_reference(pipe, generator, frames, hw, stages, tiling=None):
    """
    One decode of random latents (already divided by scaling_factor), with the decoder's first (small) stages if
    `stages`; with diffusers' spatial tiling (vae.enable_tiling(**tiling)) if `tiling`.
    """
    vae = pipe.vae
    z = torch.randn(1, vae.config.latent_channels, frames, *hw, generator=generator)
    recorded = {}
    d = vae.decoder
    modules = {"post_quant_conv": vae.post_quant_conv, "decoder.conv_in": d.conv_in, "decoder.mid_block": d.mid_block,
               "decoder.up_blocks.0": d.up_blocks[0]} if stages else {}
    handles = [m.register_forward_hook(lambda _m, _a, o, n=n: recorded.__setitem__(n, o)) for n, m in modules.items()]
    if tiling:
        vae.enable_tiling(**tiling)
    with torch.no_grad():
        sample = vae.decode(z, return_dict=False)[0]
    if tiling:
        vae.disable_tiling()
    for h in handles:
        h.remove()
    return contiguous({"z": z, **recorded, "sample": sample})


def pipeline_request(pipe, generator, spec):
    c = pipe.transformer.config
    b = spec["batch"]
    latent_frames = (spec["num_frames"] - 1) // 4 + 1
    args = dict(height=spec["height"], width=spec["width"], num_frames=spec["num_frames"], num_inference_steps=spec["steps"],
                guidance_scale=spec["guidance_scale"], true_cfg_scale=spec["true_cfg_scale"],
                latents=torch.randn(b, c.in_channels, latent_frames, spec["height"] // 8, spec["width"] // 8, generator=generator),
                prompt_embeds=torch.randn(b, spec["tokens"], c.text_embed_dim, generator=generator),
                pooled_prompt_embeds=torch.randn(b, c.pooled_projection_dim, generator=generator),
                prompt_attention_mask=mask_of(spec["valid"], spec["tokens"]))
    if "negative_tokens" in spec:
        args.update(negative_prompt_embeds=torch.randn(b, spec["negative_tokens"], c.text_embed_dim, generator=generator),
                    negative_pooled_prompt_embeds=torch.randn(b, c.pooled_projection_dim, generator=generator),
                    negative_prompt_attention_mask=mask_of(spec["negative_valid"], spec["negative_tokens"]))
    return args


def run_pipeline(pipe, args, decode):
    with torch.no_grad():
        latents = pipe(**args, output_type="latent").frames
        video = torch.from_numpy(pipe(**args, output_type="np").frames) if decode else None
    return latents, video


def cached_run(pipe, args, config, order, modifiers):
    adapter = BlockAdapter(pipe=pipe, transformer=pipe.transformer,
                           blocks=[pipe.transformer.transformer_blocks, pipe.transformer.single_transformer_blocks],
                           forward_pattern=[ForwardPattern.Pattern_0, ForwardPattern.Pattern_0], check_forward_pattern=True,
                           check_num_outputs=False,
                           params_modifiers=[ParamsModifier(cache_config=DBCacheConfig().reset(**m)) for m in modifiers] if modifiers else None)
    calibrator = TaylorSeerCalibratorConfig(taylorseer_order=order) if order else None
    cache_dit.enable_cache(adapter, cache_config=DBCacheConfig(**config), calibrator_config=calibrator)
    try:
        latents, _ = run_pipeline(pipe, args, decode=False)
        stats = cache_dit.summary(pipe, logging=False)
    finally:
        cache_dit.disable_cache(pipe)
    contexts = {}
    for s in stats:
        contexts.setdefault(s.cache_options["name"], s)
    # cache-dit names each context after its block list and an object id (which changes every run).
    by_list = {name.rsplit("_", 1)[0]: s for name, s in contexts.items()}
    assert sorted(by_list) == ["single_transformer_blocks", "transformer_blocks"], list(contexts)
    entries = []
    for source in CONTEXTS:
        s = by_list[source.split(".")[1]]
        entries.append(dict(source=source, cached_steps=sorted(int(k) for k in s.cached_steps),
                            residual_diffs={str(k): float(v) for k, v in sorted(s.residual_diffs.items(), key=lambda kv: int(kv[0]))},
                            cfg_cached_steps=sorted(int(k) for k in s.cfg_cached_steps),
                            cfg_residual_diffs={str(k): float(v) for k, v in sorted(s.cfg_residual_diffs.items(), key=lambda kv: int(kv[0]))}))
    return latents, entries


def diffs_of(entry):
    return list(entry["residual_diffs"].values()) + list(entry["cfg_residual_diffs"].values())


def margin(entries, thresholds):
    return min((abs(d - thr) / thr for e, thr in zip(entries, thresholds) for d in diffs_of(e)), default=0.0)


def mixes(entries):
    """Some context caches steps, and no branch with diffs caches all of them."""
    if not any(e["cached_steps"] for e in entries):
        return False
    for e in entries:
        for cached, diffs in ((e["cached_steps"], e["residual_diffs"]), (e["cfg_cached_steps"], e["cfg_residual_diffs"])):
            if diffs and len(cached) >= len(diffs):
                return False
    return True


def with_thresholds(config, modifiers, thresholds):
    if modifiers:
        return config, [{**m, "residual_diff_threshold": thr} for m, thr in zip(modifiers, thresholds)]
    return {**config, "residual_diff_threshold": thresholds[0]}, modifiers


def candidates_of(diffs):
    diffs = sorted(set(diffs))
    mid = diffs[len(diffs) // 2]
    out = [(a + b) / 2 for a, b in zip(diffs, diffs[1:])] + [d * f for d in diffs for f in (1.05, 1.1, 0.95, 0.9)]
    return sorted({round(t, 6) for t in out}, key=lambda t: abs(math.log(t / mid)))


def pick_thresholds(pipe, args, config, order, modifiers):
    """Thresholds nearest the middle of an uncached run's diffs whose cached run mixes and keeps MIN_MARGIN."""
    contexts = 2 if modifiers else 1
    probe_cfg, probe_mods = with_thresholds(config, modifiers, [1e-6] * contexts)
    _, probe = cached_run(pipe, args, probe_cfg, order, probe_mods)
    if modifiers:
        per_context = [candidates_of(diffs_of(e))[:8] for e in probe]
        tries = [[a, b] for i, a in enumerate(per_context[0]) for j, b in enumerate(per_context[1]) if i + j < 8]
        tries.sort(key=lambda ab: per_context[0].index(ab[0]) + per_context[1].index(ab[1]))
    else:
        tries = [[t] for t in candidates_of([d for e in probe for d in diffs_of(e)])]
    for thresholds in tries:
        cfg, mods = with_thresholds(config, modifiers, thresholds)
        latents, entries = cached_run(pipe, args, cfg, order, mods)
        per_entry = thresholds if modifiers else thresholds * 2
        m = margin(entries, per_entry)
        if m >= MIN_MARGIN and mixes(entries):
            return cfg, mods, latents, entries, m
    raise RuntimeError(f"no threshold keeps {MIN_MARGIN} margin and mixes for {config} {modifiers}")


def main(out):
    out = Path(out)
    meta = dict(diffusers=diffusers.__version__, cache_dit=cache_dit.__version__, torch=torch.__version__, min_margin_required=MIN_MARGIN,
                perturbation=PERTURBATION, timestep_embedding_scale=TIMESTEP_EMBEDDING_SCALE, script="packages/adapter-hunyuan-video/tools/make_references.py")
    pipes = {name: build_pipeline(spec, out / name) for name, spec in SETS.items()}
    g = torch.Generator().manual_seed(5)
    tensors = {}
    # hv-tiny: two videos of 3 latent frames, padded prompts; hv-cfg: one latent frame, a mask with holes.
    tensors.update({f"forward.{k}": v for k, v in forward_reference(pipes["hv-tiny"], g, 2, 3, (4, 6), 7, [5, 7], True).items()})
    tensors.update({f"forward_cfg.{k}": v for k, v in forward_reference(pipes["hv-cfg"], g, 1, 1, (6, 4), 6, [[1, 0, 1, 1, 0, 1]], False).items()})
    tensors.update({f"vae.{k}": v for k, v in vae_reference(pipes["hv-tiny"], g, 3, (2, 3), True).items()})
    # More latent frames than one tile (tile_sample_min_num_frames 16 = 4 latent frames): diffusers decodes it in overlapping
    # temporal tiles, blended; its stages would be the last tile's, so only the frames are kept.
    tensors.update({f"vae_long.{k}": v for k, v in vae_reference(pipes["hv-cfg"], g, 6, (2, 2), False).items()})
    requests = {}
    for run, (set_name, spec) in RUNS.items():
        args = pipeline_request(pipes[set_name], g, spec)
        requests[run] = args
        latents, video = run_pipeline(pipes[set_name], args, decode=True)
        for k, v in args.items():
            if torch.is_tensor(v):
                tensors[f"{run}.{'latents_in' if k == 'latents' else k}"] = v.contiguous()
        tensors[f"{run}.latents_out"] = latents
        tensors[f"{run}.video"] = video
    # Spatial tiling (diffusers' enable_tiling, off by default) with small tiles: 3 x 3 latent pixels every 2, blended
    # over 8 pixels; alone, and inside the temporal tiles of 6 latent frames. Its own generator, so the draws above stay.
    g_tiles = torch.Generator().manual_seed(7)
    tensors.update({f"vae_tiled.{k}": v for k, v in vae_reference(pipes["hv-tiny"], g_tiles, 2, (4, 5), False, VAE_TILING).items()})
    tensors.update({f"vae_long_tiled.{k}": v for k, v in vae_reference(pipes["hv-cfg"], g_tiles, 6, (4, 3), False, VAE_TILING).items()})
    meta["vae_tiling"] = VAE_TILING
    meta["runs"] = {run: dict(set=s, **spec) for run, (s, spec) in RUNS.items()}
    save_file(contiguous(tensors), str(out / "references.safetensors"))

    traces, trace_tensors = {}, {}
    for name, (run, config, order, modifiers) in CACHE_CONFIGS.items():
        set_name = RUNS[run][0]
        cfg, mods, latents, entries, m = pick_thresholds(pipes[set_name], requests[run], config, order, modifiers)
        traces[name] = dict(run=run, config=cfg, taylorseer_order=order, params_modifiers=mods, margin=m, stats=entries)
        trace_tensors[f"{name}.latents_out"] = latents
        print(name, "margin", round(m, 4), [(e["cached_steps"], e["cfg_cached_steps"]) for e in entries], flush=True)
    meta["cache_traces"] = traces
    meta["min_margin"] = min(t["margin"] for t in traces.values())
    save_file(contiguous(trace_tensors), str(out / "cache_traces.safetensors"))
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    print("min margin", meta["min_margin"])


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "test/goldens")
