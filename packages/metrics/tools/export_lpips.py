"""Exports LPIPS (AlexNet or VGG16, version 0.1) to the ONNX file @ditcache/metrics reads.

Run it where you have the weights (it is not run by CI, and nothing here downloads in CI):

    pip install torch torchvision lpips onnx onnxruntime
    python export_lpips.py --net alex --out ~/.cache/ditcache/metrics/lpips-alex.onnx
    python export_lpips.py --net vgg  --out ~/.cache/ditcache/metrics/lpips-vgg.onnx

`lpips.LPIPS(net=..., version="0.1")` loads torchvision's ImageNet backbone (downloaded by
torchvision on first use, or taken from its cache, ~/.cache/torch/hub/checkpoints) and the
linear-layer weights shipped inside the lpips package.

The ONNX interface (what LpipsNetwork in src/lpips.ts expects):
  input   images  float32 (N, 3, H, W), RGB in [-1, 1]   (lpips' normalize=False convention)
  outputs feat_0 .. feat_4  the five backbone ReLU outputs lpips compares, after its
                            ScalingLayer, (N, C_l, H_l, W_l)
          lin_0 .. lin_4    the weights of the five 1x1 linear layers, (C_l,)
The unit normalisation, weighting, spatial mean and layer sum are done in TypeScript.

After exporting, the script compares lpips' own distance with the same combination computed
from the ONNX outputs with onnxruntime, on random image pairs, and prints the largest
relative difference (expect ~1e-6, float32).
"""
import argparse

import numpy as np
import torch


class LpipsFeatures(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.scaling_layer = model.scaling_layer
        self.net = model.net
        self.lins = model.lins

    def forward(self, images):
        features = self.net(self.scaling_layer(images))
        # NetLinLayer = [Dropout,] Conv2d(C, 1, 1, bias=False): its weight is (1, C, 1, 1).
        weights = [lin.model[-1].weight.reshape(-1) for lin in self.lins]
        return (*features, *weights)


def combine(features_a, features_b, weights):
    """lpips' forward: normalise over channels, squared difference, weight, spatial mean, sum."""
    total = 0.0
    for fa, fb, w in zip(features_a, features_b, weights):
        na = fa / (np.sqrt((fa.astype(np.float64) ** 2).sum(axis=0, keepdims=True)) + 1e-10)
        nb = fb / (np.sqrt((fb.astype(np.float64) ** 2).sum(axis=0, keepdims=True)) + 1e-10)
        total += float((w[:, None, None] * (na - nb) ** 2).sum(axis=0).mean())
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--net", choices=["alex", "vgg"], default="alex")
    parser.add_argument("--out", required=True)
    parser.add_argument("--opset", type=int, default=17)
    args = parser.parse_args()

    import lpips

    model = lpips.LPIPS(net=args.net, version="0.1", verbose=False).eval()
    wrapper = LpipsFeatures(model).eval()
    layers = len(model.chns)
    names = [f"feat_{i}" for i in range(layers)] + [f"lin_{i}" for i in range(layers)]
    dummy = torch.rand(2, 3, 64, 64) * 2 - 1
    dynamic = {"images": {0: "N", 2: "H", 3: "W"}}
    dynamic.update({f"feat_{i}": {0: "N", 2: f"H{i}", 3: f"W{i}"} for i in range(layers)})
    torch.onnx.export(
        wrapper, (dummy,), args.out, input_names=["images"], output_names=names,
        dynamic_axes=dynamic, opset_version=args.opset, dynamo=False,
    )
    print(f"wrote {args.out}")

    import onnxruntime

    session = onnxruntime.InferenceSession(args.out, providers=["CPUExecutionProvider"])
    worst = 0.0
    generator = torch.Generator().manual_seed(0)
    for size in [(64, 64), (96, 80)]:
        a = torch.rand(1, 3, *size, generator=generator) * 2 - 1
        b = (a + 0.2 * torch.randn(1, 3, *size, generator=generator)).clamp(-1, 1)
        with torch.no_grad():
            reference = float(model(a, b))
        out = session.run(None, {"images": torch.cat([a, b]).numpy()})
        features, weights = out[:layers], out[layers:]
        ours = combine([f[0] for f in features], [f[1] for f in features], weights)
        worst = max(worst, abs(ours - reference) / abs(reference))
        print(f"size {size}: lpips package {reference:.8f}, ONNX features + combination {ours:.8f}")
    print(f"largest relative difference: {worst:.2e}")


if __name__ == "__main__":
    main()
