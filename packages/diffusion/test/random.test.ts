import { describe, expect, it } from 'vitest';

import { Mt19937, randnTensor, torchGenerator, torchRandn, torchRandnFrom } from '../src/index.js';

// torch.randn(n, generator=torch.Generator('cpu').manual_seed(seed)).tolist(), torch 2.13 (AVX-512 build).
const TORCH_SEED_0_N16 = [
  -1.1258398294448853, -1.152360200881958, -0.2505785822868347, -0.4338788092136383, 0.8487103581428528, 0.6920091509819031, -0.31601276993751526,
  -2.1152193546295166, 0.32227492332458496, -1.2633347511291504, 0.34998318552970886, 0.30813392996788025, 0.11984150856733322, 1.237657904624939,
  1.1167771816253662, -0.2472781538963318,
];
// seed 2^32 + 7 (torch keeps the low 32 bits), n = 37: two full runs of 16 and a redrawn tail.
const TORCH_SEED_2POW32_PLUS_7_N37 = [
  -0.8201345205307007, 0.39563116431236267, 0.8989084959030151, -1.3884038925170898, -0.16699601709842682, 0.2851499617099762, -0.641091525554657,
  -0.8936554193496704, 0.9265429973602295, -0.5355122089385986, -1.1597203016281128, -0.4601571559906006, 0.7085390686988831, 1.0127553939819336,
  0.23039686679840088, 1.090165138244629, -1.5826646089553833, -0.32456663250923157, 1.9263681173324585, -0.3300117254257202, 0.19844505190849304,
  -0.6618675589561462, -0.8284520506858826, -0.6056802868843079, -0.13543689250946045, 0.7471182346343994, 0.6118157505989075, 1.867783546447754,
  2.5116028785705566, -0.25013262033462524, 0.501121461391449, 0.2600362002849579, -1.6370213031768799, 0.1577119082212448, 0.39574092626571655,
  -1.3677396774291992, -0.10073431581258774,
];

// torch uses SLEEF's vectorised log / sin / cos, which may differ from correctly rounded results by an ulp.
const ULPS = 3e-7;

describe('torchRandn', () => {
  it('reproduces torch.randn for a seeded CPU generator', () => {
    const a = torchRandn(16, 0);
    TORCH_SEED_0_N16.forEach((v, i) => expect(Math.abs(a[i] - v)).toBeLessThanOrEqual(ULPS * Math.max(1, Math.abs(v))));
    const b = torchRandn(37, 2 ** 32 + 7);
    TORCH_SEED_2POW32_PLUS_7_N37.forEach((v, i) => expect(Math.abs(b[i] - v)).toBeLessThanOrEqual(ULPS * Math.max(1, Math.abs(v))));
  });

  it('continues a generator as torch does: the second torch.randn call on one generator', () => {
    // g = torch.Generator().manual_seed(0); torch.randn(20, generator=g); torch.randn(16, generator=g).tolist()
    const second = [
      0.4396958351135254, 0.11241118609905243, 0.6407923698425293, 0.441156268119812, -0.21586325764656067, -0.7425481677055359, 0.5627213716506958,
      0.25962740182876587, 0.5228604674339294, 2.3022053241729736, -1.4688938856124878, -1.586688756942749, 1.203223705291748, 0.08453469723463058,
      -1.2001394033432007, -0.004785737954080105,
    ];
    const generator = torchGenerator(0);
    expect([...torchRandnFrom(generator, 20)]).toEqual([...torchRandn(20, 0)]);
    const b = torchRandnFrom(generator, 16);
    second.forEach((v, i) => expect(Math.abs(b[i] - v)).toBeLessThanOrEqual(ULPS * Math.max(1, Math.abs(v))));
  });

  it('draws MT19937 words like the reference generator', () => {
    // The 10000th output of MT19937 seeded with 5489 is 4123659995 (C++ std::mt19937's check value).
    const mt = new Mt19937(5489);
    let last = 0;
    for (let i = 0; i < 10000; ++i) last = mt.nextUint32();
    expect(last).toBe(4123659995);
  });

  it('fills tensors and refuses what torch draws differently', () => {
    using t = randnTensor([1, 4, 2, 2], 0);
    expect([...t.shape]).toEqual([1, 4, 2, 2]);
    expect(t.toFloat32Array()[0]).toBeCloseTo(-1.1258398, 6);
    expect(() => torchRandn(8, 0)).toThrow(/at least 16 elements/);
    expect(() => torchRandn(16, -1)).toThrow(/non-negative integer/);
  });
});
