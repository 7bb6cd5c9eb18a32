"""Why: ditcache's DMD fit (packages/core/src/dmd-fit.ts) must forecast as cache-dit's DMD
calibrator's fit does, including its automatic rank, its ridge and its principal-branch powers at
fractional horizons. This runs cache-dit's fit and evaluation, in float64, on a few small snapshot
windows (seeded random mixtures of growing, decaying, oscillating and sign-flipping modes, one with
a mode below the rank cutoff, one with noise) and writes the windows and forecasts for the core
unit test.

    /work/refvenv-cd/bin/python tools/cache-references-calibrators/dmd_fit.py packages/core/test/fixtures/dmd-fit.json

Run by hand, never by CI or the tests.
"""

import json
import sys

import torch
from cache_dit.caching.cache_contexts.calibrators import dmd as dmd_module


def window(seed, dim, steps, modes, noise=0.0):
    """Snapshots y_t = sum_j (a_j Re(mu_j^t) + b_j Im(mu_j^t)) (+ noise), t = 0..steps-1, one batch
    item of `dim` values; a mode given as (mu, scale) has amplitudes of that scale."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(steps, dtype=torch.float64)
    ys = torch.zeros(steps, dim, dtype=torch.float64)
    for mode in modes:
        mu, scale = mode if isinstance(mode, tuple) else (mode, 1.0)
        a = scale * torch.randn(dim, generator=g, dtype=torch.float64)
        b = scale * torch.randn(dim, generator=g, dtype=torch.float64)
        mu = complex(mu)
        powers = torch.tensor([mu ** float(s) for s in t.tolist()], dtype=torch.complex128)
        ys += a[None, :] * powers.real[:, None] + b[None, :] * powers.imag[:, None]
    ys += noise * torch.randn(steps, dim, generator=g, dtype=torch.float64)
    return [y.reshape(1, dim) for y in ys]


CASES = [
    # (name, seed, dim, snapshots, modes, noise, rank, ridge, horizons)
    ("decay and growth", 1, 16, 5, [0.9, 1.05], 0.0, 0, 1e-8, [1, 2, 3.5]),
    ("oscillation", 2, 16, 6, [0.95 * complex(0.8, 0.6)], 0.0, 0, 1e-8, [1, 0.5, 2.5]),
    ("sign flip, fractional horizon", 3, 12, 6, [-0.7, 0.98], 0.0, 0, 1e-8, [0.5, 1, 1.5]),
    ("noisy, full rank", 4, 24, 6, [0.9, 1.02, 0.6 * complex(0.5, 0.5)], 1e-3, 0, 1e-8, [1, 2, 4]),
    ("a mode below the cutoff", 5, 16, 6, [0.9, 1.01, (0.5, 3e-6)], 0.0, 0, 1e-8, [1, 3]),
    ("rank 2, ridge 1e-3", 6, 20, 6, [0.9, 1.03, 0.7], 1e-2, 2, 1e-3, [1, 2.5]),
]


def main(out):
    cases = []
    for name, seed, dim, steps, modes, noise, rank, ridge, horizons in CASES:
        snaps = window(seed, dim, steps, modes, noise)
        fit = dmd_module._dmd_fit(snaps, rank=rank, ridge=ridge, svd_precision="medium")
        forecasts = {str(k): dmd_module._dmd_eval(fit, k).reshape(-1).tolist() for k in horizons}
        singular = torch.linalg.svdvals(torch.stack([s.reshape(-1) for s in snaps[:-1]], dim=1)).tolist()
        cases.append(dict(name=name, rank=rank, ridge=ridge, snapshots=[s.reshape(-1).tolist() for s in snaps],
                          singular_values=singular, forecasts=forecasts))
        print(name, [round(v / singular[0], 8) for v in singular])
    with open(out, "w") as f:
        json.dump(dict(torch_version=torch.__version__, cases=cases), f)
        f.write("\n")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: dmd_fit.py OUT_JSON")
    main(sys.argv[1])
