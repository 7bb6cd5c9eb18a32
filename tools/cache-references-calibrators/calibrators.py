"""Why: ditcache's `calibrator_type: foca` and `calibrator_type: dmd` must forecast as cache-dit's
FoCa and DMD calibrators do, in place of TaylorSeer: same cached steps, same latents. This runs
cache-dit's DBCache with FoCaCalibratorConfig / DMDCalibratorConfig on diffusers' float32
pipelines of the shared goldens (FLUX: testdata/goldens/flux-tiny, one context, no CFG branch,
an encoder stream that the encoder calibrator forecasts too; Wan: testdata/goldens/wan-tiny,
video, separate CFG branches) and records, per config, the steps each branch cached, cache-dit's
diffs and the final latents.

    /work/refvenv-cd/bin/python tools/cache-references-calibrators/calibrators.py testdata/goldens packages

writes packages/adapter-{flux,wan}/test/goldens/{set}/cache_traces_calibrators.{json,safetensors},
read by those packages' test/cache-calibrators.test.ts. Run by hand, never by CI or the tests.

A config with a threshold below 1 takes the first of its candidates that keeps every diff
cache-dit compares with it MIN_MARGIN (relative) away, caches some but not all of the compared
steps, and exercises the calibrator: for FoCa a run of consecutive cached steps (its recursive
forecast), for DMD a cached step forecast by the exponential fit (>= 4 evenly spaced snapshots)
whose SVD rank choice keeps every singular value ratio MIN_MARGIN away from the 1e-4 cutoff.
The script observes cache-dit's DMD (which path each forecast took, the singular values of each
fit) by wrapping its functions; it changes nothing they compute.
"""

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

import cache_dit
from cache_dit import DBCacheConfig, DMDCalibratorConfig, FoCaCalibratorConfig
from cache_dit.caching.cache_contexts.calibrators import dmd as dmd_module

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from golden_pipelines import flux, wan  # noqa: E402 (tools/golden_pipelines.py)

torch.set_num_threads(2)
MIN_MARGIN = 0.02
RANK_CUTOFF = 1e-4  # cache-dit's automatic DMD rank: singular values above 1e-4 of the largest


FLUX_CANDIDATES = [0.6, 0.65, 0.7, 0.75, 0.55, 0.5, 0.8]
WAN_CANDIDATES = [0.14, 0.13, 0.15, 0.12, 0.16, 0.135, 0.145, 0.125, 0.155, 0.165, 0.17, 0.18, 0.11, 0.1]

# (family, golden set, [(name, cache_config, calibrator_config, threshold candidates)]). A
# threshold of 1 caches every step the other rules allow without comparing diffs: long runs of
# cached steps (FoCa's damped horizon beyond 3 steps, DMD's far horizons). warmup_interval 2
# spaces DMD's snapshots 2 steps apart (fractional horizons on the steps between). No config
# takes dmd_svd_precision 'high': torch runs its gesvd driver on CUDA only, so on this CPU every
# fit of cache-dit's fails and each DMD forecast reuses the last computed step.
PLAN = [
    (flux, "flux-tiny", [
        ("foca_F1B0_W2", dict(Fn_compute_blocks=1, Bn_compute_blocks=0, max_warmup_steps=2),
         dict(calibrator_type="foca"), FLUX_CANDIDATES),
        ("foca_F2B1_W3_MC5_hidden_states", dict(Fn_compute_blocks=2, Bn_compute_blocks=1, max_warmup_steps=3, max_continuous_cached_steps=5),
         dict(calibrator_type="foca", calibrator_cache_type="hidden_states", enable_encoder_calibrator=False), [1.0]),
        ("dmd_F1B0_W5", dict(Fn_compute_blocks=1, Bn_compute_blocks=0, max_warmup_steps=5),
         dict(calibrator_type="dmd"), FLUX_CANDIDATES),
        ("dmd_F1B0_W8I2_MC3", dict(Fn_compute_blocks=1, Bn_compute_blocks=0, max_warmup_steps=8, warmup_interval=2, max_continuous_cached_steps=3),
         dict(calibrator_type="dmd"), [1.0]),
        ("dmd_F1B1_W6_H4_rank2", dict(Fn_compute_blocks=1, Bn_compute_blocks=1, max_warmup_steps=6),
         dict(calibrator_type="dmd", dmd_history=4, dmd_rank=2), FLUX_CANDIDATES),
        ("dmd_F1B0_W5_low", dict(Fn_compute_blocks=1, Bn_compute_blocks=0, max_warmup_steps=5, max_continuous_cached_steps=4),
         dict(calibrator_type="dmd", dmd_svd_precision="low", dmd_ridge=1e-6), [1.0]),
    ]),
    (wan, "wan-tiny", [
        ("foca_F1B0_W2", dict(Fn_compute_blocks=1, Bn_compute_blocks=0, max_warmup_steps=2, enable_separate_cfg=True),
         dict(calibrator_type="foca"), WAN_CANDIDATES),
        ("foca_F1B1_W3_MC6", dict(Fn_compute_blocks=1, Bn_compute_blocks=1, max_warmup_steps=3, max_continuous_cached_steps=6, enable_separate_cfg=True),
         dict(calibrator_type="foca"), [1.0]),
        ("dmd_F1B0_W5", dict(Fn_compute_blocks=1, Bn_compute_blocks=0, max_warmup_steps=5, enable_separate_cfg=True),
         dict(calibrator_type="dmd"), WAN_CANDIDATES),
        ("dmd_F1B0_W6I2_MC2_H5", dict(Fn_compute_blocks=1, Bn_compute_blocks=0, max_warmup_steps=6, warmup_interval=2, max_continuous_cached_steps=2,
                                      enable_separate_cfg=True),
         dict(calibrator_type="dmd", dmd_history=5), [1.0]),
    ]),
]


class DmdObserver:
    """Records, for each DMD forecast, the path it took, and the singular values of each fit."""

    def __init__(self):
        self.paths = []
        self.singular_ratios = []
        approximate, svd, evaluate = dmd_module.DMDState.approximate, dmd_module._dmd_svd, dmd_module._dmd_eval
        observer = self
        evaluated = []

        def observed_approximate(state):
            vels, _ = state._uniform_tail()
            evaluated.clear()
            out = approximate(state)
            if len(vels) < 4:
                observer.paths.append("taylor")
            else:
                # Without an evaluation (a degenerate fit) or with a non-finite one, cache-dit reuses the last snapshot.
                observer.paths.append("dmd" if evaluated and evaluated[0] else "reuse")
            return out

        def observed_eval(fit, k):
            out = evaluate(fit, k)
            evaluated.append(out is not None)
            return out

        def observed_svd(X, precision):
            U, S, Vh = svd(X, precision)
            observer.singular_ratios.append((S / S[0]).tolist())
            return U, S, Vh

        def restore():
            dmd_module.DMDState.approximate, dmd_module._dmd_svd, dmd_module._dmd_eval = approximate, svd, evaluate

        self.restore = restore
        dmd_module.DMDState.approximate = observed_approximate
        dmd_module._dmd_svd = observed_svd
        dmd_module._dmd_eval = observed_eval


def cached_run(pipe, call, output, cache, calibrator):
    config = (FoCaCalibratorConfig if calibrator["calibrator_type"] == "foca" else DMDCalibratorConfig)(**calibrator)
    observer = DmdObserver()
    cache_dit.enable_cache(pipe, cache_config=DBCacheConfig(**cache), calibrator_config=config)
    try:
        with torch.inference_mode():
            latents = output(pipe(**call))
        stats = cache_dit.summary(pipe, logging=False)
    finally:
        cache_dit.disable_cache(pipe)
        observer.restore()
    s = stats[0]
    # cache-dit records -1 for a step a threshold >= 1 caches without comparing (and -0 / -2 for a
    # threshold of 0 / a shape change): only the diffs it measured are kept.
    measured = lambda diffs: {str(k): float(v) for k, v in (diffs or {}).items() if v >= 0}
    branches = {"non_cfg": (sorted(s.cached_steps), measured(s.residual_diffs)), "cfg": (sorted(s.cfg_cached_steps or []), measured(s.cfg_residual_diffs))}
    return latents, branches, observer


def rank_margin(observer):
    """How close any singular value ratio of any fit came to the automatic rank's cutoff (relative)."""
    ratios = [r for fit in observer.singular_ratios for r in fit[1:]]
    return min((abs(r / RANK_CUTOFF - 1) for r in ratios), default=float("inf"))


def acceptable(branches, threshold, calibrator, observer):
    if calibrator["calibrator_type"] == "dmd":
        if "dmd" not in observer.paths:
            return False
        if calibrator.get("dmd_rank", 0) == 0 and rank_margin(observer) < MIN_MARGIN:
            return False
    else:
        if not any(any(b - a == 1 for a, b in zip(cached, cached[1:])) for cached, _ in branches.values()):
            return False
    if threshold >= 1:
        return True
    for cached, diffs in branches.values():
        if not diffs:
            continue
        if any(abs(d - threshold) / threshold < MIN_MARGIN for d in diffs.values()):
            return False
        if not (0 < len(cached) < len(diffs)):
            return False
    return True


def main(goldens_root, packages, only=None):
    for family, name, runs in PLAN:
        if only and name != only:
            continue
        pipe, call, _, output = family(Path(goldens_root) / name)
        traces, tensors = {}, {}
        for key, cache, calibrator, candidates in runs:
            for threshold in candidates:
                cache = dict(cache, residual_diff_threshold=threshold)
                latents, branches, observer = cached_run(pipe, call, output, cache, calibrator)
                if acceptable(branches, threshold, calibrator, observer):
                    break
                print(name, key, "threshold", threshold, "rejected", {b: c for b, (c, _) in branches.items()},
                      min((abs(d - threshold) / threshold for _, diffs in branches.values() for d in diffs.values()), default=None), observer.paths)
            else:
                sys.exit(f"{name} {key}: no threshold among {candidates} is acceptable")
            trace = dict(cache_config=cache, calibrator_config=dict(calibrator, enable_calibrator=True),
                         cached_steps={b: c for b, (c, _) in branches.items()}, residual_diffs={b: d for b, (_, d) in branches.items()})
            if calibrator["calibrator_type"] == "dmd":
                trace["dmd_forecasts"] = {path: observer.paths.count(path) for path in ("dmd", "taylor", "reuse")}
                if calibrator.get("dmd_rank", 0) == 0:
                    trace["dmd_rank_margin"] = round(rank_margin(observer), 4)
            traces[key] = trace
            tensors[f"{key}.latents_out"] = latents.contiguous()
            print(name, key, "threshold", threshold, {b: c for b, (c, _) in branches.items()}, trace.get("dmd_forecasts", ""))
        package = "adapter-flux" if family is flux else "adapter-wan"
        out = Path(packages) / package / "test" / "goldens" / name
        out.mkdir(parents=True, exist_ok=True)
        meta = dict(cache_dit_version=getattr(cache_dit, "__version__", "unknown"), torch_version=torch.__version__, traces=traces)
        (out / "cache_traces_calibrators.json").write_text(json.dumps(meta, indent=1) + "\n")
        save_file(tensors, str(out / "cache_traces_calibrators.safetensors"))


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit("usage: calibrators.py GOLDENS_ROOT PACKAGES_ROOT [GOLDEN_SET]")
    main(*sys.argv[1:4])
