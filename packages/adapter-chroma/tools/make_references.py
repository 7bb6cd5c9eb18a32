"""Makes the reference data of packages/adapter-chroma (test/goldens/): small random-weight Chroma
pipeline folders, and what diffusers and cache-dit compute on them.

Not run by CI and never by the tests: the tests read only what this wrote. Run it by hand in a venv
with torch, diffusers and cache-dit (from the repository root):

    /work/refvenv-cd/bin/python packages/adapter-chroma/tools/make_references.py packages/adapter-chroma/test/goldens

The attention mask. diffusers' ChromaPipeline hands the transformer a float 0/1 mask, which
attention adds to its scores as a bias, so it masks nothing (diffusers issues #12116 and #13619).
Chroma's reference implementation and ComfyUI exclude the padded text keys (all but the one pad
token the pipeline keeps). Every attention module here therefore runs a processor that turns the
mask it gets into that boolean key mask before attending: the references are what diffusers
computes once that bug is fixed. Everything is seeded, so a rerun on the same torch, diffusers and
cache-dit writes the same tensors. test/goldens/README.md describes every file.
"""

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

import cache_dit
import diffusers
from cache_dit import DBCacheConfig, ParamsModifier, TaylorSeerCalibratorConfig
from diffusers import AutoencoderKL, ChromaPipeline, ChromaTransformer2DModel, FlowMatchEulerDiscreteScheduler
from diffusers.models.transformers.transformer_flux import FluxAttention, FluxAttnProcessor

torch.set_num_threads(1)

# Two model folders: a non-square one (deep enough for Fn 2 / Bn 1 in both block lists, with the
# cache traces) and a square one with other sizes.
SETS = {
    "chroma-tiny": dict(
        transformer=dict(patch_size=1, in_channels=16, num_layers=4, num_single_layers=5, attention_head_dim=16, num_attention_heads=2,
                         joint_attention_dim=32, axes_dims_rope=(4, 6, 6), approximator_num_channels=16, approximator_hidden_dim=32,
                         approximator_layers=2),
        text_tokens=8,
        # The transformer_forward call: batch 2, a 3 x 5 grid of patches; tokens kept per sample (plus the one pad token).
        forward_grid=(3, 5), forward_kept=(3, 5),
        # The pipeline makes a 12 x 20 image: 6 x 10 latents, 3 x 5 patches.
        height=12, width=20, num_inference_steps=20, guidance_scale=4.0, prompt_kept=3, negative_kept=5,
        cache_traces=True,
    ),
    "chroma-tiny-square": dict(
        transformer=dict(patch_size=1, in_channels=16, num_layers=2, num_single_layers=3, attention_head_dim=8, num_attention_heads=3,
                         joint_attention_dim=24, axes_dims_rope=(2, 2, 4), approximator_num_channels=8, approximator_hidden_dim=16,
                         approximator_layers=3),
        text_tokens=6,
        forward_grid=(4, 4), forward_kept=(2, 4),
        height=16, width=16, num_inference_steps=6, guidance_scale=3.5, prompt_kept=4, negative_kept=1,
        cache_traces=False,
    ),
}

VAE = dict(in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
           block_out_channels=[4, 4], layers_per_block=1, latent_channels=4, norm_num_groups=2, sample_size=32,
           scaling_factor=0.3611, shift_factor=0.1159, use_quant_conv=False, use_post_quant_conv=False)
# Chroma's scheduler config (resolution-dependent shift).
SCHEDULER = dict(shift=3.0, use_dynamic_shifting=True, base_image_seq_len=256, max_image_seq_len=4096, base_shift=0.5, max_shift=1.15)

# Every parameter and buffer gets Gaussian noise of this fraction of its own spread (or of 1 for a
# constant tensor such as a norm's ones), so that no layer is an identity or a zero.
PERTURBATION = 0.1
# The distilled guidance layer's output is scaled down so that the modulation, and with it the
# block residuals, drift from step to step about as slowly as in a trained model.
MODULATION_SCALE = 0.25
# How far every recorded residual diff must stay from the threshold (relative), so that float
# error cannot flip a decision.
MIN_MARGIN = 0.02
CAPS = ("max_cached_steps", "max_continuous_cached_steps")


class KeyMaskedFluxAttnProcessor(FluxAttnProcessor):
    """FluxAttnProcessor with the mask a Chroma block builds (the outer product of the token mask
    with itself, float in diffusers) turned into the boolean key mask (B, 1, 1, S) it stands for."""

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, image_rotary_emb=None):
        if attention_mask is not None:
            # Image tokens are never masked, so a key is kept iff some query keeps it.
            attention_mask = (attention_mask != 0).any(dim=-2, keepdim=True)
        return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, image_rotary_emb)


def use_key_mask(transformer):
    for module in transformer.modules():
        if isinstance(module, FluxAttention):
            module.processor = KeyMaskedFluxAttnProcessor()


def perturb(module, generator):
    with torch.no_grad():
        for _, p in list(module.named_parameters()) + list(module.named_buffers()):
            spread = p.std().item() if p.numel() > 1 else 0.0
            p.add_(torch.randn(p.shape, generator=generator) * PERTURBATION * (spread if spread > 0 else 1.0))


def build_pipeline(spec, seed):
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed + 1)
    transformer = ChromaTransformer2DModel(**spec["transformer"])
    # mod_proj is a fixed (non-persistent) buffer the folder does not hold: left as it is.
    with torch.no_grad():
        for _, p in transformer.named_parameters():
            spread = p.std().item() if p.numel() > 1 else 0.0
            p.add_(torch.randn(p.shape, generator=generator) * PERTURBATION * (spread if spread > 0 else 1.0))
        out = transformer.distilled_guidance_layer.out_proj
        out.weight.mul_(MODULATION_SCALE)
        out.bias.mul_(MODULATION_SCALE)
    use_key_mask(transformer)
    vae = AutoencoderKL(**VAE)
    perturb(vae, generator)
    scheduler = FlowMatchEulerDiscreteScheduler(**SCHEDULER)
    return ChromaPipeline(scheduler=scheduler, vae=vae, text_encoder=None, tokenizer=None, transformer=transformer)


def contiguous(tensors):
    # clone(): a hooked output may be the very tensor the model returns (proj_out's is `sample`).
    return {k: v.detach().to(torch.float32).clone().contiguous() for k, v in tensors.items()}


def token_mask(tokens, kept):
    """ChromaPipeline.encode_prompt's mask of a prompt of `kept` tokens: those and one pad token."""
    return (torch.arange(tokens) <= kept).to(torch.float32)


def image_ids(rows, cols):
    ids = torch.zeros(rows, cols, 3)
    ids[..., 1] += torch.arange(rows)[:, None]
    ids[..., 2] += torch.arange(cols)[None, :]
    return ids.reshape(rows * cols, 3)


def record_forward(pipe, spec, generator):
    """One transformer call (the pipeline's mask layout: text mask, then ones for the image) with every block's outputs."""
    t = pipe.transformer
    c = t.config
    rows, cols = spec["forward_grid"]
    tokens = spec["text_tokens"]
    batch = len(spec["forward_kept"])
    text_mask = torch.stack([token_mask(tokens, k) for k in spec["forward_kept"]])
    inputs = {
        "hidden_states": torch.randn(batch, rows * cols, c.in_channels, generator=generator),
        "encoder_hidden_states": torch.randn(batch, tokens, c.joint_attention_dim, generator=generator),
        "timestep": torch.tensor([0.999, 0.4125]),
        "img_ids": image_ids(rows, cols),
        "txt_ids": torch.zeros(tokens, 3),
        "attention_mask": torch.cat([text_mask, torch.ones(batch, rows * cols)], dim=1),
    }
    recorded = {}

    def keep(name):
        def hook(_module, _args, output):
            outputs = output if isinstance(output, tuple) else (output,)
            for i, o in enumerate(outputs):
                recorded[f"{name}.out{i}"] = o
        return hook

    modules = ["time_text_embed", "distilled_guidance_layer", "context_embedder", "x_embedder", "norm_out", "proj_out"]
    handles = [getattr(t, name).register_forward_hook(keep(name)) for name in modules]
    handles += [b.register_forward_hook(keep(f"transformer_blocks.{i}")) for i, b in enumerate(t.transformer_blocks)]
    handles += [b.register_forward_hook(keep(f"single_transformer_blocks.{i}")) for i, b in enumerate(t.single_transformer_blocks)]
    with torch.no_grad():
        sample = t(**inputs, return_dict=False)[0]
    for h in handles:
        h.remove()
    return contiguous({**inputs, **recorded, "sample": sample})


def pipeline_inputs(pipe, spec, generator):
    c = pipe.transformer.config
    f = pipe.vae_scale_factor
    shape = (1, spec["text_tokens"], c.joint_attention_dim)
    latents = torch.randn(1, c.in_channels // 4, spec["height"] // f, spec["width"] // f, generator=generator)
    return {
        # Packed, as the pipeline takes `latents=`.
        "latents_in": ChromaPipeline._pack_latents(latents, 1, c.in_channels // 4, spec["height"] // f, spec["width"] // f),
        "prompt_embeds": torch.randn(shape, generator=generator),
        "prompt_attention_mask": token_mask(spec["text_tokens"], spec["prompt_kept"])[None],
        "negative_prompt_embeds": torch.randn(shape, generator=generator),
        "negative_prompt_attention_mask": token_mask(spec["text_tokens"], spec["negative_kept"])[None],
    }


def call(pipe, spec, inputs, output_type, guidance_scale=None):
    guidance_scale = spec["guidance_scale"] if guidance_scale is None else guidance_scale
    with torch.no_grad():
        return pipe(prompt_embeds=inputs["prompt_embeds"], prompt_attention_mask=inputs["prompt_attention_mask"],
                    negative_prompt_embeds=inputs["negative_prompt_embeds"], negative_prompt_attention_mask=inputs["negative_prompt_attention_mask"],
                    height=spec["height"], width=spec["width"], num_inference_steps=spec["num_inference_steps"],
                    guidance_scale=guidance_scale, latents=inputs["latents_in"], output_type=output_type).images


def record_pipeline(pipe, spec, inputs):
    latents = call(pipe, spec, inputs, "latent")
    image = torch.from_numpy(call(pipe, spec, inputs, "np"))
    # guidance_scale 1 turns classifier-free guidance off: one call per step, on the prompt.
    without_cfg = call(pipe, spec, inputs, "latent", guidance_scale=1.0)
    return contiguous({**inputs, "latents_out": latents, "image_out": image, "latents_out_guidance_1": without_cfg,
                       "timesteps": pipe.scheduler.timesteps, "sigmas": pipe.scheduler.sigmas})


def enable_kwargs(options):
    order = options.get("taylorseer_order")
    calibrator = TaylorSeerCalibratorConfig(taylorseer_order=order) if order else None
    kwargs = dict(cache_config=DBCacheConfig(**options["config"]), calibrator_config=calibrator)
    if options.get("params_modifiers"):
        kwargs["params_modifiers"] = [ParamsModifier(cache_config=DBCacheConfig().reset(**m)) for m in options["params_modifiers"]]
    return kwargs


def cached_run(pipe, spec, inputs, options):
    """The pipeline call under cache-dit; returns (latents, one stats entry per cache context, double blocks first)."""
    cache_dit.enable_cache(pipe, **enable_kwargs(options))
    try:
        latents = call(pipe, spec, inputs, "latent", options.get("guidance_scale"))
        stats = cache_dit.summary(pipe, logging=False)
    finally:
        cache_dit.disable_cache(pipe)
    # cache-dit's summary lists each context, then repeats the first context's name for the
    # transformer: keep the first entry of each name.
    contexts = {}
    for s in stats:
        contexts.setdefault(s.cache_options["name"], s)
    # cache-dit names a context after its block list and the list's object id: the double blocks' first.
    names = sorted(contexts, key=lambda n: not n.startswith("transformer_blocks_"))
    assert len(names) == 2 and names[1].startswith("single_transformer_blocks_"), f"Chroma caches two block lists, cache-dit reported {names}"
    entries = []
    for name in names:
        s = contexts[name]
        sort = lambda d: {str(k): float(v) for k, v in sorted(d.items(), key=lambda kv: int(kv[0]))}  # noqa: E731
        entries.append({"name": name.rsplit("_", 1)[0], "cached_steps": sorted(int(k) for k in s.cached_steps), "residual_diffs": sort(s.residual_diffs),
                        "cfg_cached_steps": sorted(int(k) for k in s.cfg_cached_steps), "cfg_residual_diffs": sort(s.cfg_residual_diffs)})
    return latents, entries


def all_diffs(stats):
    return [d for e in stats for d in [*e["residual_diffs"].values(), *e["cfg_residual_diffs"].values()]]


def margin_of(stats, threshold):
    diffs = all_diffs(stats)
    return min(abs(d - threshold) / threshold for d in diffs) if diffs else float("inf")


def mixes(stats, steps):
    """Cached steps somewhere, and computed ones after the warmup (the first compared step) somewhere."""
    cached = computed = False
    for e in stats:
        for steps_cached, diffs in ((e["cached_steps"], e["residual_diffs"]), (e["cfg_cached_steps"], e["cfg_residual_diffs"])):
            if diffs:
                first = min(int(k) for k in diffs)
                cached = cached or bool(steps_cached)
                computed = computed or bool(set(range(first, steps)) - set(steps_cached))
    return cached and computed


def signature(stats):
    return [(e["cached_steps"], e["cfg_cached_steps"]) for e in stats]


def caps_bind(pipe, spec, inputs, options, stats):
    """A config with a cap on cached steps must cache other steps than the same config without it."""
    if not any(cap in options["config"] for cap in CAPS):
        return True
    uncapped = {**options, "config": {k: v for k, v in options["config"].items() if k not in CAPS}}
    return signature(cached_run(pipe, spec, inputs, uncapped)[1]) != signature(stats)


def named(options):
    c = options["config"]
    name = f"F{c['Fn_compute_blocks']}B{c['Bn_compute_blocks']}_W{c['max_warmup_steps']}"
    if "max_continuous_cached_steps" in c:
        name += f"_MC{c['max_continuous_cached_steps']}"
    if "max_cached_steps" in c:
        name += f"_M{c['max_cached_steps']}"
    name += f"_R{c['residual_diff_threshold']:.4g}"
    if options.get("taylorseer_order"):
        name += f"_TS{options['taylorseer_order']}"
    if options.get("params_modifiers"):
        name += "_PM"
    if options.get("guidance_scale") is not None:
        name += f"_G{options['guidance_scale']:g}"
    if c.get("enable_separate_cfg") is False:
        name += "_SEP0"
    if c.get("cfg_diff_compute_separate") is False:
        name += "_SHAREDDIFF"
    return name


def traced(pipe, spec, inputs, options, seen):
    """
    Picks a threshold for `options` that mixes cached and computed steps with a safe margin (under
    which its caps change the decisions, and whose steps differ from the traces before it), then
    records the run.
    """
    probe_options = {**options, "config": {**options["config"], "residual_diff_threshold": 1e-9}}
    diffs = sorted(all_diffs(cached_run(pipe, spec, inputs, probe_options)[1]))
    # Midpoints between the diffs of a run that caches nothing, then a 0.5% grid from 0.9x the least to 1.2x the greatest
    # (caching moves the later diffs, so a midpoint is no safer than a grid point), nearest the median first.
    median = diffs[len(diffs) // 2]
    midpoints = sorted({round((a + b) / 2, 4) for a, b in zip(diffs, diffs[1:])}, key=lambda r: abs(r - median))
    low, high = 0.9 * diffs[0], 1.2 * diffs[-1]
    grid = sorted({round(low * 1.005**i, 4) for i in range(int(1 + 200 * (high / low - 1)))}, key=lambda r: abs(r - median))
    candidates = midpoints + [r for r in grid if r not in midpoints]
    for threshold in candidates:
        opts = {**options, "config": {**options["config"], "residual_diff_threshold": threshold}}
        latents, stats = cached_run(pipe, spec, inputs, opts)
        margin = margin_of(stats, threshold)
        if margin >= MIN_MARGIN and mixes(stats, spec["num_inference_steps"]) and signature(stats) not in seen and caps_bind(pipe, spec, inputs, opts, stats):
            seen.append(signature(stats))
            return named(opts), latents, {**opts, "margin": margin, "stats": stats}
    raise RuntimeError(f"no threshold for {options} mixes cached and computed steps with a margin of {MIN_MARGIN}")


PLANS = [
    dict(config=dict(Fn_compute_blocks=1, Bn_compute_blocks=0, max_warmup_steps=2)),
    dict(config=dict(Fn_compute_blocks=2, Bn_compute_blocks=1, max_warmup_steps=3)),
    dict(config=dict(Fn_compute_blocks=1, Bn_compute_blocks=0, max_warmup_steps=2, max_continuous_cached_steps=2)),
    dict(config=dict(Fn_compute_blocks=1, Bn_compute_blocks=0, max_warmup_steps=2, max_cached_steps=3)),
    dict(config=dict(Fn_compute_blocks=1, Bn_compute_blocks=0, max_warmup_steps=3), taylorseer_order=1),
    dict(config=dict(Fn_compute_blocks=1, Bn_compute_blocks=1, max_warmup_steps=2), taylorseer_order=2),
    # Per context: the double blocks with Fn 2 and warmup 3, the single blocks with Bn 1.
    dict(config=dict(Fn_compute_blocks=1, Bn_compute_blocks=0, max_warmup_steps=2),
         params_modifiers=[dict(Fn_compute_blocks=2, max_warmup_steps=3), dict(Bn_compute_blocks=1)]),
    # The CFG branch reuses the non-CFG branch's diff of the step (cfg_diff_compute_separate False).
    dict(config=dict(Fn_compute_blocks=1, Bn_compute_blocks=1, max_warmup_steps=2, cfg_diff_compute_separate=False)),
    # Without CFG (guidance_scale 1): one call per step. Under separate CFG (the adapter's default)
    # cache-dit, told no branch by ChromaPipeline, pairs consecutive steps into one step of a non-CFG
    # and a CFG call; with enable_separate_cfg False it counts each call as a step of its own, which
    # is the truth the TypeScript pipeline announces whatever enable_separate_cfg says. CFG runs
    # without separate CFG get no trace: cache-dit then interleaves cond and uncond in one state.
    dict(config=dict(Fn_compute_blocks=1, Bn_compute_blocks=0, max_warmup_steps=2, enable_separate_cfg=False), guidance_scale=1.0),
    dict(config=dict(Fn_compute_blocks=2, Bn_compute_blocks=0, max_warmup_steps=1, enable_separate_cfg=False), taylorseer_order=1, guidance_scale=1.0),
    dict(config=dict(Fn_compute_blocks=1, Bn_compute_blocks=1, max_warmup_steps=2, enable_separate_cfg=False), guidance_scale=1.0),
]


def record_traces(pipe, spec, inputs):
    traces, tensors, seen = {}, {}, []
    for plan in PLANS:
        name, latents, entry = traced(pipe, spec, inputs, plan, seen)
        traces[name] = entry
        tensors[f"{name}.latents_out"] = latents
    return traces, tensors


def main(out_dir):
    out_dir = Path(out_dir)
    for index, (set_name, spec) in enumerate(SETS.items()):
        folder = out_dir / set_name
        pipe = build_pipeline(spec, seed=100 * index + 7)
        pipe.save_pretrained(folder)
        generator = torch.Generator().manual_seed(100 * index + 12)
        save_file(record_forward(pipe, spec, generator), folder / "transformer_forward.safetensors")
        inputs = pipeline_inputs(pipe, spec, generator)
        save_file(record_pipeline(pipe, spec, inputs), folder / "pipeline.safetensors")
        meta = {
            "height": spec["height"], "width": spec["width"], "num_inference_steps": spec["num_inference_steps"],
            "guidance_scale": spec["guidance_scale"], "text_tokens": spec["text_tokens"],
            "produced_by": {"torch": torch.__version__, "diffusers": diffusers.__version__, "cache_dit": cache_dit.__version__,
                            "script": "packages/adapter-chroma/tools/make_references.py", "attention_mask": "boolean key mask (see the script)"},
            "perturbation": PERTURBATION, "modulation_scale": MODULATION_SCALE,
        }
        if spec["cache_traces"]:
            traces, tensors = record_traces(pipe, spec, inputs)
            save_file(contiguous(tensors), folder / "cache_traces.safetensors")
            meta["min_margin"] = min(t["margin"] for t in traces.values())
            meta["cache_traces"] = traces
            print(set_name, {name: ([(e["cached_steps"], e["cfg_cached_steps"]) for e in t["stats"]], round(t["margin"], 3)) for name, t in traces.items()})
        (folder / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
