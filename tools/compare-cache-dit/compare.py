"""Runs the Python originals (diffusers' FluxPipeline + cache-dit) on the configs of a finished
`ditcache bench` run and writes a side-by-side report: per config, whether the cached steps are
the same, PSNR against the uncached run for ours and theirs, PSNR of our images against theirs,
and wall time of ours and theirs.

Run by hand, not in CI, with the throwaway venv of /work/shared/tools/reference-venv.sh built with
cache-dit (see README.md beside this file).
"""
import argparse
import datetime
import json
import os
import platform
import time

import numpy as np
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file
from skimage.metrics import peak_signal_noise_ratio

import cache_dit
from diffusers import FluxPipeline


def load_prompts(path):
    with safe_open(path, "pt") as f:
        metadata = f.metadata() or {}
    tensors = load_file(path)
    labels = json.loads(metadata["prompts"]) if "prompts" in metadata else [f"prompt {i}" for i in range(len(tensors["prompt_embeds"]))]
    return tensors["prompt_embeds"].float(), tensors["pooled_prompt_embeds"].float(), labels


def cache_dit_configs(cache, steps):
    """Our bench config (cache-dit's key names, TaylorSeer as taylorseer_order) -> cache-dit's objects.
    An SCM config (policy: scm) is DBCache with the mask cache-dit's steps_mask gives its preset at `steps`."""
    settings = dict(cache)
    if settings.pop("policy", "dbcache") == "scm":
        settings["steps_computation_mask"] = cache_dit.steps_mask(total_steps=steps, mask_policy=settings.pop("mask_policy", "medium"))
    order = settings.pop("taylorseer_order", 0)
    calibrator = cache_dit.TaylorSeerCalibratorConfig(taylorseer_order=order) if order else None
    return cache_dit.DBCacheConfig(**settings), calibrator


def psnr(a, b):
    if np.array_equal(a, b):
        return float("inf")
    return float(peak_signal_noise_ratio(a, b, data_range=255))


def mean_finite(xs):
    finite = [x for x in xs if np.isfinite(x)]
    return float(np.mean(finite)) if finite else float("inf")


def pareto_front(rows, speed_key, psnr_key):
    """Rows that no other row beats in both speedup and PSNR, fastest first."""
    def beaten(r):
        return any(o[speed_key] >= r[speed_key] and o[psnr_key] >= r[psnr_key] and (o[speed_key] > r[speed_key] or o[psnr_key] > r[psnr_key]) for o in rows)
    return sorted((r for r in rows if not beaten(r)), key=lambda r: -r[speed_key])


def fmt_psnr(x):
    return "inf" if not np.isfinite(x) else f"{x:.2f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bench", required=True, help="the --out folder of a finished `ditcache bench` run")
    parser.add_argument("--prompts", required=True, help="the --prompts file of that run")
    parser.add_argument("--report", required=True, help="the markdown file to write")
    parser.add_argument("--configs", nargs="*", help="only these config names (default: all of the run)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1, help="generations per config and prompt; the fastest is timed (as the bench's --repeats)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with open(os.path.join(args.bench, "results.json")) as f:
        ours = json.load(f)
    settings = ours["settings"]
    embeds, pooled, labels = load_prompts(args.prompts)
    configs = [r for r in ours["results"] if r["name"] != "uncached" and (not args.configs or r["name"] in args.configs)]

    def our_record(name, i):
        with open(os.path.join(args.bench, name, f"prompt-{i}.json")) as f:
            return json.load(f)

    def our_image(name, i):
        return np.asarray(Image.open(os.path.join(args.bench, name, f"prompt-{i}.png")).convert("RGB"))

    def run(pipe, i):
        seconds = float("inf")
        for _ in range(args.repeats):
            start = time.perf_counter()
            image = pipe(prompt_embeds=embeds[i : i + 1], pooled_prompt_embeds=pooled[i : i + 1], height=settings["height"], width=settings["width"],
                         num_inference_steps=settings["steps"], generator=torch.Generator().manual_seed(settings["seed"] + i), output_type="np").images[0]
            seconds = min(seconds, time.perf_counter() - start)
        # diffusers' numpy_to_pil rounding, as ours.
        return (image * 255).round().astype(np.uint8), seconds

    pipe = FluxPipeline.from_pretrained(ours["model"], torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    run(pipe, 0)  # untimed: warms up as ours does
    base = [run(pipe, i) for i in range(len(labels))]
    base_seconds = sum(s for _, s in base)
    our_base_seconds = sum(our_record("uncached", i)["seconds"] for i in range(len(labels)))
    rows = []
    for config in configs:
        name = config["name"]
        cache, calibrator = cache_dit_configs(config["cache"], settings["steps"])
        cache_dit.enable_cache(pipe, cache_config=cache, calibrator_config=calibrator)
        theirs, steps_equal, cross = [], [], []
        for i in range(len(labels)):
            image, seconds = run(pipe, i)
            stats = cache_dit.summary(pipe, logging=False)
            theirs.append((image, seconds, list(stats[0].cached_steps)))
            steps_equal.append(list(stats[0].cached_steps) == our_record(name, i)["cachedSteps"])
            cross.append(psnr(our_image(name, i), image))
        cache_dit.disable_cache(pipe)
        their_seconds = sum(s for _, s, _ in theirs)
        rows.append({
            "name": name,
            "cache": config["cache"],
            "steps_equal": sum(steps_equal),
            "our_cached": float(np.mean([len(our_record(name, i)["cachedSteps"]) for i in range(len(labels))])),
            "their_cached": float(np.mean([len(c) for _, _, c in theirs])),
            "our_psnr": config["meanPsnr"] if config["meanPsnr"] is not None else float("inf"),
            "their_psnr": mean_finite([psnr(base[i][0], theirs[i][0]) for i in range(len(labels))]),
            "ours_vs_theirs": mean_finite(cross),
            "our_seconds": config["seconds"],
            "their_seconds": their_seconds,
            "our_speedup": config["speedup"],
            "their_speedup": base_seconds / their_seconds,
        })
        print(json.dumps(rows[-1]), flush=True)

    n = len(labels)
    lines = [
        "# ditcache vs diffusers + cache-dit on the reference model",
        "",
        f"Date: {datetime.date.today().isoformat()}. Machine: {platform.machine()}, {os.cpu_count()} cores "
        f"({platform.processor() or platform.platform()}), shared with other jobs; torch {torch.__version__} with "
        f"{args.threads} threads; ours: the `ditcache bench` run in `{args.bench}`.",
        "",
        f"Model `{ours['model']}`; {n} prompts ({', '.join(labels)}); {settings['steps']} steps, {settings['width']}x{settings['height']}, "
        f"seeds {settings['seed']}..{settings['seed'] + n - 1}; the same prompt embeddings and initial noise on both sides. "
        "PSNR of the 8-bit images against each side's own uncached run (mean over prompts); "
        "ours vs theirs: PSNR of our cached image against cache-dit's for the same config. "
        "Wall time summed over the prompts, VAE decoding included. "
        f"Uncached: ours {our_base_seconds:.2f} s, theirs {base_seconds:.2f} s; "
        f"PSNR of our uncached images against diffusers': {fmt_psnr(mean_finite([psnr(our_image('uncached', i), base[i][0]) for i in range(n)]))} dB.",
        "",
        "| Config | Cached steps equal | Cached steps ours / theirs | PSNR ours (dB) | PSNR theirs (dB) | Ours vs theirs (dB) | Wall s ours / theirs | Speedup ours / theirs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['steps_equal']}/{n} | {r['our_cached']:.1f} / {r['their_cached']:.1f} | {fmt_psnr(r['our_psnr'])} | {fmt_psnr(r['their_psnr'])} | "
            f"{fmt_psnr(r['ours_vs_theirs'])} | {r['our_seconds']:.2f} / {r['their_seconds']:.2f} | {r['our_speedup']:.2f}x / {r['their_speedup']:.2f}x |"
        )
    lines += [
        "",
        "## At equal speedup",
        "",
        "For each config on cache-dit's Pareto front (speedup against PSNR), the best PSNR that a ditcache "
        "config reaches at that speedup or more.",
        "",
        "| cache-dit config | Speedup | PSNR (dB) | Best ditcache config at >= that speedup | Its speedup | Its PSNR (dB) | PSNR at least equal |",
        "|---|---|---|---|---|---|---|",
    ]
    for theirs in pareto_front(rows, "their_speedup", "their_psnr"):
        faster = [r for r in rows if r["our_speedup"] >= theirs["their_speedup"]]
        best = max(faster, key=lambda r: r["our_psnr"]) if faster else None
        lines.append(
            f"| {theirs['name']} | {theirs['their_speedup']:.2f}x | {fmt_psnr(theirs['their_psnr'])} | "
            + (f"{best['name']} | {best['our_speedup']:.2f}x | {fmt_psnr(best['our_psnr'])} | {'yes' if best['our_psnr'] >= theirs['their_psnr'] else 'no'} |"
               if best else "none | - | - | no |")
        )
    with open(args.report, "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.splitext(args.report)[0] + ".json", "w") as f:
        json.dump({"settings": settings, "prompts": labels, "rows": rows}, f, indent=2, default=lambda v: None)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
