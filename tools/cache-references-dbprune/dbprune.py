"""Why: ditcache's `dbprune` cache policy must prune the same blocks as cache-dit's Dynamic Block
Prune (DBPrune) and give the same latents. This runs cache-dit's DBPrune on diffusers' float32
pipelines of the shared goldens (FLUX: testdata/goldens/flux-tiny, one chain of 2 double + 4
single blocks, no CFG branch; Wan: testdata/goldens/wan-tiny, video, 4 blocks, separate CFG
branches) and records, per config, every block decision (step, branch, block, pruned, the diff
cache-dit measured and the threshold it compared it with), cache-dit's own pruned-block counts
per transformer call, and the final latents.

    /work/refvenv-cd/bin/python tools/cache-references-dbprune/dbprune.py testdata/goldens packages

writes packages/adapter-{flux,wan}/test/goldens/{set}/cache_traces_dbprune.{json,safetensors},
read by those packages' test/cache-dbprune.test.ts. Run by hand, never by CI or the tests.

cache-dit reports only how many blocks each call pruned, so the decisions are recorded by
wrapping its per-block decision method. A config's threshold is the first of CANDIDATES that
keeps every diff compared with a threshold MIN_MARGIN (relative) away from it, and that prunes
some but not all compared blocks in each branch: otherwise float rounding, or a rule that
ignores the diff, could pass unnoticed.
"""

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

import cache_dit
from cache_dit import DBPruneConfig
from cache_dit.caching.cache_blocks.pattern_base import PrunedBlocks_Pattern_Base

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from golden_pipelines import flux, wan  # noqa: E402 (tools/golden_pipelines.py)

torch.set_num_threads(2)
MIN_MARGIN = 0.02
CANDIDATES = [0.02, 0.03, 0.04, 0.05, 0.06, 0.08, 0.1, 0.12, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5]


# (family, golden set, [(name, config without the threshold)]): Fn / Bn, the non-prune ids, the
# warmup, the dynamic threshold (with and without its cap) and the step limits, spread over both
# families; Wan separates its CFG branches.
PLAN = [
    (flux, "flux-tiny", [
        ("F1B0_W2", dict(Fn_compute_blocks=1, Bn_compute_blocks=0, max_warmup_steps=2)),
        ("F2B1_W3_NP3", dict(Fn_compute_blocks=2, Bn_compute_blocks=1, max_warmup_steps=3, non_prune_block_ids=[3])),
        ("F1B0_W2_DYN_M8", dict(Fn_compute_blocks=1, Bn_compute_blocks=0, max_warmup_steps=2, enable_dynamic_prune_threshold=True,
                                max_cached_steps=8)),
    ]),
    (wan, "wan-tiny", [
        ("F1B0_W2", dict(Fn_compute_blocks=1, Bn_compute_blocks=0, max_warmup_steps=2, enable_separate_cfg=True)),
        ("F1B1_W3_DYN_MC2", dict(Fn_compute_blocks=1, Bn_compute_blocks=1, max_warmup_steps=3, enable_separate_cfg=True,
                                     enable_dynamic_prune_threshold=True, dynamic_prune_threshold_relax_ratio=1.5,
                                     max_continuous_cached_steps=2)),
        ("F1B0_W2_NP2_DYNMAX", dict(Fn_compute_blocks=1, Bn_compute_blocks=0, max_warmup_steps=2, enable_separate_cfg=True,
                                    non_prune_block_ids=[2], enable_dynamic_prune_threshold=True,
                                    max_dynamic_prune_threshold=0.5)),
    ]),
]

DECISIONS = []


def recording(decide):
    """Wraps cache-dit's per-block decision to record what it decided, on what diff and threshold."""

    def wrapped(self, block_id, hidden_states, prefix="Bn_original"):
        context = self.context_manager.get_context()
        cfg = context.is_separate_cfg_step()
        step = context.get_current_step()
        diffs = lambda: (context.cfg_residual_diffs if cfg else context.residual_diffs).get(str(step), [])
        before = len(diffs())
        threshold = context.get_residual_diff_threshold()
        pruned = decide(self, block_id, hidden_states, prefix)
        after = diffs()
        DECISIONS.append(dict(branch="cfg" if cfg else "non_cfg", step=step, block=block_id, pruned=bool(pruned),
                              diff=float(after[-1]) if len(after) > before else None, threshold=float(threshold)))
        return pruned

    return wrapped


PrunedBlocks_Pattern_Base._maybe_prune = recording(PrunedBlocks_Pattern_Base._maybe_prune)


def pruned_run(pipe, call, output, config):
    DECISIONS.clear()
    cache_dit.enable_cache(pipe, cache_config=DBPruneConfig(**config))
    try:
        with torch.inference_mode():
            latents = output(pipe(**call))
        stats = cache_dit.summary(pipe, logging=False)
    finally:
        cache_dit.disable_cache(pipe)
    s = stats[0]
    counts = {"non_cfg": list(s.pruned_blocks or []), "cfg": list(s.cfg_pruned_blocks or [])}
    return latents, list(DECISIONS), counts


def acceptable(decisions):
    for branch in ("non_cfg", "cfg"):
        compared = [d for d in decisions if d["branch"] == branch and d["diff"] is not None and d["diff"] >= 0]
        if not compared:
            continue
        if any(abs(d["diff"] - d["threshold"]) / d["threshold"] < MIN_MARGIN for d in compared):
            return False
        if not (0 < sum(d["pruned"] for d in compared) < len(compared)):
            return False
    return True


def per_step(decisions, steps):
    """branch -> step -> the blocks pruned there, for every step the branch ran."""
    out = {}
    for d in decisions:
        blocks = out.setdefault(d["branch"], {str(s): [] for s in range(steps)})
        if d["pruned"]:
            blocks[str(d["step"])].append(d["block"])
    return out


def main(goldens_root, packages):
    for family, name, runs in PLAN:
        pipe, call, steps, output = family(Path(goldens_root) / name)
        traces, tensors = {}, {}
        for key, base in runs:
            for threshold in CANDIDATES:
                config = dict(base, residual_diff_threshold=threshold)
                latents, decisions, counts = pruned_run(pipe, call, output, config)
                if acceptable(decisions):
                    break
            else:
                sys.exit(f"{name} {key}: no threshold among {CANDIDATES} keeps every diff {MIN_MARGIN:.0%} away")
            pruned = per_step(decisions, steps)
            for branch, blocks in pruned.items():
                assert [len(blocks[str(s)]) for s in range(steps)] == counts[branch], (branch, counts[branch])
            traces[key] = dict(config=config, pruned_blocks=pruned, pruned_counts=counts, decisions=decisions)
            tensors[f"{key}.latents_out"] = latents.contiguous()
            print(name, key, "threshold", threshold, {b: sum(map(len, p.values())) for b, p in pruned.items()})
        package = "adapter-flux" if family is flux else "adapter-wan"
        out = Path(packages) / package / "test" / "goldens" / name
        out.mkdir(parents=True, exist_ok=True)
        meta = dict(cache_dit_version=getattr(cache_dit, "__version__", "unknown"), torch_version=torch.__version__,
                    num_inference_steps=steps, traces=traces)
        (out / "cache_traces_dbprune.json").write_text(json.dumps(meta, indent=1) + "\n")
        save_file(tensors, str(out / "cache_traces_dbprune.safetensors"))


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit("usage: dbprune.py GOLDENS_ROOT PACKAGES_ROOT")
    main(*sys.argv[1:3])
