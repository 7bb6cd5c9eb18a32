"""Why: ditcache's `pab` cache policy must take the decisions diffusers' Pyramid Attention Broadcast
takes (which attention calls reuse the module's last output) and end at its latents. This applies
diffusers' apply_pyramid_attention_broadcast to the float32 pipelines of the shared goldens and
records, per attention module and per cache context ('cond', and 'uncond' for Wan), whether each
call computed or reused, with the final latents:

- FLUX (testdata/goldens/flux-tiny): FluxPipeline as it is (one 'cond' call per step), and once
  with true CFG ('cond' and 'uncond' calls; the negative prompt is the prompt's embeddings negated).
- Wan (testdata/goldens/wan-tiny, video): WanPipeline as it is, CFG as separate 'cond' and
  'uncond' calls.
- Wan 2.2 (testdata/goldens/wan-tiny/wan22, two experts): WanPipeline as it is, PAB applied to
  each expert; a module is recorded under its expert's name (transformer.blocks.0.attn1, ...).
- LTX-Video (packages/adapter-ltx-video/test/goldens/ltx-tiny, video): LTXPipeline as it is, CFG
  batched in one 'cond_uncond' call.

diffusers keeps one PAB state per module, so the uncond call of a step shares the cond call's
counter and reuses its output. ditcache keeps one state per (module, CFG branch); while recording,
this script gives each hook one state per cache context (the pipeline's cache_context name), which
is that semantics. It also runs one Wan config with diffusers' shared state and prints how far its
latents are from the per-context ones.

    /work/refvenv-cd/bin/python tools/cache-references-pab/pab.py testdata/goldens packages

writes packages/adapter-{flux,wan,ltx-video}/test/goldens/{set}/cache_traces_pab.{json,safetensors}, read by
those packages' test/cache-pab.test.ts. Run by hand, never by CI or the tests. The script observes
diffusers' hook (it wraps its forward); it computes none of its rules.
"""

import json
import sys
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import diffusers
import torch
from diffusers import AutoencoderKLWan, LTXPipeline, PyramidAttentionBroadcastConfig, WanPipeline
from diffusers.hooks import HookRegistry, apply_pyramid_attention_broadcast, pyramid_attention_broadcast as pab
from diffusers.models.cache_utils import CacheMixin
from safetensors.torch import load_file, save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from golden_pipelines import flux, wan  # noqa: E402 (tools/golden_pipelines.py)

torch.set_num_threads(2)


class Recorder:
    def __init__(self):
        self.clear()

    def clear(self):
        self.context = None  # the running cache_context name
        self.per_context = True  # one hook state per cache context (ditcache's semantics)
        self.calls = defaultdict(lambda: defaultdict(list))  # module name -> context -> [reused?] per call


REC = Recorder()
_cache_context = CacheMixin.cache_context
_new_forward = pab.PyramidAttentionBroadcastHook.new_forward


@contextmanager
def _recording_cache_context(self, name):
    outer, REC.context = REC.context, name
    try:
        with _cache_context(self, name):
            yield
    finally:
        REC.context = outer


def _recording_new_forward(self, module, *args, **kwargs):
    if REC.per_context:
        states = self.__dict__.setdefault("_states_per_context", {})
        self.state = states.setdefault(REC.context, pab.PyramidAttentionBroadcastState())
    before = self.state.cache
    out = _new_forward(self, module, *args, **kwargs)
    # A reused call returns the very object the state held; a computed one a new output.
    REC.calls[self._recorded_name][REC.context].append(before is not None and out is before)
    return out


CacheMixin.cache_context = _recording_cache_context
pab.PyramidAttentionBroadcastHook.new_forward = _recording_new_forward


def transformers(pipe):
    """The pipeline's transformers by their attribute names (Wan 2.2 has two experts)."""
    return {n: t for n in ("transformer", "transformer_2") if (t := getattr(pipe, n, None)) is not None}


def enable(pipe, settings):
    """PAB on every transformer; a module is recorded by its name, after its transformer's when there are two."""
    config = PyramidAttentionBroadcastConfig(**settings, current_timestep_callback=lambda: pipe.current_timestep)
    experts = transformers(pipe)
    names = []
    for expert, transformer in experts.items():
        apply_pyramid_attention_broadcast(transformer, config)
        for name, module in transformer.named_modules():
            registry = getattr(module, "_diffusers_hook", None)
            hook = registry.get_hook(pab._PYRAMID_ATTENTION_BROADCAST_HOOK) if registry is not None else None
            if hook is not None:
                hook._recorded_name = f"{expert}.{name}" if len(experts) > 1 else name
                names.append(hook._recorded_name)
    return names


def disable(pipe):
    for transformer in transformers(pipe).values():
        HookRegistry.check_if_exists_or_initialize(transformer).remove_hook(pab._PYRAMID_ATTENTION_BROADCAST_HOOK, recurse=True)


def wan22(goldens):
    """Wan 2.2's two experts: transformer for the steps at or above the boundary timestep, transformer_2 after."""
    meta = json.loads((goldens / "meta.json").read_text())
    vae = AutoencoderKLWan.from_pretrained(goldens / "vae", torch_dtype=torch.float32)
    pipe = WanPipeline.from_pretrained(goldens, vae=vae, tokenizer=None, text_encoder=None, torch_dtype=torch.float32)
    g = load_file(str(goldens / "pipeline.safetensors"))
    call = dict(prompt_embeds=g["prompt_embeds"], negative_prompt_embeds=g["negative_prompt_embeds"], height=meta["height"],
                width=meta["width"], num_frames=meta["num_frames"], num_inference_steps=meta["num_inference_steps"],
                guidance_scale=meta["guidance_scale"], guidance_scale_2=meta["guidance_scale_2"], latents=g["latents_in"], output_type="latent")
    return pipe, call, meta["num_inference_steps"], lambda out: out.frames


def ltx(goldens):
    meta = json.loads((goldens / "meta.json").read_text())["pipeline"]
    pipe = LTXPipeline.from_pretrained(goldens, text_encoder=None, tokenizer=None, torch_dtype=torch.float32)
    g = load_file(str(goldens / "pipeline.safetensors"))
    call = dict(prompt_embeds=g["prompt_embeds"], prompt_attention_mask=g["prompt_attention_mask"].to(torch.int64),
                negative_prompt_embeds=g["negative_prompt_embeds"], negative_prompt_attention_mask=g["negative_prompt_attention_mask"].to(torch.int64),
                height=meta["height"], width=meta["width"], num_frames=meta["num_frames"], frame_rate=meta["frame_rate"],
                num_inference_steps=meta["steps"], guidance_scale=meta["guidance_scale"], latents=g["latents_in"], output_type="latent")
    return pipe, call, meta["steps"], lambda out: out.frames


# Per family: PAB settings (diffusers' defaults for what is left out), named. Ranges are (lo, hi),
# exclusive. FLUX: 20 steps, timesteps 1000 .. 90; Wan: 16 steps, 1000 .. 47; LTX: 12 steps, 1000 .. 100.
# Where each set's goldens are: under GOLDENS_ROOT, or (LTX) in its package's test goldens.
PLAN = [
    (flux, "flux-tiny", "adapter-flux", {
        "spatial2": dict(spatial_attention_block_skip_range=2),
        "spatial3_wide": dict(spatial_attention_block_skip_range=3, spatial_attention_timestep_skip_range=(50, 990)),
        "never": dict(spatial_attention_block_skip_range=1),
        # True CFG (separate 'cond' and 'uncond' calls), the negative prompt being the prompt's embeddings negated.
        "true_cfg_spatial2": dict(spatial_attention_block_skip_range=2, spatial_attention_timestep_skip_range=(100, 990), true_cfg_scale=4.0),
    }),
    (wan, "wan-tiny", "adapter-wan", {
        "spatial2_wide": dict(spatial_attention_block_skip_range=2, spatial_attention_timestep_skip_range=(100, 950)),
        "spatial2_cross3": dict(spatial_attention_block_skip_range=2, spatial_attention_timestep_skip_range=(300, 990),
                                cross_attention_block_skip_range=3, cross_attention_timestep_skip_range=(40, 990)),
        "never": dict(spatial_attention_block_skip_range=1, cross_attention_block_skip_range=1),
    }),
    (wan22, "wan-tiny/wan22", "adapter-wan", {
        "spatial2_cross3": dict(spatial_attention_block_skip_range=2, spatial_attention_timestep_skip_range=(300, 990),
                                cross_attention_block_skip_range=3, cross_attention_timestep_skip_range=(40, 990)),
    }),
    (ltx, "ltx-tiny", "adapter-ltx-video", {
        "spatial2": dict(spatial_attention_block_skip_range=2),
        "spatial3_wide": dict(spatial_attention_block_skip_range=3, spatial_attention_timestep_skip_range=(50, 990)),
        "never": dict(spatial_attention_block_skip_range=1),
    }),
]
SHARED_STATE_CHECK = ("wan-tiny", "spatial2_cross3")


def run(pipe, call, output, settings, per_context=True):
    REC.clear()
    REC.per_context = per_context
    settings = dict(settings)
    true_cfg_scale = settings.pop("true_cfg_scale", None)
    if true_cfg_scale is not None:
        call = dict(call, true_cfg_scale=true_cfg_scale, negative_prompt_embeds=-call["prompt_embeds"],
                    negative_pooled_prompt_embeds=-call["pooled_prompt_embeds"])
    sites = enable(pipe, settings)
    try:
        with torch.inference_mode():
            latents = output(pipe(**call)).contiguous()
    finally:
        disable(pipe)
    return latents, sites, {site: {c: list(r) for c, r in REC.calls[site].items()} for site in sites}


def rel_l2(a, b):
    return float((a - b).norm() / b.norm())


def main(goldens_root, packages):
    for family, name, package, configs in PLAN:
        goldens = Path(goldens_root) / name
        if not goldens.exists():
            goldens = Path(packages) / package / "test" / "goldens" / name
        pipe, call, steps, output = family(goldens)
        tensors = {}
        with torch.inference_mode():
            tensors["uncached.latents_out"] = output(pipe(**call)).contiguous()
        timesteps = [float(t) for t in load_file(str(goldens / "pipeline.safetensors"))["timesteps"]]
        traces = {}
        for key, settings in configs.items():
            latents, sites, calls = run(pipe, call, output, settings)
            tensors[f"{key}.latents_out"] = latents
            config = {k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()}
            # Per module and context: the indices of its calls (in that context) that reused.
            reused = {site: {c: [i for i, r in enumerate(rs) if r] for c, rs in per.items()} for site, per in calls.items()}
            traces[key] = dict(config=config, calls={site: {c: len(rs) for c, rs in per.items()} for site, per in calls.items()}, reused_calls=reused)
            count = sum(len(r) for per in reused.values() for r in per.values())
            total = sum(len(r) for per in calls.values() for r in per.values())
            print(name, key, "reused", count, "of", total, "calls; rel L2 vs uncached", rel_l2(latents, tensors["uncached.latents_out"]))
            if (name, key) == SHARED_STATE_CHECK:
                shared, _, _ = run(pipe, call, output, settings, per_context=False)
                print(name, key, "diffusers' shared state vs one state per context, rel L2", rel_l2(shared, latents))
        out = Path(packages) / package / "test" / "goldens" / name
        out.mkdir(parents=True, exist_ok=True)
        meta = dict(diffusers_version=diffusers.__version__, torch_version=torch.__version__, num_inference_steps=steps,
                    timesteps=timesteps, traces=traces)
        (out / "cache_traces_pab.json").write_text(json.dumps(meta, indent=1) + "\n")
        save_file(tensors, str(out / "cache_traces_pab.safetensors"))


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit("usage: pab.py GOLDENS_ROOT PACKAGES_ROOT")
    main(*sys.argv[1:3])
