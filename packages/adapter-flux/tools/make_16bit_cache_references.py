"""Makes the bfloat16 cache references of @ditcache/adapter-flux (test/goldens/{set}/cache_traces_bf16.*):
cache-dit's DBCache (and TaylorSeer) on diffusers' FluxPipeline loaded with torch_dtype=torch.bfloat16,
on the shared FLUX goldens (testdata/goldens/flux-tiny and flux-tiny-guidance), for the cache configs of
the float32 traces there. test/cache-16bit.test.ts runs our cached FluxPipeline in bfloat16 on the same
configs and compares the steps it caches, the residual diffs and the final latents with these.

Not run by CI and never by the tests: the tests read only what this wrote. Run it by hand in a throwaway
venv with torch, diffusers and cache-dit (from the repository root):

    /work/shared/tools/reference-venv.sh /tmp/cdvenv DIFFUSERS_GIT_DIR CACHE_DIT_GIT_DIR
    /tmp/cdvenv/bin/python packages/adapter-flux/tools/make_16bit_cache_references.py testdata/goldens \
        packages/adapter-flux/test/goldens "$(git --git-dir=CACHE_DIT_GIT_DIR rev-parse HEAD)"

(the third argument, cache-dit's commit, only goes into the metadata: a venv built from an archive
does not know its own version). Everything is deterministic (inputs from the goldens, weights from
their folders, one thread), so a rerun on the same torch, diffusers and cache-dit writes the same data.
test/goldens/README.md describes every file.

Thresholds. cache-dit computes a bf16 run's residual diff in bf16 (`(t1 - t2).abs().mean() /
t1.abs().mean()`, each mean and the ratio rounded to bfloat16, so recorded diffs are multiples of
2^-9 near 0.5), and bf16 rounding moves the diffs themselves by several percent from float32's. So a
float32 trace's threshold may sit right on a bf16 diff. Each config keeps its float32 trace's
threshold when every diff cache-dit records in bf16 stays at least MIN_MARGIN (relative) from it, the
run mixes cached and computed steps as the float32 one did, its caps still bind, and it caches other
steps than the configs of the same base recorded before it. If not, the threshold moves to the
nearest midpoint between two diffs (of a run that caches nothing) under which all that holds and
the run mixes; the config's name gives the threshold it has, `float32_trace` the one it came from.
"""

import json
import os
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

import cache_dit
import diffusers
from cache_dit import DBCacheConfig, TaylorSeerCalibratorConfig
from cache_dit.caching.cache_contexts import CachedContextManager
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

torch.set_num_threads(1)

SETS = ["flux-tiny", "flux-tiny-guidance"]
DTYPE = torch.bfloat16
TAG = "bf16"
# How far (relative) every diff cache-dit records must stay from the threshold. The test asserts
# equal decisions wherever cache-dit's diff is farther than 1% from it; 2% keeps every step of
# every trace under that assertion, with room for both sides' bf16 rounding.
MIN_MARGIN = 0.02
CAPS = ("max_cached_steps", "max_continuous_cached_steps")

# The float64 diff of the very bf16 tensors cache-dit compares, keyed by its step: what an engine
# that reduces in float32 or wider computes from the same residuals (ours does). cache-dit's own
# recorded diff is that value after four bf16 roundings.
_float64_diffs = {}
_similarity = CachedContextManager.similarity


def _recording_similarity(self, t1, t2, *, threshold, parallelized=False, prefix="Fn"):
    if 0.0 < threshold < 1.0 and t1.shape == t2.shape:
        a, b = t1.double(), t2.double()
        _float64_diffs[str(self.get_current_step())] = ((a - b).abs().mean() / a.abs().mean()).item()
    return _similarity(self, t1, t2, threshold=threshold, parallelized=parallelized, prefix=prefix)


CachedContextManager.similarity = _recording_similarity


def build_pipeline(goldens):
    """FluxPipeline in bf16, text encoders skipped, as tools/make_16bit_references.py builds it."""
    return FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler.from_pretrained(str(goldens / "scheduler")),
        vae=AutoencoderKL.from_pretrained(str(goldens / "vae"), torch_dtype=DTYPE),
        text_encoder=None,
        tokenizer=None,
        text_encoder_2=None,
        tokenizer_2=None,
        transformer=FluxTransformer2DModel.from_pretrained(str(goldens / "transformer"), torch_dtype=DTYPE),
    )


def call_args(goldens, meta):
    golden = load_file(str(goldens / "pipeline.safetensors"))
    # The embeddings and noise as a bf16 pipeline's own encoders and generator would give them.
    return dict(
        prompt_embeds=golden["prompt_embeds"].to(DTYPE),
        pooled_prompt_embeds=golden["pooled_prompt_embeds"].to(DTYPE),
        latents=golden["latents_in"].to(DTYPE),
        height=meta["height"],
        width=meta["width"],
        num_inference_steps=meta["num_inference_steps"],
        guidance_scale=meta["guidance_scale"],
        output_type="latent",
    )


def cached_run(pipe, call, config, taylorseer_order):
    """One pipeline call under cache-dit; returns (latents, stats of the one cached chain)."""
    calibrator = TaylorSeerCalibratorConfig(taylorseer_order=taylorseer_order) if taylorseer_order else None
    _float64_diffs.clear()
    cache_dit.enable_cache(pipe, cache_config=DBCacheConfig(**config), calibrator_config=calibrator)
    try:
        with torch.inference_mode():
            latents = pipe(**call).images
        stats = cache_dit.summary(pipe, logging=False)
    finally:
        cache_dit.disable_cache(pipe)
    # cache-dit's summary of a pipeline lists the one cached chain once per object that holds it.
    contexts = {s.cache_options["name"]: s for s in stats}
    assert len(contexts) == 1, f"FLUX caches one chain (double + single blocks), cache-dit reported {list(contexts)}"
    s = next(iter(contexts.values()))
    assert not s.cfg_cached_steps and not s.cfg_residual_diffs, "FLUX has no separate CFG branch"
    diffs = {str(k): float(v) for k, v in sorted(s.residual_diffs.items(), key=lambda kv: int(kv[0]))}
    assert set(diffs) == set(_float64_diffs), f"float64 diffs recorded at steps {sorted(_float64_diffs)}, cache-dit's at {sorted(diffs)}"
    return latents.contiguous(), {
        "cached_steps": sorted(int(k) for k in s.cached_steps),
        "residual_diffs": diffs,
        "residual_diffs_float64": {k: _float64_diffs[k] for k in diffs},
    }


def margin_of(stats, threshold):
    diffs = list(stats["residual_diffs"].values())
    return min(abs(d - threshold) / threshold for d in diffs) if diffs else float("inf")


def mixes(stats):
    """Both cached and computed steps among those compared with the threshold."""
    compared = {int(k) for k in stats["residual_diffs"]}
    cached = set(stats["cached_steps"])
    return bool(cached) and bool(compared - cached)


def caps_bind(pipe, call, config, stats, taylorseer_order):
    """A config with a cap on cached steps must cache other steps than the same config without it."""
    if not any(cap in config for cap in CAPS):
        return True
    _, uncapped = cached_run(pipe, call, {k: v for k, v in config.items() if k not in CAPS}, taylorseer_order)
    return uncapped["cached_steps"] != stats["cached_steps"]


def named(config, taylorseer_order):
    name = f"F{config['Fn_compute_blocks']}B{config['Bn_compute_blocks']}_W{config['max_warmup_steps']}"
    if "max_continuous_cached_steps" in config:
        name += f"_MC{config['max_continuous_cached_steps']}"
    if "max_cached_steps" in config:
        name += f"_M{config['max_cached_steps']}"
    name += f"_R{config['residual_diff_threshold']:.4g}"
    if taylorseer_order:
        name += f"_TS{taylorseer_order}"
    return name


def traced(pipe, call, float32_name, float32_trace, taken):
    """
    The float32 trace's config in bf16, its threshold moved only where a bf16 diff comes too close
    (or where the run would cache the same steps as a config of the same base already recorded,
    `taken`: a set of (base, cached steps) that this extends).
    """
    config, order = dict(float32_trace["config"]), float32_trace["taylorseer_order"]
    base = {k: v for k, v in config.items() if k != "residual_diff_threshold"}
    key = json.dumps([base, order], sort_keys=True)

    def acceptable(threshold, wanted_mix):
        cfg = {**base, "residual_diff_threshold": threshold}
        latents, stats = cached_run(pipe, call, cfg, order)
        margin = margin_of(stats, threshold)
        ok = (margin >= MIN_MARGIN and mixes(stats) == wanted_mix and (key, tuple(stats["cached_steps"])) not in taken
              and caps_bind(pipe, call, cfg, stats, order))
        return ok, cfg, latents, stats, margin

    original = config["residual_diff_threshold"]
    ok, cfg, latents, stats, margin = acceptable(original, mixes(float32_trace["stats"][0]))
    if not ok:
        _, probe = cached_run(pipe, call, {**base, "residual_diff_threshold": 1e-9}, order)
        diffs = sorted(probe["residual_diffs"].values())
        # Midpoints between the diffs of a run that caches nothing, nearest the float32 threshold
        # first; the new threshold must mix cached and computed steps.
        candidates = sorted({round((a + b) / 2, 4) for a, b in zip(diffs, diffs[1:]) if b > a}, key=lambda r: abs(r - original))
        for threshold in candidates:
            ok, cfg, latents, stats, margin = acceptable(threshold, True)
            if ok:
                break
        else:
            raise RuntimeError(f"{float32_name}: no bf16 threshold mixes cached and computed steps with a margin of {MIN_MARGIN}")
    taken.add((key, tuple(stats["cached_steps"])))
    return named(cfg, order), latents, {
        "config": cfg,
        "taylorseer_order": order,
        "float32_trace": float32_name,
        "margin": margin,
        "mix_ok": mixes(stats),
        "stats": [stats],
    }


def relative_l2(a, b):
    a, b = a.double(), b.double()
    return ((a - b).norm() / b.norm()).item()


def save(tensors, path):
    save_file(tensors, str(path))
    os.chmod(path, 0o644)  # save_file leaves the file private


def main(goldens_root, out_root, cache_dit_commit=None):
    goldens_root, out_root = Path(goldens_root), Path(out_root)
    for name in SETS:
        goldens = goldens_root / name
        meta = json.loads((goldens / "meta.json").read_text())
        pipe = build_pipeline(goldens)
        call = call_args(goldens, meta)
        with torch.inference_mode():
            plain = pipe(**call).images
        traces, tensors, taken = {}, {}, set()
        for float32_name, float32_trace in meta["cache_traces"].items():
            trace_name, latents, entry = traced(pipe, call, float32_name, float32_trace, taken)
            entry["latents_out_relative_l2_vs_no_cache"] = relative_l2(latents, plain)
            traces[trace_name] = entry
            tensors[f"{trace_name}.latents_out"] = latents
            s = entry["stats"][0]
            print(f"{name} {trace_name} (from {float32_name}): cached {s['cached_steps']}, margin {entry['margin']:.3f}")
        target = out_root / name
        target.mkdir(parents=True, exist_ok=True)
        save(tensors, target / f"cache_traces_{TAG}.safetensors")
        summary = {
            "source": f"testdata/goldens/{name} (weights, inputs and the float32 traces' configs)",
            "dtype": str(DTYPE).removeprefix("torch."),
            "diffusers_version": diffusers.__version__,
            "cache_dit_commit": cache_dit_commit,
            "torch_version": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "min_margin": MIN_MARGIN,
            "pipeline": {k: meta[k] for k in ("height", "width", "num_inference_steps", "guidance_scale")},
            "cache_traces": traces,
        }
        (target / f"cache_traces_{TAG}.json").write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit("usage: make_16bit_cache_references.py GOLDENS_ROOT OUT_ROOT [CACHE_DIT_COMMIT]")
    main(*sys.argv[1:4])
