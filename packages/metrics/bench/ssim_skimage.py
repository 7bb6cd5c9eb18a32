"""scikit-image side of the SSIM benchmark (bench/ssim.ts runs it; a tool, not part of the package).

Usage: python ssim_skimage.py REF_DIR TEST_DIR
Reads every pair with imageio (as skimage.io.imread does), computes
structural_similarity(a, b, channel_axis=2) with its defaults, and prints one JSON line with
the mean SSIM, the number of pairs and the seconds spent decoding and computing.
"""
import json
import os
import sys
import time

import imageio.v3 as iio
from skimage.metrics import structural_similarity


def main() -> None:
    ref_dir, test_dir = sys.argv[1], sys.argv[2]
    names = sorted(n for n in os.listdir(ref_dir) if n.endswith(".png"))
    decode_seconds = 0.0
    ssim_seconds = 0.0
    total = 0.0
    for name in names:
        t0 = time.perf_counter()
        a = iio.imread(os.path.join(ref_dir, name))
        b = iio.imread(os.path.join(test_dir, name))
        t1 = time.perf_counter()
        total += structural_similarity(a, b, channel_axis=2)
        t2 = time.perf_counter()
        decode_seconds += t1 - t0
        ssim_seconds += t2 - t1
    print(json.dumps({
        "mean": total / len(names),
        "count": len(names),
        "decode_seconds": decode_seconds,
        "ssim_seconds": ssim_seconds,
        "total_seconds": decode_seconds + ssim_seconds,
    }))


if __name__ == "__main__":
    main()
