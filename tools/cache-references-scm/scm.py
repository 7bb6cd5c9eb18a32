"""Why: ditcache's `scm` cache policy must decide as cache-dit 1.5's steps computation masks do
(its presets, 'dynamic' and 'static') and give the same latents. This runs cache-dit's DBCache
with `steps_computation_mask=steps_mask(total_steps, mask_policy)` on diffusers' float32
pipelines of the shared goldens (FLUX: testdata/goldens/flux-tiny, one context, no CFG branch;
Wan: testdata/goldens/wan-tiny, video, separate CFG branches) and records, per config, the mask,
the steps each context and branch cached, cache-dit's diffs and the final latents.

    /work/refvenv-cd/bin/python tools/cache-references-scm/scm.py testdata/goldens packages

writes packages/adapter-{flux,wan}/test/goldens/{set}/cache_traces_scm.{json,safetensors}, read
by those packages' test/cache-scm.test.ts. Run by hand, never by CI or the tests.

A 'dynamic' config's threshold is picked among CANDIDATES so that every diff cache-dit compares
with it stays MIN_MARGIN (relative) away, and so that it caches some but not all of the mask's
0 steps: otherwise float rounding, or a rule that ignores the diff, could pass unnoticed.
"""

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

import cache_dit
from cache_dit import DBCacheConfig, TaylorSeerCalibratorConfig, steps_mask

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from golden_pipelines import flux, wan  # noqa: E402 (tools/golden_pipelines.py)

torch.set_num_threads(2)
MIN_MARGIN = 0.02
CANDIDATES = [0.1, 0.12, 0.14, 0.16, 0.2, 0.3, 0.4, 0.45, 0.55, 0.6, 0.7]


# (family, golden set, base config, [(preset, policy, taylorseer order)]): every preset, both
# policies on each family, TaylorSeer once each; Wan separates its CFG branches.
PLAN = [
    (flux, "flux-tiny", dict(Fn_compute_blocks=1, Bn_compute_blocks=0),
     [("slow", "static", None), ("medium", "dynamic", None), ("fast", "static", 2), ("ultra", "dynamic", None)]),
    (wan, "wan-tiny", dict(Fn_compute_blocks=1, Bn_compute_blocks=0, enable_separate_cfg=True),
     [("slow", "dynamic", None), ("medium", "static", 1), ("fast", "dynamic", None), ("ultra", "static", None)]),
]


def cached_run(pipe, call, output, config, order):
    calibrator = TaylorSeerCalibratorConfig(taylorseer_order=order) if order else None
    cache_dit.enable_cache(pipe, cache_config=DBCacheConfig(**config), calibrator_config=calibrator)
    try:
        with torch.inference_mode():
            latents = output(pipe(**call))
        stats = cache_dit.summary(pipe, logging=False)
    finally:
        cache_dit.disable_cache(pipe)
    s = stats[0]
    branches = {"non_cfg": (sorted(s.cached_steps), {str(k): float(v) for k, v in s.residual_diffs.items()}),
                "cfg": (sorted(s.cfg_cached_steps or []), {str(k): float(v) for k, v in (s.cfg_residual_diffs or {}).items()})}
    return latents, branches


def acceptable(mask, branches, threshold):
    zeros = {i for i, m in enumerate(mask) if m == 0}
    for cached, diffs in branches.values():
        if not diffs:
            continue
        if any(abs(d - threshold) / threshold < MIN_MARGIN for d in diffs.values()):
            return False
        if not (0 < len(set(cached) & zeros) < len(zeros)):
            return False
    return True


def main(goldens_root, packages):
    for family, name, base, runs in PLAN:
        pipe, call, steps, output = family(Path(goldens_root) / name)
        traces, tensors = {}, {}
        for preset, policy, order in runs:
            mask = steps_mask(total_steps=steps, mask_policy=preset)
            config = dict(base, steps_computation_mask=mask, steps_computation_policy=policy)
            for threshold in (CANDIDATES if policy == "dynamic" else [0.08]):
                config["residual_diff_threshold"] = threshold
                latents, branches = cached_run(pipe, call, output, config, order)
                if policy == "static" or acceptable(mask, branches, threshold):
                    break
            else:
                sys.exit(f"{name} {preset} {policy}: no threshold among {CANDIDATES} keeps every diff {MIN_MARGIN:.0%} away")
            key = f"{preset}_{policy}" + (f"_TS{order}" if order else "")
            settings = {k: v for k, v in config.items() if k != "steps_computation_mask"}
            traces[key] = dict(config=dict(settings, mask_policy=preset), taylorseer_order=order, mask="".join(map(str, mask)),
                               cached_steps={b: c for b, (c, _) in branches.items()}, residual_diffs={b: d for b, (_, d) in branches.items()})
            tensors[f"{key}.latents_out"] = latents.contiguous()
            print(name, key, "threshold", config["residual_diff_threshold"], {b: c for b, (c, _) in branches.items()})
        package = "adapter-flux" if family is flux else "adapter-wan"
        out = Path(packages) / package / "test" / "goldens" / name
        out.mkdir(parents=True, exist_ok=True)
        meta = dict(cache_dit_version=getattr(cache_dit, "__version__", "unknown"), torch_version=torch.__version__,
                    num_inference_steps=steps, traces=traces)
        (out / "cache_traces_scm.json").write_text(json.dumps(meta, indent=1) + "\n")
        save_file(tensors, str(out / "cache_traces_scm.safetensors"))


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit("usage: scm.py GOLDENS_ROOT PACKAGES_ROOT")
    main(*sys.argv[1:3])
