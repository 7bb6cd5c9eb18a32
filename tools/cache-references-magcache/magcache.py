"""Why: ditcache's `magcache` cache policy must skip the steps diffusers' MagCache skips, give
the same latents, and its calibration run must record the magnitude ratios diffusers' calibration
records. This runs diffusers' MagCache (transformer.enable_cache(MagCacheConfig(...))) on its
float32 pipelines of the shared goldens (FLUX: testdata/goldens/flux-tiny, one 'cond' context;
Wan: testdata/goldens/wan-tiny, video, 'cond' and 'uncond' contexts) and records, per context:

- the calibration run (calibrate=True): the ratios it computes, and its final latents;
- per MagCache config: the steps skipped, the accumulated error each step compared with the
  threshold, the mag_ratios after diffusers' interpolation to the step count, the final latents.

    /work/refvenv-cd/bin/python tools/cache-references-magcache/magcache.py testdata/goldens packages

writes packages/adapter-{flux,wan}/test/goldens/{set}/cache_traces_magcache.{json,safetensors},
read by those packages' test/cache-magcache.test.ts. Run by hand, never by CI or the tests.

The script observes diffusers (it wraps the hooks' methods and records what their state holds);
it computes none of MagCache's rules itself. A config's threshold is, among the CANDIDATES that keep every
compared error at least MIN_MARGIN (relative) away from it and skip some but not all of the steps
compared in every context, the one that skips closest to half of those steps.
"""

import json
import sys
from collections import defaultdict
from pathlib import Path

import diffusers
import torch
from diffusers import MagCacheConfig
from diffusers.hooks import mag_cache
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from golden_pipelines import flux, wan  # noqa: E402 (tools/golden_pipelines.py)

torch.set_num_threads(2)
MIN_MARGIN = 0.02
CANDIDATES = [0.005, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.06, 0.08, 0.1, 0.12, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0]


class Recorder:
    """What diffusers' hooks did, per context: decisions, compared errors, calibration ratios."""

    def __init__(self):
        self.clear()

    def clear(self):
        self.decisions = defaultdict(list)  # context -> [(step, skipped, compared error or None)]
        self.ratios = defaultdict(list)  # context -> calibration ratios, in order


REC = Recorder()


class RecordingState(mag_cache.MagCacheState):
    """MagCacheState that remembers the values assigned to accumulated_err during a head call."""

    def __setattr__(self, name, value):
        if name == "accumulated_err" and getattr(self, "_errors", None) is not None:
            self._errors.append(float(value))
        super().__setattr__(name, value)


_head_forward = mag_cache.MagCacheHeadHook.new_forward
_calibration_step = mag_cache.MagCacheBlockHook._perform_calibration_step


def _recording_head_forward(self, module, *args, **kwargs):
    self.state_manager._state_cls = RecordingState
    if self.state_manager._current_context is None:
        self.state_manager.set_context("inference")
    state = self.state_manager.get_state()
    step = state.step_index
    state._errors = []
    try:
        return _head_forward(self, module, *args, **kwargs)
    finally:
        # The first assignment of a head call is the error it compares with the threshold (the
        # rule adds to it first, and resets it to 0 only after comparing).
        compared = state._errors[0] if state._errors else None
        state._errors = None
        REC.decisions[self.state_manager._current_context].append((step, not state.should_compute, compared))


def _recording_calibration_step(self, state, residual):
    _calibration_step(self, state, residual)
    REC.ratios[self.state_manager._current_context].append(float(state.calibration_ratios[-1]))


mag_cache.MagCacheHeadHook.new_forward = _recording_head_forward
mag_cache.MagCacheBlockHook._perform_calibration_step = _recording_calibration_step


# Per family: the MagCache configs (besides threshold), named. mag_ratios 'calibrated' is the
# first context's ('cond') calibration of this very run; 'flux' is diffusers' FLUX_MAG_RATIOS
# (28 values), interpolated to the run's step count by diffusers.
PLAN = [
    (flux, "flux-tiny", {
        "calibrated_K2_R0.2": dict(mag_ratios="calibrated", max_skip_steps=2, retention_ratio=0.2),
        "calibrated_K4_R0.1": dict(mag_ratios="calibrated", max_skip_steps=4, retention_ratio=0.1),
        "flux_K3_R0.2": dict(mag_ratios="flux", max_skip_steps=3, retention_ratio=0.2),
    }),
    (wan, "wan-tiny", {
        "calibrated_K2_R0.2": dict(mag_ratios="calibrated", max_skip_steps=2, retention_ratio=0.2),
        "calibrated_K3_R0.1": dict(mag_ratios="calibrated", max_skip_steps=3, retention_ratio=0.1),
        "flux_K3_R0.25": dict(mag_ratios="flux", max_skip_steps=3, retention_ratio=0.25),
    }),
]


def run(pipe, call, output, config):
    REC.clear()
    pipe.transformer.enable_cache(config)
    # diffusers keeps the list of the hook registries below the transformer from the first
    # cache_context call on, and never renews it: hooks added later (as here, after the uncached
    # run) would never learn the context, and cond and uncond would share one state. Dropping
    # the list makes cache_context reach MagCache's hooks, as diffusers intends.
    pipe.transformer._diffusers_hook._child_registries_cache = None
    try:
        with torch.inference_mode():
            latents = output(pipe(**call))
    finally:
        pipe.transformer.disable_cache()
    return latents.contiguous(), {c: list(d) for c, d in REC.decisions.items()}, {c: list(r) for c, r in REC.ratios.items()}


def acceptable(decisions, threshold):
    for per_step in decisions.values():
        compared = [e for _, _, e in per_step if e is not None]
        if any(abs(e - threshold) / threshold < MIN_MARGIN for e in compared):
            return False
        skipped = sum(1 for _, s, _ in per_step if s)
        if not (0 < skipped < len(compared)):
            return False
    return True


def skipped_fraction(decisions):
    """Skipped steps over the steps compared with the threshold, over all contexts."""
    skipped = sum(1 for d in decisions.values() for _, s, _ in d if s)
    compared = sum(1 for d in decisions.values() for _, _, e in d if e is not None)
    return skipped / compared


def main(goldens_root, packages):
    for family, name, configs in PLAN:
        pipe, call, steps, output = family(Path(goldens_root) / name)
        tensors = {}
        with torch.inference_mode():
            tensors["uncached.latents_out"] = output(pipe(**call)).contiguous()
        latents, _, ratios = run(pipe, call, output, MagCacheConfig(calibrate=True, num_inference_steps=steps))
        tensors["calibrate.latents_out"] = latents
        print(name, "calibration", {c: [round(r, 4) for r in rs] for c, rs in ratios.items()})
        traces = {}
        for key, settings in configs.items():
            given = ratios["cond"] if settings["mag_ratios"] == "calibrated" else mag_cache.FLUX_MAG_RATIOS.tolist()
            # Among the acceptable thresholds, the one that skips closest to half the steps.
            best = None
            for threshold in CANDIDATES:
                config = MagCacheConfig(threshold=threshold, max_skip_steps=settings["max_skip_steps"], retention_ratio=settings["retention_ratio"],
                                        num_inference_steps=steps, mag_ratios=list(given))
                latents, decisions, _ = run(pipe, call, output, config)
                if acceptable(decisions, threshold):
                    score = abs(skipped_fraction(decisions) - 0.5)
                    if best is None or score < best[0]:
                        best = (score, threshold, config, latents, decisions)
            if best is None:
                sys.exit(f"{name} {key}: no threshold among {CANDIDATES} keeps every compared error {MIN_MARGIN:.0%} away and skips some steps")
            _, threshold, config, latents, decisions = best
            traces[key] = dict(
                config=dict(threshold=threshold, max_skip_steps=settings["max_skip_steps"], retention_ratio=settings["retention_ratio"],
                            num_inference_steps=steps),
                mag_ratios_source=settings["mag_ratios"],
                mag_ratios=list(given),
                interpolated_mag_ratios=[float(r) for r in config.mag_ratios],
                skipped_steps={c: [s for s, skipped, _ in d if skipped] for c, d in decisions.items()},
                compared_errors={c: {str(s): e for s, _, e in d if e is not None} for c, d in decisions.items()},
            )
            tensors[f"{key}.latents_out"] = latents
            print(name, key, "threshold", threshold, traces[key]["skipped_steps"])
        package = "adapter-flux" if family is flux else "adapter-wan"
        out = Path(packages) / package / "test" / "goldens" / name
        out.mkdir(parents=True, exist_ok=True)
        meta = dict(diffusers_version=diffusers.__version__, torch_version=torch.__version__, num_inference_steps=steps,
                    flux_mag_ratios=mag_cache.FLUX_MAG_RATIOS.tolist(), calibration=ratios, traces=traces)
        (out / "cache_traces_magcache.json").write_text(json.dumps(meta, indent=1) + "\n")
        save_file(tensors, str(out / "cache_traces_magcache.safetensors"))


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit("usage: magcache.py GOLDENS_ROOT PACKAGES_ROOT")
    main(*sys.argv[1:3])
