"""Makes the reference data of @ditcache/adapter-qwen-image (test/goldens/): two small random-weight
Qwen-Image pipeline folders, and what diffusers and cache-dit compute on them.

Not run by CI and never by the tests: the tests read only what this wrote. Run it by hand in a venv
with torch, diffusers and cache-dit (from the repository root):

    /work/refvenv-cd/bin/python packages/adapter-qwen-image/tools/make_references.py packages/adapter-qwen-image/test/goldens

Everything is seeded, so a rerun on the same torch, diffusers and cache-dit writes the same
tensors. test/goldens/README.md describes every file.
"""

import json
import math
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

import cache_dit
import diffusers
from cache_dit import DBCacheConfig, ParamsModifier, TaylorSeerCalibratorConfig
from diffusers import AutoencoderKLQwenImage, FlowMatchEulerDiscreteScheduler, QwenImagePipeline, QwenImageTransformer2DModel

torch.set_num_threads(1)

# Qwen-Image's own scheduler config, and Qwen-Image-Lightning's (no terminal shift, a fixed mu of log 3).
QWEN_SCHEDULER = dict(base_image_seq_len=256, base_shift=0.5, max_image_seq_len=8192, max_shift=0.9, shift=1.0, shift_terminal=0.02,
                      time_shift_type="exponential", use_dynamic_shifting=True)
LIGHTNING_SCHEDULER = dict(base_image_seq_len=256, base_shift=math.log(3), max_image_seq_len=8192, max_shift=math.log(3), shift=1.0,
                           shift_terminal=None, time_shift_type="exponential", use_dynamic_shifting=True)

# Two folders: a 6-block one for the transformer, pipeline and most cache configs, and a 34-block one
# (deep enough for Fn / Bn of 16 to leave middle blocks) with Lightning's scheduler for few-step runs.
SETS = {
    "qwen-tiny": dict(
        transformer=dict(patch_size=2, in_channels=16, out_channels=4, num_layers=6, attention_head_dim=8, num_attention_heads=2,
                         joint_attention_dim=24, axes_dims_rope=(2, 2, 4)),
        scheduler=QWEN_SCHEDULER,
    ),
    "qwen-deep": dict(
        transformer=dict(patch_size=2, in_channels=16, out_channels=4, num_layers=34, attention_head_dim=8, num_attention_heads=1,
                         joint_attention_dim=24, axes_dims_rope=(2, 2, 4)),
        scheduler=LIGHTNING_SCHEDULER,
    ),
}
VAE = dict(base_dim=4, z_dim=4, dim_mult=[1, 2, 2, 2], num_res_blocks=1, attn_scales=[], temperal_downsample=[False, True, True],
           latents_mean=[-0.7571, -0.7089, -0.9113, 0.1075], latents_std=[2.8184, 1.4541, 2.3275, 2.6558])

# Every parameter gets Gaussian noise of this fraction of its own spread (or of 1 for a constant
# tensor such as a norm's ones), so that no layer is an identity or a zero.
PERTURBATION = 0.1
# The timestep embedding's output layer is scaled down so that the block residuals drift from step
# to step about as slowly as in a trained model (else nothing is ever cacheable).
TIMESTEP_EMBEDDING_SCALE = 0.25
# How far every recorded residual diff must stay from its threshold (relative).
MIN_MARGIN = 0.02


def perturb(module, generator):
    with torch.no_grad():
        for _, p in module.named_parameters():
            spread = p.std().item() if p.numel() > 1 else 0.0
            p.add_(torch.randn(p.shape, generator=generator) * PERTURBATION * (spread if spread > 0 else 1.0))


def build_pipeline(spec, out_dir, seed):
    torch.manual_seed(seed)
    transformer = QwenImageTransformer2DModel(**spec["transformer"]).eval()
    vae = AutoencoderKLQwenImage(**VAE).eval()
    g = torch.Generator().manual_seed(seed + 1)
    perturb(transformer, g)
    perturb(vae, g)
    with torch.no_grad():
        transformer.time_text_embed.timestep_embedder.linear_2.weight.mul_(TIMESTEP_EMBEDDING_SCALE)
        transformer.time_text_embed.timestep_embedder.linear_2.bias.mul_(TIMESTEP_EMBEDDING_SCALE)
    scheduler = FlowMatchEulerDiscreteScheduler(**spec["scheduler"])
    pipe = QwenImagePipeline(scheduler=scheduler, vae=vae, text_encoder=None, tokenizer=None, transformer=transformer)
    pipe.set_progress_bar_config(disable=True)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    transformer.save_pretrained(out_dir / "transformer")
    vae.save_pretrained(out_dir / "vae")
    scheduler.save_pretrained(out_dir / "scheduler")
    (out_dir / "model_index.json").write_text(json.dumps({
        "_class_name": "QwenImagePipeline", "_diffusers_version": diffusers.__version__,
        "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"], "text_encoder": [None, None], "tokenizer": [None, None],
        "transformer": ["diffusers", "QwenImageTransformer2DModel"], "vae": ["diffusers", "AutoencoderKLQwenImage"],
    }, indent=2))
    return pipe


def embeddings(g, batch, tokens, dim, valid):
    """Prompt embeddings and an int64 mask with `valid[i]` leading ones for sample i (the rest padding)."""
    embeds = torch.randn(batch, tokens, dim, generator=g)
    mask = torch.zeros(batch, tokens, dtype=torch.int64)
    for i, n in enumerate(valid):
        mask[i, :n] = 1
    return embeds, mask


def forward_reference(pipe, g, batch, img_shape, tokens, valid, record_blocks):
    t = pipe.transformer
    c = t.config
    f, h, w = img_shape
    hidden = torch.randn(batch, f * h * w, c.in_channels, generator=g)
    encoder, mask = embeddings(g, batch, tokens, c.joint_attention_dim, valid)
    timestep = torch.tensor([0.83, 0.37][:batch])
    blocks = {}
    hooks = []
    if record_blocks:
        for i, block in enumerate(t.transformer_blocks):
            def hook(_m, _args, out, i=i):
                blocks[f"block_{i}.encoder_hidden_states"] = out[0].detach().clone()
                blocks[f"block_{i}.hidden_states"] = out[1].detach().clone()
            hooks.append(block.register_forward_hook(hook))
    with torch.no_grad():
        sample = t(hidden_states=hidden, encoder_hidden_states=encoder, encoder_hidden_states_mask=mask, timestep=timestep,
                   img_shapes=[[img_shape]] * batch, return_dict=False)[0]
    for hk in hooks:
        hk.remove()
    # img_shapes comes as a tensor of the same values, as the CLI contract has it.
    return dict(hidden_states=hidden, encoder_hidden_states=encoder, encoder_hidden_states_mask=mask, timestep=timestep,
                img_shapes=torch.tensor([[img_shape]] * batch, dtype=torch.int64), sample=sample.contiguous(), **blocks)


def pipeline_request(pipe, g, spec):
    """The __call__ arguments of one run: latents_in and the embeddings under the pipeline's names."""
    c = pipe.transformer.config
    b = spec["batch"]
    lh, lw = spec["height"] // 8, spec["width"] // 8
    args = dict(height=spec["height"], width=spec["width"], num_inference_steps=spec["steps"], true_cfg_scale=spec["true_cfg_scale"])
    args["latents"] = torch.randn(b, (lh // 2) * (lw // 2), c.in_channels, generator=g)
    args["prompt_embeds"], args["prompt_embeds_mask"] = embeddings(g, b, spec["tokens"], c.joint_attention_dim, spec["valid"])
    if spec.get("negative_tokens"):
        args["negative_prompt_embeds"], args["negative_prompt_embeds_mask"] = embeddings(g, b, spec["negative_tokens"], c.joint_attention_dim,
                                                                                       spec["negative_valid"])
    return args


def run_pipeline(pipe, args, decode):
    final = {}

    def keep(_pipe, _i, _t, kw):
        final["latents"] = kw["latents"].clone()
        return kw

    with torch.no_grad():
        out = pipe(**args, output_type="np" if decode else "latent", callback_on_step_end=keep)
    image = torch.from_numpy(out.images).float().contiguous() if decode else None
    return final["latents"].contiguous(), image


# The pipeline runs the tests compare with (and the cache traces run on): (set, request).
RUNS = {
    # Square, batch 2, true CFG with padded masks of other lengths than the prompt's.
    "cfg_square": ("qwen-tiny", dict(height=48, width=48, steps=12, true_cfg_scale=4.0, batch=2, tokens=7, valid=[5, 7], negative_tokens=5,
                                     negative_valid=[3, 5])),
    # Non-square, no negative prompt: one transformer call per step.
    "plain_wide": ("qwen-tiny", dict(height=32, width=64, steps=10, true_cfg_scale=1.0, batch=1, tokens=6, valid=[4])),
    # Lightning-like: 4 steps of the Lightning schedule on the deep model, true CFG.
    "lightning_cfg": ("qwen-deep", dict(height=32, width=48, steps=4, true_cfg_scale=2.5, batch=1, tokens=6, valid=[4], negative_tokens=6,
                                        negative_valid=[2])),
    # 8 Lightning steps, no CFG.
    "lightning_plain": ("qwen-deep", dict(height=48, width=32, steps=8, true_cfg_scale=1.0, batch=1, tokens=5, valid=[5])),
}

# The cache configs: (run, DBCacheConfig keys, TaylorSeer order, params_modifiers). The threshold
# (the base one, or the ParamsModifier's where it sets one) is searched for: see pick_threshold().
CACHE_CONFIGS = {
    "F1B0_W2": ("cfg_square", dict(Fn_compute_blocks=1, Bn_compute_blocks=0, max_warmup_steps=2), None, None),
    "F2B1_W3_MC1": ("cfg_square", dict(Fn_compute_blocks=2, Bn_compute_blocks=1, max_warmup_steps=3, max_continuous_cached_steps=1), None, None),
    "F1B1_W1_M3_sharedDiff": ("cfg_square", dict(Fn_compute_blocks=1, Bn_compute_blocks=1, max_warmup_steps=1, max_cached_steps=3,
                                                  cfg_diff_compute_separate=False), None, None),
    "F1B0_W2_TS1": ("cfg_square", dict(Fn_compute_blocks=1, Bn_compute_blocks=0, max_warmup_steps=2), 1, None),
    "F2B0_W2_TS2": ("cfg_square", dict(Fn_compute_blocks=2, Bn_compute_blocks=0, max_warmup_steps=2), 2, None),
    "PM_F1B1_W2": ("cfg_square", dict(Fn_compute_blocks=3, Bn_compute_blocks=0, max_warmup_steps=4),
                   None, [dict(Fn_compute_blocks=1, Bn_compute_blocks=1, max_warmup_steps=2, residual_diff_threshold=0.1)]),
    "F1B0_W1_noSeparateCfg": ("plain_wide", dict(Fn_compute_blocks=1, Bn_compute_blocks=0, max_warmup_steps=1, enable_separate_cfg=False),
                              None, None),
    "F1B1_W2_TS1_noSeparateCfg": ("plain_wide", dict(Fn_compute_blocks=1, Bn_compute_blocks=1, max_warmup_steps=2, enable_separate_cfg=False),
                                  1, None),
    "F16B16_W1_lightning": ("lightning_cfg", dict(Fn_compute_blocks=16, Bn_compute_blocks=16, max_warmup_steps=1), None, None),
    "F8B8_W2_lightning8": ("lightning_plain", dict(Fn_compute_blocks=8, Bn_compute_blocks=8, max_warmup_steps=2, enable_separate_cfg=False),
                           None, None),
}


def enable_kwargs(config, order, modifiers):
    kwargs = dict(cache_config=DBCacheConfig(**config), calibrator_config=TaylorSeerCalibratorConfig(taylorseer_order=order) if order else None)
    if modifiers:
        kwargs["params_modifiers"] = [ParamsModifier(cache_config=DBCacheConfig().reset(**m)) for m in modifiers]
    return kwargs


def cached_run(pipe, args, config, order, modifiers):
    cache_dit.enable_cache(pipe, **enable_kwargs(config, order, modifiers))
    try:
        latents, _ = run_pipeline(pipe, args, decode=False)
        stats = cache_dit.summary(pipe, logging=False)
    finally:
        cache_dit.disable_cache(pipe)
    contexts = {}
    for s in stats:
        contexts.setdefault(s.cache_options["name"], s)
    entries = []
    assert len(contexts) == 1 and next(iter(contexts)).startswith("transformer_blocks"), f"cache-dit's contexts: {list(contexts)}"
    for s in contexts.values():
        # cache-dit names the context after the block list and an object id; the id changes every run.
        entries.append(dict(source="transformer.transformer_blocks", executed_steps=s.accumulated_executed_steps,
                            cached_steps=sorted(int(k) for k in s.cached_steps),
                            residual_diffs={str(k): float(v) for k, v in sorted(s.residual_diffs.items(), key=lambda kv: int(kv[0]))},
                            cfg_cached_steps=sorted(int(k) for k in s.cfg_cached_steps),
                            cfg_residual_diffs={str(k): float(v) for k, v in sorted(s.cfg_residual_diffs.items(), key=lambda kv: int(kv[0]))}))
    return latents, entries


def margin(entries, threshold):
    diffs = [d for e in entries for d in list(e["residual_diffs"].values()) + list(e["cfg_residual_diffs"].values())]
    return min(abs(d - threshold) / threshold for d in diffs) if diffs else 0.0


def mixes(entries):
    """Every branch with diffs caches some of its steps and computes others after warmup."""
    for e in entries:
        for cached, diffs in ((e["cached_steps"], e["residual_diffs"]), (e["cfg_cached_steps"], e["cfg_residual_diffs"])):
            if diffs and (not cached or len(cached) >= len(diffs)):
                return False
    return any(e["cached_steps"] for e in entries)


def with_threshold(config, modifiers, thr):
    if modifiers and "residual_diff_threshold" in modifiers[0]:
        return config, [{**modifiers[0], "residual_diff_threshold": thr}, *modifiers[1:]]
    return {**config, "residual_diff_threshold": thr}, modifiers


def pick_threshold(pipe, args, config, order, modifiers):
    """The threshold nearest the middle of an uncached run's diffs whose cached run mixes and keeps MIN_MARGIN."""
    probe_cfg, probe_mods = with_threshold(config, modifiers, 1e-6)
    _, probe = cached_run(pipe, args, probe_cfg, order, probe_mods)
    diffs = sorted({d for e in probe for d in list(e["residual_diffs"].values()) + list(e["cfg_residual_diffs"].values())})
    assert len(diffs) >= 2, f"too few diffs to place a threshold: {diffs}"
    candidates = [(a + b) / 2 for a, b in zip(diffs, diffs[1:])] + [d * f for d in diffs for f in (1.05, 1.1, 1.2, 0.95, 0.9)]
    mid = diffs[len(diffs) // 2]
    candidates.sort(key=lambda t: abs(math.log(t / mid)))
    for thr in candidates:
        cfg, mods = with_threshold(config, modifiers, round(thr, 6))
        latents, entries = cached_run(pipe, args, cfg, order, mods)
        m = margin(entries, round(thr, 6))
        if m >= MIN_MARGIN and mixes(entries):
            return cfg, mods, latents, entries, m
    raise RuntimeError(f"no threshold keeps {MIN_MARGIN} margin and mixes for {config} {modifiers}")


def main(out):
    out = Path(out)
    meta = dict(diffusers=diffusers.__version__, cache_dit=cache_dit.__version__, torch=torch.__version__, min_margin_required=MIN_MARGIN)
    pipes = {name: build_pipeline(spec, out / name, seed) for seed, (name, spec) in zip((11, 23), SETS.items())}
    g = torch.Generator().manual_seed(5)
    tensors = {}
    tensors.update({f"forward.{k}": v for k, v in forward_reference(pipes["qwen-tiny"], g, 2, (1, 3, 5), 7, [5, 7], True).items()})
    tensors.update({f"forward_deep.{k}": v for k, v in forward_reference(pipes["qwen-deep"], g, 1, (1, 4, 4), 6, [3], False).items()})
    requests = {}
    for run, (set_name, spec) in RUNS.items():
        args = pipeline_request(pipes[set_name], g, spec)
        requests[run] = args
        latents, image = run_pipeline(pipes[set_name], args, decode=run != "lightning_plain")
        for k, v in args.items():
            if torch.is_tensor(v):
                tensors[f"{run}.{'latents_in' if k == 'latents' else k}"] = v.contiguous()
        tensors[f"{run}.latents_out"] = latents
        if image is not None:
            tensors[f"{run}.image"] = image
    meta["runs"] = {run: dict(set=s, **{k: v for k, v in spec.items()}) for run, (s, spec) in RUNS.items()}
    save_file(tensors, str(out / "references.safetensors"))

    traces = {}
    trace_tensors = {}
    for name, (run, config, order, modifiers) in CACHE_CONFIGS.items():
        set_name = RUNS[run][0]
        cfg, mods, latents, entries, m = pick_threshold(pipes[set_name], requests[run], config, order, modifiers)
        traces[name] = dict(run=run, config=cfg, taylorseer_order=order, params_modifiers=mods, margin=m, stats=entries)
        trace_tensors[f"{name}.latents_out"] = latents
        print(name, "margin", round(m, 4), [(e["cached_steps"], e["cfg_cached_steps"]) for e in entries], flush=True)
    meta["cache_traces"] = traces
    meta["min_margin"] = min(t["margin"] for t in traces.values())
    save_file(trace_tensors, str(out / "cache_traces.safetensors"))
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    print("min margin", meta["min_margin"])


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "test/goldens")
