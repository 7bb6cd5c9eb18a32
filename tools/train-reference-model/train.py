"""Trains ditcache's reference model: a small FLUX-architecture text-to-image model of coloured
shapes ("a red circle at the top left"), saved as a diffusers FluxPipeline folder.

Why it exists: no real FLUX checkpoint can be downloaded here, and random weights do not behave
like trained ones under caching (their residuals do not settle as denoising proceeds), so the
project's speed and fidelity claims need a model that was really trained, small enough to ship.

Stages, all on the CPU: draw the data set -> build the tokenizers and the text encoders (frozen at
random init: distinct prompts still give distinct embeddings, which the transformer learns from)
-> train the AutoencoderKL -> train the FluxTransformer2DModel on the VAE's latents by rectified
flow -> save the pipeline in float16 -> reload it with diffusers and sample from text (the README's
grid), write the demo's prompt embeddings with diffusers' own latents as the reference Node must
reproduce, and measure how the first block's residual settles over the 28 steps.

Run with the throwaway venv of /work/shared/tools/reference-venv.sh (see README.md beside this file).
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
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
from PIL import Image, ImageDraw, ImageFont
from safetensors.torch import save_file
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer, T5Config, T5EncoderModel, T5Tokenizer

IMAGE_SIZE = 32
# Both tokenizers pad to this many tokens: every caption fits, and a short text sequence keeps the
# transformer's calls cheap. diffusers needs max_sequence_length=16 to match it (the CLIP side reads
# it from the tokenizer's model_max_length).
TEXT_TOKENS = 16
TEXT_WIDTH = 64
# The VAE halves the image twice (32x32 -> 8x8 latents) and FLUX packs 2x2 latent pixels into a
# token: 16 image tokens of 32 channels, which keeps training within its hour on two cores.
LATENT_CHANNELS = 8
DEMO_STEPS = 28

COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 200, 30),
    "purple": (140, 60, 190),
    "orange": (245, 135, 25),
}
SHAPES = ("circle", "square", "triangle")
# Centres in pixels of the 32x32 image.
POSITIONS = {
    "at the top left": (9, 9),
    "at the top right": (23, 9),
    "at the bottom left": (9, 23),
    "at the bottom right": (23, 23),
    "in the center": (16, 16),
}
BACKGROUND = (236, 236, 236)
# What the README's grid and the demo show; every caption of the data set works.
SAMPLE_PROMPTS = [
    "a red circle at the top left",
    "a blue square in the center",
    "a green triangle at the bottom right",
    "a yellow circle at the top right",
    "a purple square at the bottom left",
    "an orange triangle in the center",
]
DEMO_PROMPTS = SAMPLE_PROMPTS[:4]


def caption(colour, shape, position):
    article = "an" if colour[0] in "aeiou" else "a"
    return f"{article} {colour} {shape} {position}"


def all_captions():
    return [caption(c, s, p) for c in COLOURS for s in SHAPES for p in POSITIONS]


def draw(colour, shape, position, rng, supersample=4):
    """One 32x32 RGB image, drawn 4x larger and box-filtered down for antialiased edges."""
    size = IMAGE_SIZE * supersample
    img = Image.new("RGB", (size, size), BACKGROUND)
    d = ImageDraw.Draw(img)
    cx, cy = POSITIONS[position]
    cx = (cx + rng.uniform(-1.5, 1.5)) * supersample
    cy = (cy + rng.uniform(-1.5, 1.5)) * supersample
    r = rng.uniform(5.0, 7.0) * supersample
    fill = COLOURS[colour]
    if shape == "circle":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif shape == "square":
        s = r * 0.9
        d.rectangle([cx - s, cy - s, cx + s, cy + s], fill=fill)
    else:
        d.polygon([(cx, cy - r), (cx - r * 1.05, cy + r * 0.8), (cx + r * 1.05, cy + r * 0.8)], fill=fill)
    return img.resize((IMAGE_SIZE, IMAGE_SIZE), Image.BOX)


def make_dataset(n, seed):
    rng = random.Random(seed)
    captions = all_captions()
    index = {c: i for i, c in enumerate(captions)}
    images = np.empty((n, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    labels = np.empty(n, dtype=np.int64)
    keys = [(c, s, p) for c in COLOURS for s in SHAPES for p in POSITIONS]
    for i in range(n):
        c, s, p = keys[i % len(keys)]
        images[i] = np.asarray(draw(c, s, p, rng))
        labels[i] = index[caption(c, s, p)]
    return images, labels, captions


def to_model_range(images_uint8):
    x = torch.from_numpy(images_uint8).permute(0, 3, 1, 2).float()
    return x / 127.5 - 1.0


def build_tokenizers(captions, workdir):
    """A CLIP-style BPE tokenizer and a T5-style SentencePiece unigram tokenizer over the captions' words."""
    bpe = Tokenizer(models.BPE(unk_token="<|endoftext|>", end_of_word_suffix="</w>"))
    bpe.pre_tokenizer = pre_tokenizers.Whitespace()
    letters = list("abcdefghijklmnopqrstuvwxyz0123456789")
    bpe.train_from_iterator(
        captions,
        trainers.BpeTrainer(
            vocab_size=400,
            special_tokens=["<|startoftext|>", "<|endoftext|>"],
            initial_alphabet=letters,
            end_of_word_suffix="</w>",
            show_progress=False,
        ),
    )
    clip_dir = os.path.join(workdir, "clip")
    os.makedirs(clip_dir)
    bpe.model.save(clip_dir)
    # Every printable ASCII character, alone and word-final (as CLIP's byte vocabulary has them), so
    # that unseen words and punctuation split into characters instead of becoming unknown tokens.
    vocab_path = os.path.join(clip_dir, "vocab.json")
    with open(vocab_path) as f:
        vocab = json.load(f)
    for ch in (chr(c) for c in range(33, 127)):
        for piece in (ch, ch + "</w>"):
            if piece not in vocab:
                vocab[piece] = len(vocab)
    with open(vocab_path, "w") as f:
        json.dump(vocab, f, ensure_ascii=False)
    clip_tokenizer = CLIPTokenizer(vocab=vocab_path, merges=os.path.join(clip_dir, "merges.txt"), model_max_length=TEXT_TOKENS)

    t5_dir = os.path.join(workdir, "t5")
    os.makedirs(t5_dir)
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(captions * 8),
        model_prefix=os.path.join(t5_dir, "spiece"),
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
    t5_tokenizer = T5Tokenizer.from_pretrained(t5_dir, extra_ids=0, model_max_length=TEXT_TOKENS)
    return clip_tokenizer, clip_dir, t5_tokenizer, os.path.join(t5_dir, "spiece.model")


def round_to_half(module):
    """Rounds a module's weights to float16 and back, so that what training sees is what is shipped."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(p.half().float())
    return module


def build_text_encoders(clip_tokenizer, t5_tokenizer, seed):
    torch.manual_seed(seed)
    clip = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(clip_tokenizer),
            hidden_size=TEXT_WIDTH,
            intermediate_size=2 * TEXT_WIDTH,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=TEXT_TOKENS,
            hidden_act="quick_gelu",
            projection_dim=TEXT_WIDTH,
            bos_token_id=clip_tokenizer.bos_token_id,
            eos_token_id=clip_tokenizer.eos_token_id,
            pad_token_id=clip_tokenizer.pad_token_id,
        )
    )
    t5 = T5EncoderModel(
        T5Config(
            vocab_size=len(t5_tokenizer),
            d_model=TEXT_WIDTH,
            d_kv=16,
            d_ff=2 * TEXT_WIDTH,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
            relative_attention_max_distance=16,
            dropout_rate=0.0,
            feed_forward_proj="gated-gelu",
            tie_word_embeddings=False,
            pad_token_id=t5_tokenizer.pad_token_id,
            eos_token_id=t5_tokenizer.eos_token_id,
            decoder_start_token_id=t5_tokenizer.pad_token_id,
        )
    )
    return round_to_half(clip.eval()), round_to_half(t5.eval())


@torch.no_grad()
def encode_captions(captions, clip, clip_tokenizer, t5, t5_tokenizer):
    """FluxPipeline.encode_prompt's computation: T5 last hidden states and CLIP's pooled output."""
    t5_ids = t5_tokenizer(captions, padding="max_length", max_length=TEXT_TOKENS, truncation=True, return_tensors="pt").input_ids
    clip_ids = clip_tokenizer(captions, padding="max_length", max_length=TEXT_TOKENS, truncation=True, return_tensors="pt").input_ids
    return t5(t5_ids)[0].float(), clip(clip_ids).pooler_output.float()


def train_vae(images, minutes, seed, log):
    torch.manual_seed(seed)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(32, 64, 64),
        layers_per_block=1,
        latent_channels=LATENT_CHANNELS,
        norm_num_groups=8,
        sample_size=IMAGE_SIZE,
        use_quant_conv=False,
        use_post_quant_conv=False,
        mid_block_add_attention=True,
    )
    opt = torch.optim.AdamW(vae.parameters(), lr=1e-3, weight_decay=0.0)
    x_all = to_model_range(images)
    batch = 32
    start = time.time()
    step = 0
    running = None
    while time.time() - start < minutes * 60:
        progress = (time.time() - start) / (minutes * 60)
        for g in opt.param_groups:
            g["lr"] = 1e-3 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))
        x = x_all[torch.randint(0, len(x_all), (batch,))]
        posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.sample()).sample
        mse = F.mse_loss(recon, x)
        # A light KL term keeps the latent smooth enough to diffuse in without costing detail.
        loss = mse + 1e-6 * posterior.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        running = mse.item() if running is None else 0.98 * running + 0.02 * mse.item()
        if step % 100 == 0:
            log({"stage": "vae", "step": step, "seconds": round(time.time() - start, 1), "mse": running})
        step += 1
    return round_to_half(vae.eval()), {"steps": step, "batch": batch, "seconds": round(time.time() - start, 1), "final_mse": running}


@torch.no_grad()
def encode_images(vae, images):
    means, stds = [], []
    x_all = to_model_range(images)
    for i in range(0, len(x_all), 256):
        dist = vae.encode(x_all[i : i + 256]).latent_dist
        means.append(dist.mean)
        stds.append(dist.std)
    return torch.cat(means), torch.cat(stds)


def pack(latents):
    b, c, h, w = latents.shape
    return latents.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(b, (h // 2) * (w // 2), c * 4)


def image_ids(h, w):
    ids = torch.zeros(h, w, 3)
    ids[..., 1] += torch.arange(h)[:, None]
    ids[..., 2] += torch.arange(w)[None, :]
    return ids.reshape(h * w, 3)


def make_transformer(seed):
    torch.manual_seed(seed)
    return FluxTransformer2DModel(
        patch_size=1,
        in_channels=LATENT_CHANNELS * 4,
        num_layers=2,
        num_single_layers=6,
        attention_head_dim=64,
        num_attention_heads=3,
        joint_attention_dim=TEXT_WIDTH,
        pooled_projection_dim=TEXT_WIDTH,
        guidance_embeds=False,
        axes_dims_rope=[16, 24, 24],
    )


def train_transformer(latent_mean, latent_std, labels, prompt_embeds, pooled, scaling, shift, minutes, seed, log, hp):
    model = make_transformer(seed)
    ema = make_transformer(seed)
    ema.load_state_dict(model.state_dict())
    ema.requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=hp["lr"], betas=(0.9, 0.99), weight_decay=hp["weight_decay"])
    gen = torch.Generator().manual_seed(seed)
    h, w = latent_mean.shape[2:]
    img_ids = image_ids(h // 2, w // 2)
    txt_ids = torch.zeros(TEXT_TOKENS, 3)
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
        z = latent_mean[idx] + latent_std[idx] * torch.randn(latent_mean[idx].shape, generator=gen)
        x0 = pack((z - shift) * scaling)
        noise = torch.randn(x0.shape, generator=gen)
        # Logit-normal sigmas (SD3 / FLUX training): most of the weight on the middle of the trajectory.
        sigma = torch.sigmoid(torch.randn(batch, generator=gen))
        xt = (1 - sigma[:, None, None]) * x0 + sigma[:, None, None] * noise
        lab = labels[idx]
        pred = model(
            hidden_states=xt,
            encoder_hidden_states=prompt_embeds[lab],
            pooled_projections=pooled[lab],
            timestep=sigma,
            img_ids=img_ids,
            txt_ids=txt_ids,
            return_dict=False,
        )[0]
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
        if step % 50 == 0:
            log({"stage": "transformer", "step": step, "seconds": round(time.time() - start, 1), "loss": running, "lr": lr})
        step += 1
    return round_to_half(ema.eval()), {"steps": step, "seconds": round(time.time() - start, 1), "final_loss_ema_of_batches": running}


@torch.no_grad()
def held_out_loss(model, latent_mean, labels, prompt_embeds, pooled, scaling, shift, seed, n=1024):
    """Flow-matching loss of the shipped (EMA, float16-rounded) weights on fixed noise and sigmas."""
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, len(labels), (n,), generator=gen)
    x0 = pack((latent_mean[idx] - shift) * scaling)
    noise = torch.randn(x0.shape, generator=gen)
    sigma = torch.sigmoid(torch.randn(n, generator=gen))
    xt = (1 - sigma[:, None, None]) * x0 + sigma[:, None, None] * noise
    h, w = latent_mean.shape[2:]
    total = 0.0
    for i in range(0, n, 128):
        s = slice(i, i + 128)
        pred = model(
            hidden_states=xt[s],
            encoder_hidden_states=prompt_embeds[labels[idx[s]]],
            pooled_projections=pooled[labels[idx[s]]],
            timestep=sigma[s],
            img_ids=image_ids(h // 2, w // 2),
            txt_ids=torch.zeros(TEXT_TOKENS, 3),
            return_dict=False,
        )[0]
        total += F.mse_loss(pred, noise[s] - x0[s], reduction="sum").item()
    return total / noise.numel()


def sample_grid(pipe, prompts, seeds, path, scale=4):
    """Rows of prompts, columns of seeds, generated from text by diffusers, upscaled for viewing."""
    label_width = 250
    tile = IMAGE_SIZE * scale
    grid = Image.new("RGB", (label_width + tile * len(seeds), tile * len(prompts)), (255, 255, 255))
    d = ImageDraw.Draw(grid)
    font = ImageFont.load_default()
    for r, prompt in enumerate(prompts):
        d.text((6, r * tile + tile // 2 - 6), prompt, fill=(0, 0, 0), font=font)
        for c, seed in enumerate(seeds):
            img = pipe(
                prompt,
                height=IMAGE_SIZE,
                width=IMAGE_SIZE,
                num_inference_steps=DEMO_STEPS,
                max_sequence_length=TEXT_TOKENS,
                generator=torch.Generator().manual_seed(seed),
            ).images[0]
            grid.paste(img.resize((tile, tile), Image.NEAREST), (label_width + c * tile, r * tile))
    grid.save(path)


@torch.no_grad()
def first_block_residual_diffs(pipe, prompt, seed):
    """Per step, mean|R_prev - R| / mean|R_prev| of the first double block's hidden-state residual:
    the quantity DBCache with Fn = 1 compares with its threshold."""
    residuals = []

    def hook(module, args, kwargs, output):
        residuals.append((output[1] - kwargs["hidden_states"]).clone())

    handle = pipe.transformer.transformer_blocks[0].register_forward_hook(hook, with_kwargs=True)
    try:
        pipe(prompt, height=IMAGE_SIZE, width=IMAGE_SIZE, num_inference_steps=DEMO_STEPS, max_sequence_length=TEXT_TOKENS,
             generator=torch.Generator().manual_seed(seed), output_type="latent")
    finally:
        handle.remove()
    return [((a - b).abs().mean() / a.abs().mean()).item() for a, b in zip(residuals, residuals[1:])]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="the pipeline folder to write (replaced if it exists)")
    parser.add_argument("--vae-minutes", type=float, default=4.0)
    parser.add_argument("--transformer-minutes", type=float, default=36.0)
    parser.add_argument("--images", type=int, default=18000)
    parser.add_argument("--seed", type=int, default=0)
    # One thread: on a machine shared with other jobs, two threads that wait on each other ran a
    # training step five times slower than one thread did.
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    hp = {"lr": 5e-4, "weight_decay": 0.01, "batch": 32, "warmup_steps": 100, "ema_decay": 0.998}
    t_start = time.time()
    log_lines = []

    def log(record):
        log_lines.append(record)
        print(json.dumps(record), flush=True)

    images, labels, captions = make_dataset(args.images, args.seed)
    log({"stage": "data", "images": len(images), "captions": len(captions), "seconds": round(time.time() - t_start, 1)})
    work = tempfile.mkdtemp(prefix="flux-shapes-")
    try:
        clip_tokenizer, clip_vocab_dir, t5_tokenizer, spiece_path = build_tokenizers(captions, work)
        clip, t5 = build_text_encoders(clip_tokenizer, t5_tokenizer, args.seed)
        prompt_embeds, pooled = encode_captions(captions, clip, clip_tokenizer, t5, t5_tokenizer)
        distinct = torch.cdist(prompt_embeds.flatten(1), prompt_embeds.flatten(1))
        log({"stage": "text", "min_distance_between_caption_embeddings": distinct[~torch.eye(len(captions), dtype=bool)].min().item()})

        vae, vae_report = train_vae(images, args.vae_minutes, args.seed, log)
        latent_mean, latent_std = encode_images(vae, images)
        shift = latent_mean.mean().item()
        scaling = 1.0 / (latent_mean - shift).std().item()
        vae.register_to_config(scaling_factor=round(scaling, 4), shift_factor=round(shift, 4))
        scaling, shift = vae.config.scaling_factor, vae.config.shift_factor
        log({"stage": "latents", "scaling_factor": scaling, "shift_factor": shift})

        transformer, tr_report = train_transformer(
            latent_mean, latent_std, torch.from_numpy(labels), prompt_embeds, pooled, scaling, shift,
            args.transformer_minutes, args.seed, log, hp,
        )
        eval_loss = held_out_loss(transformer, latent_mean, torch.from_numpy(labels), prompt_embeds, pooled, scaling, shift, args.seed + 1)
        log({"stage": "eval", "flow_matching_loss_of_shipped_weights": eval_loss})

        scheduler = FlowMatchEulerDiscreteScheduler(
            num_train_timesteps=1000,
            shift=1.0,
            use_dynamic_shifting=True,
            base_image_seq_len=16,
            max_image_seq_len=256,
            base_shift=0.5,
            max_shift=1.15,
        )
        pipe = FluxPipeline(scheduler=scheduler, vae=vae, text_encoder=clip, tokenizer=clip_tokenizer,
                            text_encoder_2=t5, tokenizer_2=t5_tokenizer, transformer=transformer)
        if os.path.exists(args.out):
            shutil.rmtree(args.out)
        pipe.to(torch.float16).save_pretrained(args.out, safe_serialization=True)
        # The files real checkpoints carry beside tokenizer.json, for readers that want them.
        shutil.copy(os.path.join(clip_vocab_dir, "vocab.json"), os.path.join(args.out, "tokenizer"))
        shutil.copy(os.path.join(clip_vocab_dir, "merges.txt"), os.path.join(args.out, "tokenizer"))
        shutil.copy(spiece_path, os.path.join(args.out, "tokenizer_2"))
    finally:
        shutil.rmtree(work)

    # Everything below reads the saved folder back, as a user of diffusers would.
    pipe = FluxPipeline.from_pretrained(args.out, torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    check_embeds, check_pooled = pipe.encode_prompt(captions, prompt_2=None, max_sequence_length=TEXT_TOKENS)[:2]
    text_roundtrip = max((check_embeds - prompt_embeds).abs().max().item(), (check_pooled - pooled).abs().max().item())
    log({"stage": "reload", "max_abs_diff_of_caption_embeddings": text_roundtrip})

    sample_grid(pipe, SAMPLE_PROMPTS, [0, 1, 2, 3], os.path.join(args.out, "samples.png"))

    demo_embeds, demo_pooled = pipe.encode_prompt(DEMO_PROMPTS, prompt_2=None, max_sequence_length=TEXT_TOKENS)[:2]
    reference = []
    for i in range(len(DEMO_PROMPTS)):
        reference.append(pipe(prompt_embeds=demo_embeds[i : i + 1], pooled_prompt_embeds=demo_pooled[i : i + 1], height=IMAGE_SIZE,
                              width=IMAGE_SIZE, num_inference_steps=DEMO_STEPS, generator=torch.Generator().manual_seed(i),
                              output_type="latent").images)
    save_file(
        {"prompt_embeds": demo_embeds.contiguous(), "pooled_prompt_embeds": demo_pooled.contiguous(),
         "diffusers_latents_out": torch.cat(reference).contiguous()},
        os.path.join(args.out, "demo-prompts.safetensors"),
        metadata={"prompts": json.dumps(DEMO_PROMPTS), "seeds": json.dumps(list(range(len(DEMO_PROMPTS)))),
                  "num_inference_steps": str(DEMO_STEPS), "height": str(IMAGE_SIZE), "width": str(IMAGE_SIZE)},
    )
    diffs = {p: [round(d, 4) for d in first_block_residual_diffs(pipe, p, i)] for i, p in enumerate(DEMO_PROMPTS)}

    params = {name: sum(p.numel() for p in getattr(pipe, name).parameters())
              for name in ("transformer", "vae", "text_encoder", "text_encoder_2")}
    report = {
        "captions": len(captions),
        "images": len(images),
        "hyper_parameters": hp,
        "vae": vae_report,
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
