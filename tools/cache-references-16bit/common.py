"""Why: every family's bfloat16 cache references (cache_traces_bf16.*) are made the same way, and
the criterion they serve ("cached steps equal cache-dit's bf16 run wherever the diff is farther than
1% from the threshold") is only checkable if every family picks its thresholds and records its
diffs by the same rules. This module holds those rules; flux.py, wan.py, hidream.py and sd3.py only
say how to load their pipeline, call it and name its cached block lists. README.md says how to run
them.

What it does, for each float32 cache trace of a family's goldens: runs cache-dit's DBCache (and
TaylorSeer, and for Wan its ParamsModifiers) on the diffusers pipeline loaded with
torch_dtype=torch.bfloat16, and records per cached block list ("context") and CFG branch the steps
cache-dit cached, the diffs it recorded, the float64 diff of the very bf16 tensors it compared, and
the final latents.

Thresholds. cache-dit computes a bf16 run's residual diff in bf16 (`(t1 - t2).abs().mean() /
t1.abs().mean()`, each mean and the ratio rounded to bfloat16, so recorded diffs are multiples of
2^-9 near 0.5), and bf16 rounding moves the diffs themselves by several percent from float32's. So a
float32 trace's threshold may sit right on a bf16 diff. Each config keeps its float32 trace's
thresholds when every diff cache-dit records in bf16, and the float64 diff of the same residuals,
stays at least MIN_MARGIN (relative) from the threshold of its context, every context and branch
mixes cached and computed steps as it did in float32, its caps still bind, and it caches other
steps than the configs of the same base recorded before it. If not, the thresholds that fail move
(the base one, and each ParamsModifier's own, each on its own), first to midpoints between two
diffs of a run that caches nothing, then over a 0.5% grid, nearest the float32 ones first, until
all that holds and every context and branch mixes; the config's name gives the base threshold it
has, `float32_trace` the trace it came from. (FLUX's references, made first, came out of the
midpoints; the grid is what Wan's and SD3's dense diffs need.)

For every family but FLUX it also records how far cache-dit's own cached run carries a change of
its initial latents by about one bf16 unit (sensitivity()): the tests bound our final latents and
diffs by it, since an implementation that does not round bit for bit as PyTorch does differs from
cache-dit by about that much anyway.
"""

import json
import os
from pathlib import Path

import torch
from safetensors.torch import save_file

import cache_dit
import diffusers
from cache_dit import DBCacheConfig, ParamsModifier, TaylorSeerCalibratorConfig
from cache_dit.caching.cache_contexts import CachedContextManager

torch.set_num_threads(1)

DTYPE = torch.bfloat16
TAG = "bf16"
# How far (relative) every diff must stay from its threshold. The tests assert equal decisions
# wherever cache-dit's diff is farther than 1% from it; 2% keeps every step of every trace under
# that assertion, with room for both sides' bf16 rounding.
MIN_MARGIN = 0.02
CAPS = ("max_cached_steps", "max_continuous_cached_steps")
# How many threshold combinations to try for a config before giving up.
MAX_TRIES = 400
# The float32 trace's keys, besides config and stats, that say how cache-dit was enabled.
OPTION_KEYS = ("taylorseer_order", "enable_encoder_calibrator", "params_modifiers")
# The latents tests of the multi-context families bound our cached latents' distance from cache-dit's
# by the run's sensitivity to its inputs (see sensitivity()), measured with initial latents moved by
# this relative noise: the mean over the first SENSITIVITY_RUNS of these seeds whose perturbed run
# caches the same steps.
PERTURBATION = 4e-3
SENSITIVITY_SEEDS = range(1, 13)
SENSITIVITY_RUNS = 3

# The float64 diff of the very bf16 tensors cache-dit compares, per (context name, branch) and
# step: what an engine that reduces in float32 or wider computes from the same residuals (ours
# does). cache-dit's own recorded diff is that value after four bf16 roundings. Where the CFG
# branch reuses the non-CFG branch's diff (cfg_diff_compute_separate=False), it reuses its float64
# diff too.
_float64_diffs = {}
_similarity = CachedContextManager.similarity


def _recording_similarity(self, t1, t2, *, threshold, parallelized=False, prefix="Fn"):
    if 0.0 < threshold < 1.0 and t1.shape == t2.shape:
        assert self.get_important_condition_threshold() <= 0.0, "the diff over important tokens only is not recorded"
        name = self.current_context.name
        cfg = self.enable_separate_cfg() and self.is_separate_cfg_step()
        step = str(self.get_current_step())
        if cfg and not self.cfg_diff_compute_separate() and self.get_current_step_residual_diff() is not None:
            value = _float64_diffs[(name, "non_cfg")][step]
        else:
            a, b = t1.double(), t2.double()
            value = ((a - b).abs().mean() / a.abs().mean()).item()
        _float64_diffs.setdefault((name, "cfg" if cfg else "non_cfg"), {})[step] = value
    return _similarity(self, t1, t2, threshold=threshold, parallelized=parallelized, prefix=prefix)


CachedContextManager.similarity = _recording_similarity


def enable_kwargs(options):
    """cache_dit.enable_cache's arguments for a trace's config and options."""
    order = options.get("taylorseer_order")
    calibrator = None
    if order:
        extra = {} if options.get("enable_encoder_calibrator") is None else {"enable_encoder_calibrator": options["enable_encoder_calibrator"]}
        calibrator = TaylorSeerCalibratorConfig(taylorseer_order=order, **extra)
    kwargs = dict(cache_config=DBCacheConfig(**options["config"]), calibrator_config=calibrator)
    if options.get("params_modifiers"):
        kwargs["params_modifiers"] = [ParamsModifier(cache_config=DBCacheConfig().reset(**m)) for m in options["params_modifiers"]]
    return kwargs


def _sorted_diffs(diffs):
    return {str(k): float(v) for k, v in sorted(diffs.items(), key=lambda kv: int(kv[0]))}


def cached_run(family, pipe, call, options):
    """One pipeline call under cache-dit; returns (latents, one stats entry per context, in the family's order)."""
    _float64_diffs.clear()
    cache_dit.enable_cache(pipe, **enable_kwargs(options))
    try:
        with torch.inference_mode():
            latents = family.run(pipe, call)
        stats = cache_dit.summary(pipe, logging=False)
        sources = family.sources(pipe)
    finally:
        cache_dit.disable_cache(pipe)
    # cache-dit's summary of a pipeline lists each block list's context, then one entry per
    # transformer that repeats the name of its first context with the stats of its last: keep the
    # first entry of each name.
    contexts = {}
    for s in stats:
        contexts.setdefault(s.cache_options["name"], s)
    assert set(contexts) == {name for _, name in sources}, f"{family.NAME}: cache-dit reported contexts {list(contexts)}, expected {sources}"
    recorded = {key[0] for key in _float64_diffs}
    assert recorded <= set(contexts), f"float64 diffs recorded in contexts {recorded}, cache-dit's are {list(contexts)}"
    entries = []
    for source, name in sources:
        s = contexts[name]
        branches = {}
        for branch, steps, diffs in (("non_cfg", s.cached_steps, s.residual_diffs), ("cfg", s.cfg_cached_steps, s.cfg_residual_diffs)):
            diffs = _sorted_diffs(diffs)
            exact = _float64_diffs.get((name, branch), {})
            assert set(diffs) == set(exact), f"{source} {branch}: float64 diffs recorded at steps {sorted(exact)}, cache-dit's at {sorted(diffs)}"
            branches[branch] = (sorted(int(k) for k in steps), diffs, {k: exact[k] for k in diffs})
        if not family.SEPARATE_CFG:
            assert not branches["cfg"][0] and not branches["cfg"][1], f"{family.NAME} has no separate CFG branch"
        cached, diffs, exact = branches["non_cfg"]
        if family.COMPACT_STATS:
            entry = {"cached_steps": cached, "residual_diffs": diffs, "residual_diffs_float64": exact}
        else:
            cfg_cached, cfg_diffs, cfg_exact = branches["cfg"]
            entry = {
                "source": source,
                "executed_steps": s.accumulated_executed_steps,
                "cached_steps": cached,
                "residual_diffs": diffs,
                "residual_diffs_float64": exact,
                "cfg_cached_steps": cfg_cached,
                "cfg_residual_diffs": cfg_diffs,
                "cfg_residual_diffs_float64": cfg_exact,
            }
        entries.append(entry)
    return latents.contiguous(), entries


def branches_of(family, entry):
    """(cached steps, cache-dit's diffs, float64 diffs or None) of each CFG branch the family has, of one stats entry."""
    out = [(entry["cached_steps"], entry["residual_diffs"], entry.get("residual_diffs_float64"))]
    if family.SEPARATE_CFG:
        out.append((entry["cfg_cached_steps"], entry["cfg_residual_diffs"], entry.get("cfg_residual_diffs_float64")))
    return out


def slots_of(options, contexts):
    """Which threshold each context compares with: 'base', or the index of its ParamsModifier that sets one."""
    mods = options.get("params_modifiers") or []
    return [i if i < len(mods) and "residual_diff_threshold" in mods[i] else "base" for i in range(contexts)]


def thresholds_of(options):
    """slot -> threshold, the base one first."""
    out = {"base": options["config"].get("residual_diff_threshold", DBCacheConfig().residual_diff_threshold)}
    for i, m in enumerate(options.get("params_modifiers") or []):
        if "residual_diff_threshold" in m:
            out[i] = m["residual_diff_threshold"]
    return out


def with_thresholds(options, thresholds):
    base = {k: v for k, v in options["config"].items() if k != "residual_diff_threshold"}
    # A config that leaves the threshold at cache-dit's default keeps leaving it there.
    unset = "residual_diff_threshold" not in options["config"] and thresholds["base"] == DBCacheConfig().residual_diff_threshold
    out = {**options, "config": base if unset else {**base, "residual_diff_threshold": thresholds["base"]}}
    if options.get("params_modifiers"):
        out["params_modifiers"] = [{**m, "residual_diff_threshold": thresholds[i]} if i in thresholds else m for i, m in enumerate(options["params_modifiers"])]
    return out


def context_margin(family, threshold, entry, key):
    """min |diff - threshold| / threshold over the diffs of one context (`key`: 'bf16', cache-dit's, or 'float64')."""
    diffs = [d for _, bf16, exact in branches_of(family, entry) for d in (bf16 if key == "bf16" else exact).values()]
    return min(abs(d - threshold) / threshold for d in diffs) if diffs else float("inf")


def margin_of(family, options, stats, key):
    """The smallest context_margin over every context, each against its own threshold."""
    thresholds = thresholds_of(options)
    return min([context_margin(family, thresholds[slot], entry, key) for slot, entry in zip(slots_of(options, len(stats)), stats)], default=float("inf"))


def mixes_of(family, stats):
    """Per context and branch: both cached and computed steps among those compared with the threshold."""
    out = []
    for entry in stats:
        for cached, diffs, _ in branches_of(family, entry):
            compared = {int(k) for k in diffs}
            out.append(bool(set(cached)) and bool(compared - set(cached)))
    return tuple(out)


def signature(family, stats):
    return tuple(tuple(cached) for entry in stats for cached, _, _ in branches_of(family, entry))


def without_caps(options):
    out = {**options, "config": {k: v for k, v in options["config"].items() if k not in CAPS}}
    if options.get("params_modifiers"):
        out["params_modifiers"] = [{k: v for k, v in m.items() if k not in CAPS} for m in options["params_modifiers"]]
    return out


def has_caps(options):
    return any(cap in options["config"] for cap in CAPS) or any(cap in m for m in options.get("params_modifiers") or [] for cap in CAPS)


def caps_bind(family, pipe, call, options, stats):
    """A config with a cap on cached steps must cache other steps than the same config without it."""
    if not has_caps(options):
        return True
    _, uncapped = cached_run(family, pipe, call, without_caps(options))
    return signature(family, uncapped) != signature(family, stats)


def named(options):
    config, order = options["config"], options.get("taylorseer_order")
    if "Fn_compute_blocks" in config:
        name = f"F{config['Fn_compute_blocks']}B{config['Bn_compute_blocks']}_W{config['max_warmup_steps']}"
    else:
        name = "defaults"
    if "max_continuous_cached_steps" in config:
        name += f"_MC{config['max_continuous_cached_steps']}"
    if "max_cached_steps" in config:
        name += f"_M{config['max_cached_steps']}"
    if "residual_diff_threshold" in config:
        name += f"_R{config['residual_diff_threshold']:.4g}"
    if order:
        name += f"_TS{order}"
    if config.get("cfg_compute_first"):
        name += "_cfgfirst"
    elif config.get("cfg_diff_compute_separate") is False:
        name += "_cfgshared"
    if options.get("params_modifiers"):
        name += "_mod"
    return name


def float32_stats(family, trace):
    """The float32 trace's stats in this module's terms (its cfg fields where the family has them)."""
    return [{k: s.get(k, [] if k.endswith("steps") else {}) for k in ("cached_steps", "residual_diffs", "cfg_cached_steps", "cfg_residual_diffs")} for s in trace["stats"]]


def candidates_for(diffs, original):
    """
    Thresholds to try for one slot, given the diffs it is compared with in a run that caches
    nothing: the midpoints between two of them, nearest the float32 threshold first, then a grid of
    0.5% steps from 0.8x the smallest to 1.25x the largest, nearest first (where the diffs are dense
    and caching moves them, a gap that stays 2% wide is rarely at a midpoint; and a cap binds only
    where the threshold lets the run cache long stretches).
    """
    diffs = sorted(diffs)
    midpoints = sorted({round((a + b) / 2, 4) for a, b in zip(diffs, diffs[1:]) if b > a}, key=lambda r: abs(r - original))
    grid, x = set(), 0.8 * diffs[0]
    while x <= 1.25 * diffs[-1]:
        grid.add(round(x, 4))
        x *= 1.005
    return midpoints + sorted(grid - set(midpoints) - {original}, key=lambda r: abs(r - original))


def traced(family, pipe, call, float32_name, float32_trace, taken):
    """
    The float32 trace's config in bf16, its thresholds moved only where a bf16 diff comes too close
    (or where the run would cache the same steps as a config of the same base already recorded,
    `taken`: a set of (base, cached steps) that this extends). Each threshold slot (the base one,
    a ParamsModifier's own) moves on its own, when a context that compares with it fails.
    """
    options = {"config": dict(float32_trace["config"]), **{k: float32_trace[k] for k in OPTION_KEYS if k in float32_trace}}
    originals = thresholds_of(options)
    no_thresholds = with_thresholds(options, {s: None for s in originals})
    key = json.dumps([{k: v for k, v in no_thresholds["config"].items() if k != "residual_diff_threshold"},
                      {k: v for k, v in no_thresholds.items() if k != "config"}], sort_keys=True)
    float32_mix = mixes_of(family, float32_stats(family, float32_trace))
    branches = 2 if family.SEPARATE_CFG else 1
    thresholds, moved, remaining = dict(originals), set(), None
    for _ in range(MAX_TRIES):
        opts = with_thresholds(options, thresholds)
        latents, stats = cached_run(family, pipe, call, opts)
        slots = slots_of(opts, len(stats))
        mix = mixes_of(family, stats)
        failing = []
        for slot in thresholds:
            mine = [i for i, s in enumerate(slots) if s == slot]
            want = tuple(True for i in mine for _ in range(branches)) if slot in moved else tuple(float32_mix[i * branches + b] for i in mine for b in range(branches))
            got = tuple(mix[i * branches + b] for i in mine for b in range(branches))
            margin = min([context_margin(family, thresholds[slot], stats[i], k) for i in mine for k in ("bf16", "float64")], default=float("inf"))
            if margin < MIN_MARGIN or got != want:
                failing.append(slot)
        fine = not failing and (key, signature(family, stats)) not in taken and caps_bind(family, pipe, call, opts, stats)
        margin = margin_of(family, opts, stats, "bf16")
        if os.environ.get("CACHE_REFERENCES_DEBUG"):
            print(f"  try {thresholds}: margin {margin:.4f} / {margin_of(family, opts, stats, 'float64'):.4f}, mixes {mix},"
                  f" failing {failing}, taken {(key, signature(family, stats)) in taken}, ok {fine}", flush=True)
        if fine:
            break
        if remaining is None:
            _, probe = cached_run(family, pipe, call, with_thresholds(options, {s: 1e-9 for s in originals}))
            probe_slots = slots_of(options, len(probe))
            remaining = {slot: iter(candidates_for([d for s, entry in zip(probe_slots, probe) if s == slot
                                                    for _, diffs, _ in branches_of(family, entry) for d in diffs.values()], originals[slot]))
                         for slot in originals}
        for slot in failing or [next(iter(thresholds))]:
            thresholds[slot] = next(remaining[slot], None)
            moved.add(slot)
            if thresholds[slot] is None:
                raise RuntimeError(f"{float32_name}: no bf16 threshold for {slot} mixes cached and computed steps with a margin of {MIN_MARGIN}")
    else:
        raise RuntimeError(f"{float32_name}: no bf16 thresholds found in {MAX_TRIES} tries")
    taken.add((key, signature(family, stats)))
    entry = {"config": opts["config"], "taylorseer_order": opts.get("taylorseer_order")}
    entry.update({k: opts[k] for k in OPTION_KEYS[1:] if k in opts})
    entry.update({"float32_trace": float32_name, "margin": margin, "mix_ok": all(mix), "stats": stats})
    return named(opts), latents, entry


def perturbed(call, seed):
    """The call with its initial latents moved by relative Gaussian noise of PERTURBATION (about one bf16 unit)."""
    latents = call["latents"]
    noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(seed))
    return {**call, "latents": (latents.float() * (1 + PERTURBATION * noise)).to(latents.dtype)}


def sensitivity(family, pipe, call, options, latents, stats, plain):
    """
    How far a small difference of the inputs carries this cached run, over SENSITIVITY_RUNS
    perturbations that keep the cached steps: (1) its final latents, relative to how far it
    carries the uncached run's: the mean of (cached run perturbed vs cached run) / (uncached run
    perturbed vs uncached run); about 1 without TaylorSeer, more with it (a forecast extrapolates
    finite differences of the residuals, which multiplies any difference of them); (2) its float64
    diffs: the largest |diff perturbed - diff| / diff over every compared step, context and branch,
    how well any implementation that is not bit for bit PyTorch's can be expected to track them.
    """
    ratios, diff_moves = [], []
    for seed in SENSITIVITY_SEEDS:
        call_p = perturbed(call, seed)
        cached_p, stats_p = cached_run(family, pipe, call_p, options)
        # A perturbed run that caches other steps measures that choice, not how the numbers carry.
        if signature(family, stats_p) != signature(family, stats):
            continue
        with torch.inference_mode():
            plain_p = family.run(pipe, call_p)
        ratios.append(relative_l2(cached_p, latents) / relative_l2(plain_p, plain))
        for entry, entry_p in zip(stats, stats_p):
            for (_, _, exact), (_, _, exact_p) in zip(branches_of(family, entry), branches_of(family, entry_p)):
                diff_moves += [abs(exact_p[k] - d) / d for k, d in exact.items()]
        if len(ratios) == SENSITIVITY_RUNS:
            return sum(ratios) / len(ratios), max(diff_moves, default=0.0)
    raise RuntimeError(f"fewer than {SENSITIVITY_RUNS} perturbations keep the cached steps of {options}")


def relative_l2(a, b):
    a, b = a.double(), b.double()
    return ((a - b).norm() / b.norm()).item()


def save(tensors, path):
    save_file(tensors, str(path))
    os.chmod(path, 0o644)  # save_file leaves the file private


def main(family, goldens_root, out_root, cache_dit_commit=None):
    goldens_root, out_root = Path(goldens_root), Path(out_root)
    for name in family.SETS:
        goldens = goldens_root / name
        meta = json.loads((goldens / "meta.json").read_text())
        pipe = family.build_pipeline(goldens, meta)
        pipe.set_progress_bar_config(disable=True)
        call = family.call_args(goldens, meta)
        with torch.inference_mode():
            plain = family.run(pipe, call)
        traces, tensors, taken = {}, {}, set()
        for float32_name, float32_trace in meta["cache_traces"].items():
            trace_name, latents, entry = traced(family, pipe, call, float32_name, float32_trace, taken)
            assert trace_name not in traces, f"{name}: two traces named {trace_name}"
            entry["latents_out_relative_l2_vs_no_cache"] = relative_l2(latents, plain)
            if not family.COMPACT_STATS:
                options = {"config": entry["config"], **{k: entry[k] for k in OPTION_KEYS if k in entry}}
                entry["latents_out_sensitivity"], entry["residual_diffs_float64_sensitivity"] = sensitivity(
                    family, pipe, call, options, latents, entry["stats"], plain)
            traces[trace_name] = entry
            tensors[f"{trace_name}.latents_out"] = latents
            cached = [s["cached_steps"] if family.COMPACT_STATS else (s["cached_steps"], s["cfg_cached_steps"]) for s in entry["stats"]]
            print(f"{name} {trace_name} (from {float32_name}): cached {cached[0] if len(cached) == 1 else cached}, margin {entry['margin']:.3f}")
        target = out_root / name
        target.mkdir(parents=True, exist_ok=True)
        save(tensors, target / f"cache_traces_{TAG}.safetensors")
        summary = {
            "source": f"{family.GOLDENS_LABEL}/{name} (weights, inputs and the float32 traces' configs)",
            "dtype": str(DTYPE).removeprefix("torch."),
            "diffusers_version": diffusers.__version__,
            "cache_dit_commit": cache_dit_commit,
            "torch_version": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "min_margin": MIN_MARGIN,
            "pipeline": {k: meta[k] for k in family.PIPELINE_KEYS if k in meta},
            "cache_traces": traces,
        }
        (target / f"cache_traces_{TAG}.json").write_text(json.dumps(summary, indent=2) + "\n")
