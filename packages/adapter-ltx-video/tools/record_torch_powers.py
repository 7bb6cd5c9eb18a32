"""Writes src/torch-powers.ts: the float32 values of torch's `10000 ** torch.linspace(0, 1, n)` on
the CPU for the frequency counts of LTX-Video's widths, as data.

Why: diffusers' LTX rotary embedding raises 10000 to a linspace in float32, and torch's CPU pow
is not correctly rounded on its vectorised path (1 ulp), while the angles built from these
frequencies reach thousands of radians: a one-ulp difference moves the rotary tables of a
2048-wide model by about 1.6e-5. Recording torch's own outputs (numbers, not code) for the widths
LTX-Video ships gives diffusers' tables exactly; other widths use the correctly rounded power.

Not run by CI and never by the tests. Run by hand from the repository root with torch on a CPU of
the kind the references are made on (AVX-512 here; `torch.backends.cpu.get_cpu_capability()` is
recorded in the file):

    /work/refvenv/bin/python packages/adapter-ltx-video/tools/record_torch_powers.py
"""
import math
import os
import struct

import torch

torch.set_num_threads(1)

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, '..', 'src', 'torch-powers.ts')
THETA = 10000.0
# inner_dim // 6 of LTX-Video 0.9.x 2B (32 x 64 = 2048) and 13B (32 x 128 = 4096), and of the
# 256-wide model the tests' rotary references include.
COUNTS = [42, 341, 682]


def hex_bits(values):
    return ', '.join(f"0x{struct.unpack('<I', struct.pack('<f', v))[0]:08x}" for v in values)


def main():
    lines = []
    for n in COUNTS:
        exponents = torch.linspace(math.log(1.0, THETA), math.log(THETA, THETA), n, dtype=torch.float32)
        powers = (THETA ** exponents).tolist()
        lines.append(f'  [{n}, [{hex_bits(powers)}]],')
    body = '\n'.join(lines)
    source = f"""// torch's float32 `10000 ** torch.linspace(0, 1, n)` on the CPU for the frequency counts of
// LTX-Video's widths, as their float32 bit patterns: recorded (data, not code) by
// tools/record_torch_powers.py with torch {torch.__version__} on a CPU with capability
// {torch.backends.cpu.get_cpu_capability()}. See rotary.ts for why the rotary frequencies need torch's exact values.

/** Frequency count -> torch's powers, as float32 bits. */
export const TORCH_POWERS_OF_10000: ReadonlyMap<number, readonly number[]> = new Map([
{body}
]);
"""
    with open(OUT, 'w') as f:
        f.write(source)
    print('wrote', OUT)


if __name__ == '__main__':
    main()
