"""Makes the small test fixtures and reference numbers of @ditcache/metrics.

A tool, not part of the package or its tests: run it once where numpy, scikit-image, scipy,
imageio and mpmath are installed, and commit what it writes (a few KB):

    python tools/make_reference_values.py            # from packages/metrics

It writes
- test/data/fixtures/*.png, *.npy: small image pairs in the formats the goldens do not
  cover (16-bit RGB and grey PNG, 8-bit grey and RGBA PNG, float32 and float64 .npy). The PNGs
  are encoded here by a minimal writer so that the stored samples are exactly the arrays the
  reference numbers were computed from (Pillow cannot write 16-bit RGB).
- test/data/reference-values.json:
  - "fixtures": scikit-image 0.26 PSNR, MSE and SSIM (defaults; data_range=1 for float) of
    each fixture pair, numpy's float64 MAE, and the Gaussian-window SSIM;
  - "goldens": SSIM variants of ../shared/goldens/metrics pairs that expected.json lacks
    (gaussian_weights=True; the same with use_sample_covariance=False; an 11x11 uniform
    window) and their MAE;
  - "pillow_bicubic": SHA-256 of Pillow's `Image.resize(size, Image.BICUBIC)` output for
    golden images resized to several sizes (down and up), which the CLIP preprocessing
    must reproduce bit for bit;
  - "frechet": Frechet distances of synthetic feature sets (generator below, mirrored in
    test/helpers/synthetic.ts) computed with mpmath at 50 digits from the exact features,
    next to pytorch-fid's scipy.linalg.sqrtm recipe for comparison.
"""
import json
import os
import struct
import zlib

import hashlib

import imageio.v3 as iio
import mpmath
import numpy as np
import PIL
from PIL import Image
from scipy import linalg
from skimage.metrics import mean_squared_error, peak_signal_noise_ratio, structural_similarity

HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGE = os.path.dirname(HERE)
DATA = os.path.join(PACKAGE, "test", "data")
FIXTURES = os.path.join(DATA, "fixtures")
GOLDENS = os.path.join(PACKAGE, "..", "..", "..", "shared", "goldens", "metrics")


# ---------------------------------------------------------------- deterministic numbers
class Lcg:
    """32-bit linear congruential generator (Numerical Recipes constants); mirrored in TS."""

    def __init__(self, seed: int):
        self.state = seed & 0xFFFFFFFF

    def next(self) -> int:
        self.state = (1664525 * self.state + 1013904223) & 0xFFFFFFFF
        return self.state

    def small_int(self) -> int:
        """An integer in [-8, 8]."""
        return ((self.next() >> 24) % 17) - 8

    def byte(self) -> int:
        return self.next() >> 24


def synthetic_features(n: int, d: int, k: int, seed: int, shift: int) -> np.ndarray:
    """n feature vectors of length d with rank-k structure: Z (n x k) @ M (k x d) + shift * j / 16.

    Every entry of Z and M is a multiple of 1/16 in [-0.5, 0.5], so each feature is an exact
    dyadic rational and TS and numpy produce bit-identical features.
    """
    zg = Lcg(seed)
    z = np.array([[zg.small_int() / 16 for _ in range(k)] for _ in range(n)], dtype=np.float64)
    mg = Lcg(seed + 7919)
    m = np.array([[mg.small_int() / 16 for _ in range(d)] for _ in range(k)], dtype=np.float64)
    return z @ m + shift * np.arange(d, dtype=np.float64) / 16


# ---------------------------------------------------------------- minimal PNG writer
def write_png(path: str, array: np.ndarray) -> None:
    """Writes a uint8 or uint16 array of shape (H, W) or (H, W, C), C in 1-4, as a PNG."""
    if array.ndim == 2:
        array = array[:, :, None]
    height, width, channels = array.shape
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    depth = 16 if array.dtype == np.uint16 else 8
    samples = array.astype(">u2") if depth == 16 else array.astype(np.uint8)
    raw = b"".join(b"\x00" + samples[row].tobytes() for row in range(height))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def image_pair(shape, dtype, seed: int, noise: int):
    """A smooth-ish image and a noisy copy, as integer samples of the given dtype."""
    g = Lcg(seed)
    top = 255 if dtype == np.uint8 else 65535
    h, w = shape[0], shape[1]
    yy, xx = np.mgrid[0:h, 0:w]
    base = (np.sin(xx / 3.0 + seed) + np.cos(yy / 4.0)) * 0.25 + 0.5
    if len(shape) == 3:
        base = np.stack([base * (0.6 + 0.2 * c) for c in range(shape[2])], axis=2)
    a = np.round(base * top).astype(np.int64)
    jitter = np.array([g.byte() % (2 * noise + 1) - noise for _ in range(a.size)]).reshape(a.shape)
    scale = 1 if dtype == np.uint8 else 257
    b = np.clip(a + jitter * scale, 0, top)
    return a.astype(dtype), b.astype(dtype)


def pixel_references(a: np.ndarray, b: np.ndarray, data_range=None) -> dict:
    channel_axis = 2 if a.ndim == 3 else None
    kwargs = {} if data_range is None else {"data_range": data_range}
    return {
        "psnr": float(peak_signal_noise_ratio(a, b, **kwargs)),
        "mse": float(mean_squared_error(a, b)),
        "mae": float(np.mean(np.abs(a.astype(np.float64) - b.astype(np.float64)))),
        "ssim": float(structural_similarity(a, b, channel_axis=channel_axis, **kwargs)),
        "ssim_gaussian": float(structural_similarity(a, b, channel_axis=channel_axis, gaussian_weights=True, **kwargs)),
    }


def make_fixtures() -> dict:
    os.makedirs(FIXTURES, exist_ok=True)
    refs = {}
    integer_cases = [
        ("rgb16", (19, 23, 3), np.uint16, 11, 40),
        ("grey16", (21, 18), np.uint16, 12, 30),
        ("grey8", (17, 25), np.uint8, 13, 9),
        ("rgba8", (20, 20, 4), np.uint8, 14, 5),
        ("greyalpha8", (18, 22, 2), np.uint8, 17, 60),
        ("greyalpha16", (15, 16, 2), np.uint16, 18, 20),
    ]
    for name, shape, dtype, seed, noise in integer_cases:
        a, b = image_pair(shape, dtype, seed, noise)
        write_png(os.path.join(FIXTURES, f"{name}_1.png"), a)
        write_png(os.path.join(FIXTURES, f"{name}_2.png"), b)
        # The arrays are the truth; check the files hold exactly them where imageio can tell.
        if dtype == np.uint8:
            assert np.array_equal(iio.imread(os.path.join(FIXTURES, f"{name}_1.png")), a)
        refs[name] = {"file1": f"{name}_1.png", "file2": f"{name}_2.png", **pixel_references(a, b)}
    float_cases = [("float32", (16, 21, 3), np.float32, 15), ("float64grey", (18, 15), np.float64, 16)]
    for name, shape, dtype, seed in float_cases:
        a8, b8 = image_pair(shape, np.uint8, seed, 12)
        a = (a8.astype(np.float64) / 255.0).astype(dtype)
        b = (b8.astype(np.float64) / 255.0 + 0.001).astype(dtype)
        np.save(os.path.join(FIXTURES, f"{name}_1.npy"), a)
        np.save(os.path.join(FIXTURES, f"{name}_2.npy"), b)
        refs[name] = {"file1": f"{name}_1.npy", "file2": f"{name}_2.npy", **pixel_references(a, b, data_range=1.0)}
    return refs


def golden_references() -> dict:
    expected = json.load(open(os.path.join(GOLDENS, "expected.json")))
    refs = {}
    for pair in expected["pairs"]:
        a = iio.imread(os.path.join(GOLDENS, "ref", pair["file"]))
        b = iio.imread(os.path.join(GOLDENS, "test", pair["file"]))
        refs[pair["file"]] = {
            "ssim_gaussian": float(structural_similarity(a, b, channel_axis=2, gaussian_weights=True)),
            "ssim_gaussian_population": float(
                structural_similarity(a, b, channel_axis=2, gaussian_weights=True, use_sample_covariance=False)
            ),
            "ssim_win11": float(structural_similarity(a, b, channel_axis=2, win_size=11)),
            "mae": float(np.mean(np.abs(a.astype(np.float64) - b.astype(np.float64)))),
        }
    return refs


# ---------------------------------------------------------------- Pillow resampling
PILLOW_CASES = [
    ("img_01.png", 30, 19),
    ("img_01.png", 348, 224),
    ("img_05.png", 50, 80),
    ("img_03.png", 35, 40),
    ("img_02.png", 224, 228),
    ("img_04.png", 224, 224),
]


def pillow_references() -> list:
    out = []
    for name, width, height in PILLOW_CASES:
        resized = Image.open(os.path.join(GOLDENS, "ref", name)).convert("RGB").resize((width, height), Image.BICUBIC)
        data = np.asarray(resized).tobytes()
        out.append({"file": name, "width": width, "height": height, "sha256": hashlib.sha256(data).hexdigest()})
    return out


# ---------------------------------------------------------------- Frechet distance
mpmath.mp.dps = 50


def mp_statistics(features: np.ndarray):
    n, d = features.shape
    rows = [[mpmath.mpf(float(v)) for v in row] for row in features]
    mean = [mpmath.fsum(rows[i][j] for i in range(n)) / n for j in range(d)]
    cov = mpmath.matrix(d, d)
    for i in range(d):
        for j in range(i, d):
            value = mpmath.fsum((rows[r][i] - mean[i]) * (rows[r][j] - mean[j]) for r in range(n)) / (n - 1)
            cov[i, j] = value
            cov[j, i] = value
    return mean, cov


def mp_sqrt_psd(matrix):
    eigenvalues, vectors = mpmath.eigsy(matrix)
    d = matrix.rows
    root = mpmath.matrix(d, d)
    for k in range(d):
        lam = eigenvalues[k]
        s = mpmath.sqrt(lam) if lam > 0 else mpmath.mpf(0)
        for i in range(d):
            for j in range(d):
                root[i, j] += vectors[i, k] * s * vectors[j, k]
    return root


def mp_frechet(f1: np.ndarray, f2: np.ndarray) -> float:
    """d² with Tr sqrtm(S1 S2) = Σ sqrt(eig(sqrt(S1) S2 sqrt(S1))), all at 50 digits."""
    mu1, s1 = mp_statistics(f1)
    mu2, s2 = mp_statistics(f2)
    d = len(mu1)
    root = mp_sqrt_psd(s1)
    middle = root * s2 * root
    middle = (middle + middle.T) / 2
    eigenvalues = mpmath.eigsy(middle, eigvals_only=True)
    trace_sqrt = mpmath.fsum(mpmath.sqrt(v) for v in eigenvalues if v > 0)
    mean_term = mpmath.fsum((mu1[i] - mu2[i]) ** 2 for i in range(d))
    trace = mpmath.fsum(s1[i, i] + s2[i, i] for i in range(d))
    return float(mean_term + trace - 2 * trace_sqrt)


def pytorch_fid_recipe(f1: np.ndarray, f2: np.ndarray) -> float:
    """pytorch-fid's calculate_frechet_distance (scipy sqrtm, eps offset when it fails)."""
    mu1, mu2 = f1.mean(axis=0), f2.mean(axis=0)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    diff = mu1 - mu2
    covmean, _ = linalg.sqrtm(s1.dot(s2), disp=False)
    if not np.isfinite(covmean).all():
        offset = np.eye(s1.shape[0]) * 1e-6
        covmean = linalg.sqrtm((s1 + offset).dot(s2 + offset))
    if np.iscomplexobj(covmean):
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


FRECHET_CASES = [
    # name, (n, d, k, seed, shift) for each set
    ("full_rank", (300, 12, 12, 1, 0), (250, 12, 12, 2, 3)),
    ("fewer_samples_than_dims", (8, 24, 24, 3, 0), (9, 24, 24, 4, 1)),
    ("rank_deficient", (200, 16, 4, 5, 0), (180, 16, 4, 6, 2)),
    ("one_singular", (50, 10, 10, 7, 0), (60, 10, 3, 8, 1)),
    ("identical", (40, 6, 6, 9, 0), (40, 6, 6, 9, 0)),
]


def frechet_references() -> list:
    cases = []
    for name, first, second in FRECHET_CASES:
        f1 = synthetic_features(*first)
        f2 = synthetic_features(*second)
        cases.append({
            "name": name,
            "first": dict(zip(["n", "d", "k", "seed", "shift"], first)),
            "second": dict(zip(["n", "d", "k", "seed", "shift"], second)),
            "checksum_first": float(f1.sum() + (f1 * f1).sum()),
            "checksum_second": float(f2.sum() + (f2 * f2).sum()),
            "frechet_mp50": mp_frechet(f1, f2),
            "pytorch_fid_scipy": pytorch_fid_recipe(f1, f2),
        })
    return cases


def main() -> None:
    os.makedirs(DATA, exist_ok=True)
    out = {
        "generated_by": "tools/make_reference_values.py (scikit-image 0.26, numpy, scipy, mpmath)",
        "fixtures": make_fixtures(),
        "goldens": golden_references(),
        "pillow_version": PIL.__version__,
        "pillow_bicubic": pillow_references(),
        "frechet": frechet_references(),
    }
    with open(os.path.join(DATA, "reference-values.json"), "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
