"""Exports the FID InceptionV3 (pytorch-fid's, pool3, 2048-d) to the ONNX file @ditcache/metrics reads.

Run it where you have the weights (it is not run by CI):

    pip install torch torchvision pytorch-fid onnx onnxruntime
    python export_inception_fid.py --out ~/.cache/ditcache/metrics/fid-inception-v3.onnx

pytorch-fid's `InceptionV3([3])` is the network of the original TensorFlow FID code with its
weights (pt_inception-2015-12-05-6726825d.pth, downloaded by pytorch-fid on first use or taken
from torch's hub cache). It is exported together with its input handling, so the TS side
only decodes images:
  input   images    float32 (N, 3, H, W), RGB in [0, 1], any H and W
  output  features  float32 (N, 2048), the pool3 activations
Inside the graph: bilinear resize to 299x299 (align_corners=False, as pytorch-fid's
resize_input=True), scaling to [-1, 1] (normalize_input=True), the network, then flatten.

After exporting, the script compares the ONNX features with pytorch-fid's on random images
and prints the largest relative difference (expect ~1e-5, float32).
"""
import argparse

import numpy as np
import torch


class PoolFeatures(torch.nn.Module):
    def __init__(self, inception):
        super().__init__()
        self.inception = inception

    def forward(self, images):
        return self.inception(images)[0].flatten(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--opset", type=int, default=17)
    args = parser.parse_args()

    from pytorch_fid.inception import InceptionV3

    block = InceptionV3.BLOCK_INDEX_BY_DIM[2048]
    inception = InceptionV3([block], resize_input=True, normalize_input=True).eval()
    wrapper = PoolFeatures(inception).eval()
    dummy = torch.rand(2, 3, 128, 160)
    torch.onnx.export(
        wrapper, (dummy,), args.out, input_names=["images"], output_names=["features"],
        dynamic_axes={"images": {0: "N", 2: "H", 3: "W"}, "features": {0: "N"}},
        opset_version=args.opset, dynamo=False,
    )
    print(f"wrote {args.out}")

    import onnxruntime

    session = onnxruntime.InferenceSession(args.out, providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(0)
    worst = 0.0
    for size in [(299, 299), (512, 512), (200, 340)]:
        images = torch.rand(2, 3, *size, generator=generator)
        with torch.no_grad():
            reference = wrapper(images).numpy()
        ours = session.run(None, {"images": images.numpy()})[0]
        worst = max(worst, float(np.abs(ours - reference).max() / np.abs(reference).max()))
    print(f"largest relative difference of the features: {worst:.2e}")


if __name__ == "__main__":
    main()
