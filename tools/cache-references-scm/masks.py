"""Why: cache-dit 1.5's steps computation masks come from named presets (slow / medium / fast /
ultra) whose mask depends on the run's step count. ditcache's `scm` policy must give the very
masks cache-dit gives, and the project commits no code derived from cache-dit, so this records
the masks themselves, as data, by asking the reference venv's `cache_dit.steps_mask` for every
preset and step count it supports up to MAX_STEPS.

    /work/refvenv-cd/bin/python tools/cache-references-scm/masks.py packages/core/src/scm-masks.ts

writes that TypeScript module (one string of 1 = compute / 0 = may cache per preset and step
count); run by hand when cache-dit's presets change, never by CI or the tests.
"""

import sys

from cache_dit import steps_mask

PRESETS = ["slow", "medium", "fast", "ultra"]
# cache-dit's presets exist for 4 and 6 steps and for every count from 8 up; 100 covers the step
# counts pipelines use.
STEP_COUNTS = [4, 6, *range(8, 101)]


def main(out, commit):
    lines = [
        "// cache-dit's steps computation masks (SCM), as data: what `cache_dit.steps_mask(total_steps=n,",
        "// mask_policy=preset)` returns for each preset and step count it supports up to 100, one",
        "// character per step, 1 = compute, 0 = may cache. Written by tools/cache-references-scm/masks.py",
        f"// from cache-dit {commit}; do not edit.",
        "",
        "export const SCM_PRESETS = ['slow', 'medium', 'fast', 'ultra'] as const;",
        "export type ScmPreset = (typeof SCM_PRESETS)[number];",
        "",
        "export const SCM_MASKS: Readonly<Record<ScmPreset, Readonly<Record<number, string>>>> = {",
    ]
    for preset in PRESETS:
        lines.append(f"  {preset}: {{")
        for n in STEP_COUNTS:
            mask = steps_mask(total_steps=n, mask_policy=preset)
            assert len(mask) == n and set(mask) <= {0, 1}, (preset, n, mask)
            lines.append(f"    {n}: '{''.join(map(str, mask))}',")
        lines.append("  },")
    lines.append("};")
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: masks.py OUT.ts [CACHE_DIT_COMMIT]")
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "unknown version")
