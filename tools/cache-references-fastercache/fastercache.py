"""Why: ditcache's `fastercache` cache policy must take the decisions diffusers' FasterCache takes
(which steps rebuild the unconditional prediction from the conditional one, which attention calls
are forecast) and end at its latents. This applies diffusers' apply_faster_cache to the float32
transformers of the shared goldens and records what its hooks did:

- Wan (testdata/goldens/wan-tiny, video, CFG): diffusers' WanPipeline calls the transformer once
  per branch, which FasterCache's denoiser hook cannot split, so the denoising loop here batches
  [uncond, cond] into one call (WanPipeline's scheduler, inputs and guidance otherwise), with
  tensor_format "BCFHW". The same loop without FasterCache is checked against WanPipeline's latents.
- Wan 2.2 (testdata/goldens/wan-tiny/wan22, two experts): the same loop, each step's expert chosen
  by WanPipeline's boundary, FasterCache applied to each expert (each keeps its own hook state).
- FLUX (testdata/goldens/flux-tiny): FluxPipeline as it is, is_guidance_distilled=True, so only the
  attention part acts.

Per config and transformer: the pipeline steps whose unconditional half was skipped, per attention
module the steps whose output was forecast; the timesteps, and the final latents.

    /work/refvenv-cd/bin/python tools/cache-references-fastercache/fastercache.py testdata/goldens packages

writes packages/adapter-{flux,wan}/test/goldens/{set}/cache_traces_fastercache.{json,safetensors},
read by those packages' test/cache-fastercache.test.ts. Run by hand, never by CI or the tests.
The script observes diffusers' hooks (it wraps their methods); it computes none of their rules.
"""

import json
import sys
from collections import defaultdict
from pathlib import Path

import diffusers
import torch
from diffusers import AutoencoderKL, AutoencoderKLWan, FasterCacheConfig, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel, WanPipeline
from diffusers.hooks import HookRegistry, apply_faster_cache, faster_cache
from safetensors.torch import load_file, save_file

torch.set_num_threads(2)


class Recorder:
    """What FasterCache's hooks did in one run, at the pipeline steps the loop sets."""

    def __init__(self):
        self.clear()

    def clear(self):
        self.step = None
        self.uncond_skipped = defaultdict(list)  # transformer name -> pipeline steps whose unconditional half was skipped
        self.forecast = defaultdict(list)  # transformer name + "." + attention module name -> pipeline steps it was forecast
        self.skipping = False
        self.forecasting = False


REC = Recorder()
_denoiser_forward = faster_cache.FasterCacheDenoiserHook.new_forward
_block_forward = faster_cache.FasterCacheBlockHook.new_forward
_cond_input = faster_cache.FasterCacheDenoiserHook._get_cond_input
_approximate = faster_cache.FasterCacheBlockHook._compute_approximated_attention_output


def _recording_cond_input(input):
    REC.skipping = True
    return _cond_input(input)


def _recording_denoiser_forward(self, module, *args, **kwargs):
    step = REC.step
    REC.skipping = False
    out = _denoiser_forward(self, module, *args, **kwargs)
    if REC.skipping:
        REC.uncond_skipped[self._recorded_name].append(step)
    return out


def _recording_approximate(self, *args, **kwargs):
    REC.forecasting = True
    return _approximate(self, *args, **kwargs)


def _recording_block_forward(self, module, *args, **kwargs):
    step = REC.step
    REC.forecasting = False
    out = _block_forward(self, module, *args, **kwargs)
    if REC.forecasting:
        REC.forecast[self._recorded_name].append(step)
    return out


faster_cache.FasterCacheDenoiserHook._get_cond_input = staticmethod(_recording_cond_input)
faster_cache.FasterCacheDenoiserHook.new_forward = _recording_denoiser_forward
faster_cache.FasterCacheBlockHook._compute_approximated_attention_output = _recording_approximate
faster_cache.FasterCacheBlockHook.new_forward = _recording_block_forward


def enable(transformer, name, config):
    """Applies FasterCache to `transformer` (named `name` in the records); returns its attention modules' record names."""
    apply_faster_cache(transformer, config)
    transformer._diffusers_hook.get_hook(faster_cache._FASTER_CACHE_DENOISER_HOOK)._recorded_name = name
    names = []
    for module_name, module in transformer.named_modules():
        registry = getattr(module, "_diffusers_hook", None)
        hook = registry.get_hook(faster_cache._FASTER_CACHE_BLOCK_HOOK) if registry is not None else None
        if hook is not None:
            hook._recorded_name = f"{name}.{module_name}"
            names.append(hook._recorded_name)
    return names


def disable(transformer):
    registry = HookRegistry.check_if_exists_or_initialize(transformer)
    registry.remove_hook(faster_cache._FASTER_CACHE_DENOISER_HOOK, recurse=True)
    registry.remove_hook(faster_cache._FASTER_CACHE_BLOCK_HOOK, recurse=True)


class WanBatchedCfg:
    """WanPipeline's denoising loop on wan-tiny (or its Wan 2.2 set), with cond and uncond in one transformer call [uncond, cond]."""

    def __init__(self, goldens):
        self.meta = json.loads((goldens / "meta.json").read_text())
        vae = AutoencoderKLWan.from_pretrained(goldens / "vae", torch_dtype=torch.float32)
        two_experts = (goldens / "transformer_2").is_dir()
        extra = {} if two_experts else dict(transformer_2=None)
        self.pipe = WanPipeline.from_pretrained(goldens, vae=vae, tokenizer=None, text_encoder=None, torch_dtype=torch.float32, **extra)
        self.transformers = {"transformer": self.pipe.transformer, **({"transformer_2": self.pipe.transformer_2} if two_experts else {})}
        self.g = load_file(str(goldens / "pipeline.safetensors"))
        self.timestep = None
        self.steps = self.meta["num_inference_steps"]

    def call(self):
        m = self.meta
        return dict(prompt_embeds=self.g["prompt_embeds"], negative_prompt_embeds=self.g["negative_prompt_embeds"], height=m["height"],
                    width=m["width"], num_frames=m["num_frames"], num_inference_steps=self.steps, guidance_scale=m["guidance_scale"],
                    latents=self.g["latents_in"], output_type="latent", **({"guidance_scale_2": m["guidance_scale_2"]} if "guidance_scale_2" in m else {}))

    def pipeline_latents(self):
        with torch.inference_mode():
            return self.pipe(**self.call()).frames.contiguous()

    @torch.inference_mode()
    def latents(self):
        pipe, g, m = self.pipe, self.g, self.meta
        pipe.scheduler.set_timesteps(self.steps, device="cpu")
        # WanPipeline's expert rule: transformer while t >= boundary, then transformer_2 (with guidance_scale_2).
        ratio = pipe.config.boundary_ratio
        boundary = None if ratio is None else ratio * pipe.scheduler.config.num_train_timesteps
        latents = g["latents_in"].clone()
        embeds = torch.cat([g["negative_prompt_embeds"], g["prompt_embeds"]])
        for step, t in enumerate(pipe.scheduler.timesteps):
            self.timestep = t
            REC.step = step
            first = boundary is None or t >= boundary
            model = pipe.transformer if first else pipe.transformer_2
            scale = m["guidance_scale"] if first else m["guidance_scale_2"]
            out = model(hidden_states=torch.cat([latents, latents]), timestep=t.expand(2), encoder_hidden_states=embeds, return_dict=False)[0]
            uncond, cond = out.chunk(2)
            latents = pipe.scheduler.step(uncond + scale * (cond - uncond), t, latents, return_dict=False)[0]
        return latents.contiguous()

    def timesteps(self):
        self.pipe.scheduler.set_timesteps(self.steps, device="cpu")
        return [float(t) for t in self.pipe.scheduler.timesteps]


class Flux:
    """FluxPipeline on flux-tiny as the goldens run it."""

    def __init__(self, goldens):
        meta = json.loads((goldens / "meta.json").read_text())
        self.pipe = FluxPipeline(scheduler=FlowMatchEulerDiscreteScheduler.from_pretrained(str(goldens / "scheduler")),
                                 vae=AutoencoderKL.from_pretrained(str(goldens / "vae")), text_encoder=None, tokenizer=None,
                                 text_encoder_2=None, tokenizer_2=None,
                                 transformer=FluxTransformer2DModel.from_pretrained(str(goldens / "transformer")))
        g = load_file(str(goldens / "pipeline.safetensors"))
        self.call = dict(prompt_embeds=g["prompt_embeds"], pooled_prompt_embeds=g["pooled_prompt_embeds"], latents=g["latents_in"],
                         height=meta["height"], width=meta["width"], num_inference_steps=meta["num_inference_steps"],
                         guidance_scale=meta["guidance_scale"], output_type="latent")
        self.steps = meta["num_inference_steps"]
        self.g = g
        self.transformers = {"transformer": self.pipe.transformer}

    @property
    def timestep(self):
        return self.pipe.current_timestep

    @torch.inference_mode()
    def latents(self):
        # The step index the hooks record: FluxPipeline's own loop counts from 0 as they are called.
        REC.step = 0
        return self.pipe(**self.call, callback_on_step_end=_next_step).images.contiguous()

    def timesteps(self):
        return [float(t) for t in self.g["timesteps"]]


def _next_step(pipe, step, timestep, kwargs):
    REC.step = step + 1
    return kwargs


# Per family: FasterCache settings (diffusers' defaults for what is left out), named. Ranges are
# (lo, hi), exclusive; attention_weight is the constant the attention weight callback returns.
PLAN = [
    (WanBatchedCfg, "wan-tiny", "adapter-wan", False, {
        "defaults": {},
        "uncond_every3_wide": dict(unconditional_batch_skip_range=3, unconditional_batch_timestep_skip_range=(-1, 950),
                                   low_frequency_weight_update_timestep_range=(99, 800), high_frequency_weight_update_timestep_range=(-1, 500),
                                   alpha_low_frequency=1.2, alpha_high_frequency=1.05, spatial_attention_block_skip_range=3,
                                   spatial_attention_timestep_skip_range=(-1, 900), attention_weight=0.3),
        "uncond_only": dict(unconditional_batch_skip_range=4, unconditional_batch_timestep_skip_range=(-1, 950),
                            spatial_attention_timestep_skip_range=(-1, 0)),
        "never": dict(unconditional_batch_skip_range=1),
    }),
    (WanBatchedCfg, "wan-tiny/wan22", "adapter-wan", False, {
        "defaults": {},
        "uncond_every3_wide": dict(unconditional_batch_skip_range=3, unconditional_batch_timestep_skip_range=(-1, 950),
                                   low_frequency_weight_update_timestep_range=(99, 800), high_frequency_weight_update_timestep_range=(-1, 500),
                                   alpha_low_frequency=1.2, alpha_high_frequency=1.05, spatial_attention_block_skip_range=3,
                                   spatial_attention_timestep_skip_range=(-1, 900), attention_weight=0.3),
    }),
    (Flux, "flux-tiny", "adapter-flux", True, {
        "defaults": {},
        "every3_wide_w0.3": dict(spatial_attention_block_skip_range=3, spatial_attention_timestep_skip_range=(-1, 980), attention_weight=0.3),
        "never": dict(spatial_attention_timestep_skip_range=(-1, 0)),
    }),
]


def faster_cache_config(settings, distilled, model):
    kwargs = dict(settings)
    weight = kwargs.pop("attention_weight", 0.5)
    return FasterCacheConfig(**kwargs, attention_weight_callback=lambda _: weight, is_guidance_distilled=distilled,
                             tensor_format="BCFHW", current_timestep_callback=lambda: model.timestep)


def main(goldens_root, packages):
    for family, name, package, distilled, configs in PLAN:
        model = family(Path(goldens_root) / name)
        tensors = {"uncached.latents_out": model.latents()}
        if family is WanBatchedCfg:
            pipeline = model.pipeline_latents()
            drift = float((tensors["uncached.latents_out"] - pipeline).norm() / pipeline.norm())
            print(name, "batched loop vs WanPipeline, relative L2", drift)
            if drift > 1e-5:
                sys.exit(f"{name}: the batched CFG loop does not reproduce WanPipeline's latents ({drift})")
        traces = {}
        for key, settings in configs.items():
            REC.clear()
            sites = [site for name, t in model.transformers.items() for site in enable(t, name, faster_cache_config(settings, distilled, model))]
            try:
                latents = model.latents()
            finally:
                for t in model.transformers.values():
                    disable(t)
            config = {k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()}
            traces[key] = dict(config=config, uncond_skipped_steps={name: list(REC.uncond_skipped.get(name, [])) for name in model.transformers},
                               forecast_attention={site: list(REC.forecast.get(site, [])) for site in sites})
            tensors[f"{key}.latents_out"] = latents
            drift = float((latents - tensors["uncached.latents_out"]).norm() / tensors["uncached.latents_out"].norm())
            print(name, key, "uncond skipped", REC.uncond_skipped, "forecast", dict(REC.forecast), "rel L2 vs uncached", drift)
        out = Path(packages) / package / "test" / "goldens" / name
        out.mkdir(parents=True, exist_ok=True)
        meta = dict(diffusers_version=diffusers.__version__, torch_version=torch.__version__, num_inference_steps=model.steps,
                    is_guidance_distilled=distilled, timesteps=model.timesteps(), traces=traces)
        (out / "cache_traces_fastercache.json").write_text(json.dumps(meta, indent=1) + "\n")
        save_file(tensors, str(out / "cache_traces_fastercache.safetensors"))


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit("usage: fastercache.py GOLDENS_ROOT PACKAGES_ROOT")
    main(*sys.argv[1:3])
