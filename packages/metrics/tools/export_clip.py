"""Exports a Hugging Face CLIP checkpoint to the ONNX files @ditcache/metrics reads.

Run it where you have the checkpoint (it is not run by CI):

    pip install torch transformers onnx onnxruntime
    python export_clip.py --model openai/clip-vit-large-patch14 --out ~/.cache/ditcache/metrics

`--model` is a hub id or a local folder in Hugging Face format (CLIPModel): torchmetrics'
CLIPScore defaults to openai/clip-vit-large-patch14; cache-dit's to
laion/CLIP-ViT-g-14-laion2B-s12B-b42K (over 2 GB: it is written with external data files and
then needs onnxruntime-node, the WebAssembly runtime loads single files under 2 GB only).

It writes, into --out:
  clip-image.onnx   input pixel_values (N, 3, S, S) float32, output image_embeds (N, D)
  clip-text.onnx    inputs input_ids, attention_mask (N, L) int64, output text_embeds (N, D)
  clip-tokenizer/   vocab.json and merges.txt of the checkpoint's tokenizer
  clip-config.json  imageSize S, mean, std (the image processor's) and contextLength L
The embeddings are the projected ones (CLIPModel.get_image_features / get_text_features);
the TS side normalises them and takes 100 * max(cos, 0).

After exporting, the script compares the ONNX embeddings with the PyTorch model's on a random
image and two prompts and prints the largest relative difference.
"""
import argparse
import json
import os
import shutil

import numpy as np
import torch


class ImageTower(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, pixel_values):
        # What CLIPModel.get_image_features computes: the pooled output, projected.
        pooled = self.model.vision_model(pixel_values=pixel_values).pooler_output
        return self.model.visual_projection(pooled)


class TextTower(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        # The end-of-text token's output, projected (CLIPModel.get_text_features).
        pooled = self.model.text_model(input_ids=input_ids, attention_mask=attention_mask).pooler_output
        return self.model.text_projection(pooled)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="openai/clip-vit-large-patch14")
    parser.add_argument("--out", required=True)
    parser.add_argument("--opset", type=int, default=17)
    args = parser.parse_args()

    from transformers import CLIPModel, CLIPProcessor

    os.makedirs(args.out, exist_ok=True)
    model = CLIPModel.from_pretrained(args.model).eval()
    processor = CLIPProcessor.from_pretrained(args.model)
    image_processor = processor.image_processor
    size = image_processor.crop_size["height"]
    context = model.config.text_config.max_position_embeddings

    image_path = os.path.join(args.out, "clip-image.onnx")
    text_path = os.path.join(args.out, "clip-text.onnx")
    torch.onnx.export(
        ImageTower(model).eval(), (torch.rand(1, 3, size, size),), image_path,
        input_names=["pixel_values"], output_names=["image_embeds"],
        dynamic_axes={"pixel_values": {0: "N"}, "image_embeds": {0: "N"}}, opset_version=args.opset, dynamo=False,
    )
    ids = torch.full((2, context), processor.tokenizer.pad_token_id, dtype=torch.long)
    torch.onnx.export(
        TextTower(model).eval(), (ids, torch.ones_like(ids)), text_path,
        input_names=["input_ids", "attention_mask"], output_names=["text_embeds"],
        dynamic_axes={"input_ids": {0: "N"}, "attention_mask": {0: "N"}, "text_embeds": {0: "N"}},
        opset_version=args.opset, dynamo=False,
    )

    tokenizer_dir = os.path.join(args.out, "clip-tokenizer")
    os.makedirs(tokenizer_dir, exist_ok=True)
    saved = processor.tokenizer.save_pretrained(tokenizer_dir)
    for name in ("vocab.json", "merges.txt"):
        if not os.path.exists(os.path.join(tokenizer_dir, name)):
            raise SystemExit(f"the tokenizer of {args.model} has no {name} (saved: {saved}); a CLIP BPE tokenizer is needed")
    with open(os.path.join(args.out, "clip-config.json"), "w") as f:
        json.dump({
            "imageSize": size,
            "mean": list(image_processor.image_mean),
            "std": list(image_processor.image_std),
            "contextLength": context,
            "source": args.model,
        }, f, indent=1)
    print(f"wrote {image_path}, {text_path}, {tokenizer_dir}, clip-config.json")

    import onnxruntime

    image_session = onnxruntime.InferenceSession(image_path, providers=["CPUExecutionProvider"])
    text_session = onnxruntime.InferenceSession(text_path, providers=["CPUExecutionProvider"])
    pixel_values = torch.rand(1, 3, size, size) * 2 - 1
    tokens = processor.tokenizer(["a photo of a cat", "an astronaut riding a horse"], padding="max_length",
                                 max_length=context, truncation=True, return_tensors="pt")
    with torch.no_grad():
        image_reference = ImageTower(model)(pixel_values).numpy()
        text_reference = TextTower(model)(tokens["input_ids"], tokens["attention_mask"]).numpy()
        # And against CLIPModel's own forward (logits_per_image = scale * cos), for the record.
        logits = model(pixel_values=pixel_values, **tokens).logits_per_image[0].numpy()
    image_ours = image_session.run(None, {"pixel_values": pixel_values.numpy()})[0]
    text_ours = text_session.run(None, {"input_ids": tokens["input_ids"].numpy(),
                                        "attention_mask": tokens["attention_mask"].numpy()})[0]
    worst = max(
        float(np.abs(image_ours - image_reference).max() / np.abs(image_reference).max()),
        float(np.abs(text_ours - text_reference).max() / np.abs(text_reference).max()),
    )
    print(f"largest relative difference of the embeddings: {worst:.2e}")
    cos = (image_ours / np.linalg.norm(image_ours, axis=1, keepdims=True)) @ (
        text_ours / np.linalg.norm(text_ours, axis=1, keepdims=True)).T
    print(f"CLIPModel logits / logit_scale: {logits / model.logit_scale.exp().item()}, ONNX cosines: {cos[0]}")
    if shutil.which("node"):
        print("now: ditcache-metrics clip_score -i2 IMAGES --prompts prompts.txt --models " + args.out)


if __name__ == "__main__":
    main()
