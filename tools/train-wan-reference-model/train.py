"""Trains ditcache's Wan reference model: a small Wan 2.1-architecture text-to-video model of one
coloured shape moving across a light background ("a red circle moving right"), 9 frames of
32x32, saved as a diffusers WanPipeline folder.

Why it exists: no real Wan checkpoint can be downloaded here, and random weights do not behave like
trained ones under caching (their block residuals do not settle over the denoising steps), so the
project's speed and fidelity claims on Wan need a model that was really trained, small enough to
ship.

Stages, all on the CPU: draw the clips -> build a SentencePiece tokenizer from the captions and a
UMT5 encoder frozen at its random initialisation -> train the AutoencoderKLWan on reconstruction
-> train the WanTransformer3DModel on its normalised latents by rectified flow (with 10% of the
captions dropped to the empty prompt, so classifier-free guidance has an unconditional branch) ->
save the pipeline in float16 -> reload it with diffusers, check its prompt encoding, render the
README's samples from text and measure how the first block's residual settles over the steps.

Run with /work/refvenv/bin/python (see README.md beside this file).
"""
import argparse
import json
import math
import os
import random
import shutil
import tempfile
import time

import numpy as np
import sentencepiece as spm
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline, WanTransformer3DModel
from PIL import Image, ImageDraw, ImageFont
from transformers import T5Tokenizer, UMT5Config, UMT5EncoderModel

SIZE = 32
FRAMES = 9  # 1 + 4k: the VAE keeps the first frame and folds every later 4 into one latent frame
TEXT_TOKENS = 16
TEXT_WIDTH = 64
Z_DIM = 16
STEPS = 30
GUIDANCE = 3.0
FLOW_SHIFT = 3.0
CAPTION_DROPOUT = 0.1

COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 200, 30),
    "purple": (140, 60, 190),
    "orange": (245, 135, 25),
}
SHAPES = ("circle", "square", "triangle")
# Unit step per frame in pixels for each direction (x right, y down).
DIRECTIONS = {"right": (1, 0), "left": (-1, 0), "up": (0, -1), "down": (0, 1)}
BACKGROUND = (236, 236, 236)
SAMPLE_PROMPTS = [
    "a red circle moving right",
    "a blue square moving left",
    "a green triangle moving down",
    "an orange circle moving up",
]
BENCH_PROMPTS = [
    "a red circle moving right",
    "a blue square moving left",
    "a green triangle moving down",
    "a yellow circle moving up",
    "a purple square moving right",
    "an orange triangle moving left",
    "a red triangle moving up",
    "a green square moving down",
]


def caption(colour, shape, direction):
    article = "an" if colour[0] in "aeiou" else "a"
    return f"{article} {colour} {shape} moving {direction}"


def all_captions():
    return [caption(c, s, d) for c in COLOURS for s in SHAPES for d in DIRECTIONS]


def draw_frame(colour, shape, cx, cy, r, supersample=4):
    size = SIZE * supersample
    img = Image.new("RGB", (size, size), BACKGROUND)
    d = ImageDraw.Draw(img)
    cx, cy, r = cx * supersample, cy * supersample, r * supersample
    fill = COLOURS[colour]
    if shape == "circle":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif shape == "square":
        s = r * 0.9
        d.rectangle([cx - s, cy - s, cx + s, cy + s], fill=fill)
    else:
        d.polygon([(cx, cy - r), (cx - r * 1.05, cy + r * 0.8), (cx + r * 1.05, cy + r * 0.8)], fill=fill)
    return np.asarray(img.resize((SIZE, SIZE), Image.BOX))


def draw_clip(colour, shape, direction, rng):
    """FRAMES frames of one shape crossing the frame: about 16 px of travel at 1.6-2.4 px a frame."""
    dx, dy = DIRECTIONS[direction]
    r = rng.uniform(4.5, 6.0)
    speed = rng.uniform(1.6, 2.4)
    travel = speed * (FRAMES - 1)
    along0 = 16 - travel / 2 + rng.uniform(-2.0, 2.0)  # start so that the path is roughly centred
    across = rng.uniform(10.0, 22.0)
    frames = []
    for f in range(FRAMES):
        along = along0 + speed * f
        if dx:
            cx, cy = (along if dx > 0 else SIZE - along), across
        else:
            cx, cy = across, (along if dy > 0 else SIZE - along)
        frames.append(draw_frame(colour, shape, cx, cy, r))
    return np.stack(frames)


def make_dataset(n, seed):
    rng = random.Random(seed)
    captions = all_captions()
    keys = [(c, s, d) for c in COLOURS for s in SHAPES for d in DIRECTIONS]
    clips = np.empty((n, FRAMES, SIZE, SIZE, 3), dtype=np.uint8)
    labels = np.empty(n, dtype=np.int64)
    for i in range(n):
        c, s, d = keys[i % len(keys)]
        clips[i] = draw_clip(c, s, d, rng)
        labels[i] = captions.index(caption(c, s, d))
    return clips, labels, captions


def to_model_range(clips_uint8):
    """(N, F, H, W, 3) uint8 -> (N, 3, F, H, W) in [-1, 1], the VAE's layout."""
    return torch.from_numpy(clips_uint8).permute(0, 4, 1, 2, 3).float() / 127.5 - 1.0


def build_tokenizer(captions, workdir):
    """A T5-style SentencePiece unigram tokenizer over the captions (pad 0, eos 1, unk 2, as T5's)."""
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(captions * 8),
        model_prefix=os.path.join(workdir, "spiece"),
        vocab_size=64,
        model_type="unigram",
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        hard_vocab_limit=False,
        character_coverage=1.0,
        minloglevel=2,
    )
    return T5Tokenizer.from_pretrained(workdir, extra_ids=0, model_max_length=TEXT_TOKENS)


def round_to_half(module):
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(p.half().float())
    return module


def build_text_encoder(tokenizer, seed):
    torch.manual_seed(seed)
    config = UMT5Config(
        vocab_size=len(tokenizer),
        d_model=TEXT_WIDTH,
        d_kv=16,
        d_ff=2 * TEXT_WIDTH,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        relative_attention_max_distance=16,
        feed_forward_proj="gated-gelu",
        dropout_rate=0.0,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )
    return round_to_half(UMT5EncoderModel(config).eval())


@torch.no_grad()
def encode_texts(texts, encoder, tokenizer):
    """The text embeddings WanPipeline gives the transformer: the encoder's last hidden state over a
    prompt's own tokens (its eos included), zeros over the padding."""
    enc = tokenizer(texts, padding="max_length", max_length=TEXT_TOKENS, truncation=True, add_special_tokens=True,
                    return_attention_mask=True, return_tensors="pt")
    hidden = encoder(enc.input_ids, enc.attention_mask).last_hidden_state.float()
    return hidden * enc.attention_mask[:, :, None].float()


def make_vae(seed):
    torch.manual_seed(seed)
    # Two levels of 2x: 32x32 -> 8x8 latents; both halve time too, so 9 frames -> 3 latent frames.
    return AutoencoderKLWan(
        base_dim=16,
        z_dim=Z_DIM,
        dim_mult=[1, 2, 2],
        num_res_blocks=1,
        attn_scales=[],
        temperal_downsample=[True, True],
        dropout=0.0,
        latents_mean=[0.0] * Z_DIM,
        latents_std=[1.0] * Z_DIM,
        scale_factor_temporal=4,
        scale_factor_spatial=4,
    )


def train_vae(clips, minutes, seed, log):
    vae = make_vae(seed)
    opt = torch.optim.AdamW(vae.parameters(), lr=1e-3, weight_decay=0.0)
    gen = torch.Generator().manual_seed(seed)
    batch = 8
    start = time.time()
    step = 0
    running = None
    while time.time() - start < minutes * 60:
        progress = (time.time() - start) / (minutes * 60)
        for g in opt.param_groups:
            g["lr"] = 1e-3 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))
        x = to_model_range(clips[torch.randint(0, len(clips), (batch,), generator=gen).numpy()])
        posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.sample(generator=gen)).sample
        mse = F.mse_loss(recon, x)
        loss = mse + 1e-6 * posterior.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        running = mse.item() if running is None else 0.95 * running + 0.05 * mse.item()
        if step % 20 == 0:
            log({"stage": "vae", "step": step, "seconds": round(time.time() - start, 1), "mse": running})
        step += 1
    return round_to_half(vae.eval()), {"steps": step, "batch": batch, "seconds": round(time.time() - start, 1), "final_mse": running}


@torch.no_grad()
def encode_clips(vae, clips):
    return torch.cat([vae.encode(to_model_range(clips[i : i + 64])).latent_dist.mean for i in range(0, len(clips), 64)])


def make_transformer(seed, hp):
    torch.manual_seed(seed)
    return WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=hp["heads"],
        attention_head_dim=hp["head_dim"],
        in_channels=Z_DIM,
        out_channels=Z_DIM,
        text_dim=TEXT_WIDTH,
        freq_dim=256,
        ffn_dim=hp["ffn_dim"],
        num_layers=hp["layers"],
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        eps=1e-6,
        rope_max_seq_len=64,
    )


def shifted(u, shift):
    """The flow shift Wan's schedulers apply to sigmas: more of the steps at high noise."""
    return shift * u / (1 + (shift - 1) * u)


def train_transformer(lat_mean, norm_mean, norm_std, labels, text, empty, minutes, seed, log, hp):
    model = make_transformer(seed, hp)
    ema = make_transformer(seed, hp)
    ema.load_state_dict(model.state_dict())
    ema.requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=hp["lr"], betas=(0.9, 0.99), weight_decay=hp["weight_decay"])
    gen = torch.Generator().manual_seed(seed)
    batch = hp["batch"]
    start = time.time()
    step = 0
    running = None
    while time.time() - start < minutes * 60:
        progress = (time.time() - start) / (minutes * 60)
        warm = min(1.0, (step + 1) / hp["warmup_steps"])
        lr = hp["lr"] * warm * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))
        for g in opt.param_groups:
            g["lr"] = lr
        idx = torch.randint(0, len(labels), (batch,), generator=gen)
        # The posterior means: the decoder reads them well, and they keep the data's spread in the
        # normalised latents instead of the posterior's own noise.
        x0 = (lat_mean[idx] - norm_mean) / norm_std
        noise = torch.randn(x0.shape, generator=gen)
        sigma = shifted(torch.sigmoid(torch.randn(batch, generator=gen)), FLOW_SHIFT)
        s = sigma[:, None, None, None, None]
        xt = (1 - s) * x0 + s * noise
        cond = text[labels[idx]].clone()
        drop = torch.rand(batch, generator=gen) < CAPTION_DROPOUT
        cond[drop] = empty
        pred = model(hidden_states=xt, timestep=sigma * 1000, encoder_hidden_states=cond, return_dict=False)[0]
        loss = F.mse_loss(pred, noise - x0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        decay = min(hp["ema_decay"], (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), model.parameters()):
                pe.lerp_(pm, 1 - decay)
        running = loss.item() if running is None else 0.99 * running + 0.01 * loss.item()
        if step % 25 == 0:
            log({"stage": "transformer", "step": step, "seconds": round(time.time() - start, 1), "loss": running, "lr": lr})
        step += 1
    return round_to_half(ema.eval()), {"steps": step, "batch": batch, "seconds": round(time.time() - start, 1), "final_loss_ema_of_batches": running}


@torch.no_grad()
def held_out_loss(model, lat_mean, norm_mean, norm_std, labels, text, seed, n=512):
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, len(labels), (n,), generator=gen)
    x0 = (lat_mean[idx] - norm_mean) / norm_std
    noise = torch.randn(x0.shape, generator=gen)
    sigma = shifted(torch.sigmoid(torch.randn(n, generator=gen)), FLOW_SHIFT)
    s = sigma[:, None, None, None, None]
    xt = (1 - s) * x0 + s * noise
    total = 0.0
    for i in range(0, n, 64):
        sl = slice(i, i + 64)
        pred = model(hidden_states=xt[sl], timestep=sigma[sl] * 1000, encoder_hidden_states=text[labels[idx[sl]]], return_dict=False)[0]
        total += F.mse_loss(pred, noise[sl] - x0[sl], reduction="sum").item()
    return total / noise.numel()


def run_pipe(pipe, prompt, seed, **kw):
    return pipe(prompt, height=SIZE, width=SIZE, num_frames=FRAMES, num_inference_steps=STEPS, guidance_scale=GUIDANCE,
                max_sequence_length=TEXT_TOKENS, generator=torch.Generator().manual_seed(seed), **kw)


def sample_grid(pipe, prompts, seeds, path, scale=3):
    """One row per prompt and seed: the 9 frames side by side, generated from text by diffusers."""
    label_width = 200
    tile = SIZE * scale
    rows = [(p, s) for p in prompts for s in seeds]
    grid = Image.new("RGB", (label_width + tile * FRAMES, tile * len(rows)), (255, 255, 255))
    d = ImageDraw.Draw(grid)
    font = ImageFont.load_default()
    for r, (prompt, seed) in enumerate(rows):
        d.text((6, r * tile + tile // 2 - 6), f"{prompt} (seed {seed})", fill=(0, 0, 0), font=font)
        video = run_pipe(pipe, prompt, seed, output_type="np").frames[0]
        for f in range(FRAMES):
            img = Image.fromarray((np.clip(video[f], 0, 1) * 255).round().astype(np.uint8))
            grid.paste(img.resize((tile, tile), Image.NEAREST), (label_width + f * tile, r * tile))
    grid.save(path)


@torch.no_grad()
def first_block_residual_diffs(pipe, prompt, seed):
    """Per step, mean|R_prev - R| / mean|R_prev| of the first block's residual (conditional branch):
    the quantity DBCache with Fn = 1 compares with its threshold."""
    residuals = []

    def hook(module, args, kwargs, output):
        hidden = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
        residuals.append((output - hidden).clone())

    handle = pipe.transformer.blocks[0].register_forward_hook(hook, with_kwargs=True)
    try:
        run_pipe(pipe, prompt, seed, output_type="latent")
    finally:
        handle.remove()
    # With guidance each step calls the transformer twice (conditional first); keep the conditional calls.
    cond = residuals[::2] if GUIDANCE > 1 else residuals
    return [((a - b).abs().mean() / a.abs().mean()).item() for a, b in zip(cond, cond[1:])]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="the pipeline folder to write (replaced if it exists)")
    parser.add_argument("--vae-minutes", type=float, default=4.0)
    parser.add_argument("--transformer-minutes", type=float, default=22.0)
    parser.add_argument("--clips", type=int, default=4800)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    hp = {"layers": 12, "heads": 2, "head_dim": 48, "ffn_dim": 256, "lr": 5e-4, "weight_decay": 0.01, "batch": 32,
          "warmup_steps": 100, "ema_decay": 0.998}
    t_start = time.time()
    log_lines = []

    def log(record):
        log_lines.append(record)
        print(json.dumps(record), flush=True)

    clips, labels, captions = make_dataset(args.clips, args.seed)
    log({"stage": "data", "clips": len(clips), "captions": len(captions), "seconds": round(time.time() - t_start, 1)})
    work = tempfile.mkdtemp(prefix="wan-shapes-")
    try:
        tokenizer = build_tokenizer(captions, work)
        encoder = build_text_encoder(tokenizer, args.seed)
        text = encode_texts(captions, encoder, tokenizer)
        empty = encode_texts([""], encoder, tokenizer)[0]
        flat = text.flatten(1)
        dist = torch.cdist(flat, flat)
        log({"stage": "text", "min_distance_between_caption_embeddings": dist[~torch.eye(len(captions), dtype=bool)].min().item()})

        vae, vae_report = train_vae(clips, args.vae_minutes, args.seed, log)
        lat_mean = encode_clips(vae, clips)
        ch_mean = lat_mean.mean(dim=(0, 2, 3, 4))
        ch_std = (lat_mean - ch_mean[None, :, None, None, None]).std(dim=(0, 2, 3, 4))
        vae.register_to_config(latents_mean=[round(v, 4) for v in ch_mean.tolist()], latents_std=[round(v, 4) for v in ch_std.tolist()])
        norm_mean = torch.tensor(vae.config.latents_mean)[None, :, None, None, None]
        norm_std = torch.tensor(vae.config.latents_std)[None, :, None, None, None]
        with torch.no_grad():
            sample = to_model_range(clips[:64])
            recon = vae.decode(lat_mean[:64]).sample.clamp(-1, 1)
            recon_psnr = (10 * torch.log10(4.0 / F.mse_loss(recon, sample))).item()
        log({"stage": "latents", "latent_shape": list(lat_mean.shape[1:]), "reconstruction_psnr_db": recon_psnr})

        transformer, tr_report = train_transformer(lat_mean, norm_mean, norm_std, torch.from_numpy(labels), text, empty,
                                                   args.transformer_minutes, args.seed, log, hp)
        eval_loss = held_out_loss(transformer, lat_mean, norm_mean, norm_std, torch.from_numpy(labels), text, args.seed + 1)
        log({"stage": "eval", "flow_matching_loss_of_shipped_weights": eval_loss})

        scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, num_train_timesteps=1000,
                                            flow_shift=FLOW_SHIFT)
        pipe = WanPipeline(tokenizer=tokenizer, text_encoder=encoder, transformer=transformer, vae=vae, scheduler=scheduler)
        if os.path.exists(args.out):
            shutil.rmtree(args.out)
        pipe.to(torch.float16).save_pretrained(args.out, safe_serialization=True)
        shutil.copy(os.path.join(work, "spiece.model"), os.path.join(args.out, "tokenizer"))
    finally:
        shutil.rmtree(work)
    with open(os.path.join(args.out, "ditcache.json"), "w") as f:
        json.dump({"_comment": f"What this model was trained for (see README.md): {FRAMES} frames of {SIZE}x{SIZE}, {STEPS} steps, "
                               f"{TEXT_TOKENS} text tokens, guidance {GUIDANCE}. Read by ditcache's generate() and CLI where no value is given.",
                   "height": SIZE, "width": SIZE, "num_frames": FRAMES, "num_inference_steps": STEPS, "guidance_scale": GUIDANCE,
                   "max_sequence_length": TEXT_TOKENS}, f, indent=2)
        f.write("\n")

    # Read the saved folder back, as a user of diffusers would.
    pipe = WanPipeline.from_pretrained(args.out, torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    check = pipe.encode_prompt(captions, do_classifier_free_guidance=False, max_sequence_length=TEXT_TOKENS)[0]
    log({"stage": "reload", "max_abs_diff_of_caption_embeddings": (check - text).abs().max().item()})
    sample_grid(pipe, SAMPLE_PROMPTS, [0, 1], os.path.join(args.out, "samples.png"))
    diffs = {p: [round(d, 4) for d in first_block_residual_diffs(pipe, p, i)] for i, p in enumerate(SAMPLE_PROMPTS[:2])}
    params = {name: sum(p.numel() for p in getattr(pipe, name).parameters()) for name in ("transformer", "vae", "text_encoder")}
    report = {
        "captions": len(captions),
        "clips": len(clips),
        "hyper_parameters": hp,
        "vae": vae_report,
        "vae_reconstruction_psnr_db": recon_psnr,
        "transformer": tr_report,
        "held_out_flow_matching_loss": eval_loss,
        "parameters": params,
        "first_block_residual_diffs_per_step": diffs,
        "total_minutes": round((time.time() - t_start) / 60, 1),
        "torch": torch.__version__,
        "threads": args.threads,
    }
    with open(os.path.join(args.out, "training-report.json"), "w") as f:
        json.dump(report, f, indent=2)
    with open(os.path.join(args.out, "training-log.jsonl"), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in log_lines)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
