// Attention sites on a fake model: the engine wraps the attention modules an adapter declares
// (and unwraps them exactly), each call of a site goes to the policy of its transformer's
// context with the right branch, call count and timestep, a skipped call's output survives the
// block that releases it, nothing leaks, and a policy that needs sites refuses a model without
// them. Checked with the 'pab' policy against the decisions worked out by hand and against
// latents from the same model with the broadcast written out in the test.
import { describe, expect, it, vi } from 'vitest';

import {
  BlockAdapter,
  cacheHandleOf,
  disableCache,
  enableCache,
  ForwardPattern,
  refreshContext,
  runTransformerCall,
  summary,
  type AttentionSite,
  type CfgBranch,
} from '../src/index.js';
import { PlainTensorOps, type PlainTensor } from '../src/testing.js';
import { noise } from './toy-models.js';

const quiet = { print: false } as const;

/** An attention stand-in: a non-linear map of its input, returning one tensor or (joint) two. */
class ToyAttention {
  constructor(
    private readonly ops: PlainTensorOps,
    private readonly k: number,
    private readonly joint: boolean,
  ) {}

  forward(x: PlainTensor, context: PlainTensor): PlainTensor | PlainTensor[] {
    const c = Array.from(context.values()).reduce((a, b) => a + b, 0) / context.data.length;
    const out = this.ops.map(x, (v, i) => 0.2 * Math.tanh(v * (0.7 + 0.1 * this.k) + c + 0.02 * i));
    return this.joint ? [out, this.ops.map(out, (v) => 0.5 * v)] : out;
  }
}

/** A block with a joint self-attention (two outputs) and a cross-attention; it releases what they return. */
class ToyAttentionBlock {
  readonly forwardPattern = ForwardPattern.Pattern_2;
  readonly attn1: ToyAttention;
  readonly attn2: ToyAttention;

  constructor(
    private readonly ops: PlainTensorOps,
    k: number,
  ) {
    this.attn1 = new ToyAttention(ops, k, true);
    this.attn2 = new ToyAttention(ops, k + 5, false);
  }

  forward(h: PlainTensor, e: PlainTensor): PlainTensor {
    const [a, b] = this.attn1.forward(h, h) as PlainTensor[];
    const cross = this.attn2.forward(h, e) as PlainTensor;
    const out = this.ops.map(h, (v, i) => v + a.data[i] + b.data[i] + cross.data[i]);
    for (const t of [a, b, cross]) t.dispose();
    return out;
  }
}

class ToyAttentionTransformer {
  readonly blocks: ToyAttentionBlock[];
  /** An attention that runs before the blocks (as in a text embedder's refiner). */
  readonly embedderAttn: ToyAttention;

  constructor(readonly ops: PlainTensorOps) {
    this.blocks = [0, 1, 2].map((k) => new ToyAttentionBlock(ops, k));
    this.embedderAttn = new ToyAttention(ops, 9, false);
  }

  forward(h: PlainTensor, text: PlainTensor): PlainTensor {
    const e = this.embedderAttn.forward(text, text) as PlainTensor;
    let cur = h;
    for (const block of this.blocks) {
      const next = block.forward(cur, e);
      if (cur !== h) cur.dispose();
      cur = next;
    }
    e.dispose();
    return cur;
  }

  sites(): AttentionSite[] {
    return [
      { name: 'embedder.attn', kind: 'spatial' as const, module: this.embedderAttn },
      ...this.blocks.flatMap((b, i) => [
        { name: `blocks.${i}.attn1`, kind: 'spatial' as const, module: b.attn1 },
        { name: `blocks.${i}.attn2`, kind: 'cross' as const, module: b.attn2 },
      ]),
    ];
  }
}

const STEPS = 6;
/** 1000, 833.3, 666.7, 500, 333.3, 166.7. */
const timestepOf = (step: number) => 1000 * (1 - step / STEPS);

/** Euler steps with CFG as separate cond and uncond calls, each announced with its timestep. */
function generate(transformer: ToyAttentionTransformer, announce = true): Float64Array {
  const ops = transformer.ops;
  let x = ops.tensor(noise(8, 3));
  const cond = ops.tensor(noise(8, 4));
  const uncond = ops.tensor(noise(8, 5).map((v) => v - 0.5));
  for (let step = 0; step < STEPS; step++) {
    const call = (e: PlainTensor, branch: CfgBranch) => {
      const forward = () => transformer.forward(x, e);
      return announce ? runTransformerCall(transformer, { step, numSteps: STEPS, branch, timestep: timestepOf(step) }, forward) : forward();
    };
    const c = call(cond, 'cond');
    const u = call(uncond, 'uncond');
    const next = ops.map(x, (v, i) => v - (u.data[i] + 3 * (c.data[i] - u.data[i])) / STEPS);
    for (const t of [x, c, u]) t.dispose();
    x = next;
  }
  const out = Float64Array.from(x.values());
  for (const t of [x, cond, uncond]) t.dispose();
  return out;
}

function adapterOf(transformer: ToyAttentionTransformer, declare = true): BlockAdapter<PlainTensor> {
  return new BlockAdapter<PlainTensor>({
    transformer,
    blocks: 'blocks',
    forwardPattern: ForwardPattern.Pattern_2,
    ops: transformer.ops,
    hasSeparateCfg: true,
    ...(declare && { attentionSites: (t: object) => (t as ToyAttentionTransformer).sites() }),
  });
}

/**
 * The same model with PAB's rule written out here: per (module, branch) a call counter and the
 * last output, reused at call i when i > 0, lo < t < hi and i % skip != 0.
 */
function broadcastByHand(rules: Record<'attn1' | 'attn2', { skip: number; range: [number, number] } | undefined>): Float64Array {
  const transformer = new ToyAttentionTransformer(new PlainTensorOps());
  const ops = transformer.ops;
  let step = 0;
  let branch: CfgBranch = 'cond';
  const calls = new Map<string, number>();
  const kept = new Map<string, PlainTensor[]>();
  transformer.blocks.forEach((block, b) => {
    for (const name of ['attn1', 'attn2'] as const) {
      const module = block[name];
      const original = module.forward.bind(module);
      module.forward = (x, context) => {
        const key = `${b}.${name}.${branch}`;
        const i = calls.get(key) ?? 0;
        calls.set(key, i + 1);
        const rule = rules[name];
        const t = timestepOf(step);
        if (rule && kept.has(key) && i > 0 && rule.range[0] < t && t < rule.range[1] && i % rule.skip !== 0) {
          const copies = (kept.get(key) as PlainTensor[]).map((k) => ops.clone(k));
          return copies.length === 2 ? copies : copies[0];
        }
        const out = original(x, context);
        for (const k of kept.get(key) ?? []) k.dispose();
        kept.set(
          key,
          (Array.isArray(out) ? out : [out]).map((o) => ops.clone(o)),
        );
        return out;
      };
    }
  });
  const forward = transformer.forward.bind(transformer);
  let callsThisStep = 0;
  transformer.forward = (h, e) => {
    branch = callsThisStep % 2 === 0 ? 'cond' : 'uncond';
    step = Math.floor(callsThisStep / 2);
    callsThisStep += 1;
    return forward(h, e);
  };
  return generate(transformer, false);
}

describe('attention sites', () => {
  it("PAB decides each site's calls per CFG branch, as diffusers' rule with one state per branch", () => {
    const transformer = new ToyAttentionTransformer(new PlainTensorOps());
    const uncached = generate(transformer);
    const live = transformer.ops.liveCount;
    const forwards = transformer.blocks.map((b) => [b.attn1.forward, b.attn2.forward]);
    enableCache(adapterOf(transformer), {
      policy: 'pab',
      spatial_attention_block_skip_range: 3,
      spatial_attention_timestep_skip_range: [100, 800],
      cross_attention_block_skip_range: 2,
      cross_attention_timestep_skip_range: [400, 900],
    });
    const cached = generate(transformer);
    const [context] = summary(transformer, quiet).contexts;
    const attention = context.attention!;
    // The embedder's site runs before the chain places the call: computed, never decided.
    // spatial, skip 3 in (100, 800): calls 1 (t = 833) and 3 (3 % 3 == 0) computed, 2, 4, 5 reused.
    // cross, skip 2 in (400, 900): calls 1 and 2 reused (odd / in range), 3 reused, 4 (t = 333) computed.
    for (const site of attention.sites) {
      expect([site.transformer, site.transformerIndex]).toEqual(['transformer', 0]);
      expect(site.calls).toBe(STEPS);
      expect(site.skippedCalls).toEqual(site.kind === 'spatial' ? [2, 4, 5] : [1, 3]);
    }
    expect(attention.sites.map((s) => `${s.site} ${s.branch}`).sort()).toEqual(
      [0, 1, 2].flatMap((b) => [`blocks.${b}.attn1 cond`, `blocks.${b}.attn1 uncond`, `blocks.${b}.attn2 cond`, `blocks.${b}.attn2 uncond`]).sort(),
    );
    expect(attention.kinds).toEqual({ spatial: { calls: 36, skipped: 18 }, cross: { calls: 36, skipped: 12 } });
    expect(summary(transformer, quiet).markdown).toContain('Attention calls skipped (reused or forecast), transformer.blocks: spatial 18/36, cross 12/36');
    expect(context.computedBlocks).toBe(context.totalBlocks);

    const byHand = broadcastByHand({ attn1: { skip: 3, range: [100, 800] }, attn2: { skip: 2, range: [400, 900] } });
    expect(cached).toEqual(byHand);
    expect(cached).not.toEqual(uncached);

    disableCache(transformer);
    expect(transformer.ops.liveCount).toBe(live);
    expect(transformer.blocks.map((b) => [b.attn1.forward, b.attn2.forward])).toEqual(forwards);
    expect(transformer.blocks.every((b) => !Object.hasOwn(b.attn1, 'forward') && !Object.hasOwn(b.attn2, 'forward'))).toBe(true);
    expect(generate(transformer)).toEqual(uncached);
  });

  it('a skip range of 1 never reuses: bit-identical to uncached, nothing left alive; a new run starts the counts again', () => {
    const transformer = new ToyAttentionTransformer(new PlainTensorOps());
    const uncached = generate(transformer);
    const live = transformer.ops.liveCount;
    enableCache(adapterOf(transformer), { policy: 'pab', spatial_attention_block_skip_range: 1, cross_attention_block_skip_range: 1 });
    expect(generate(transformer)).toEqual(uncached);
    expect(generate(transformer)).toEqual(uncached);
    const sites = summary(transformer, quiet).contexts[0].attention!.sites;
    // The second run's step 0 restarted every site's count.
    expect(sites.every((s) => s.calls === STEPS && s.skippedCalls.length === 0)).toBe(true);
    disableCache(transformer);
    expect(transformer.ops.liveCount).toBe(live);
  });

  it('all skip ranges null: spatial 2, with a warning, as diffusers defaults', () => {
    const transformer = new ToyAttentionTransformer(new PlainTensorOps());
    const emitWarning = vi.spyOn(process, 'emitWarning').mockImplementation(() => {});
    try {
      enableCache(adapterOf(transformer), { policy: 'pab', spatial_attention_timestep_skip_range: [-1, 1001] });
      expect(String(emitWarning.mock.calls[0][0])).toMatch(/cache policy 'pab': .* all null; using spatial_attention_block_skip_range: 2/);
      generate(transformer);
      const sites = summary(transformer, quiet).contexts[0].attention!.sites;
      expect(sites.map((s) => [s.kind, s.skippedCalls])).toEqual(sites.map((s) => [s.kind, s.kind === 'spatial' ? [1, 3, 5] : []]));
    } finally {
      emitWarning.mockRestore();
      disableCache(transformer);
    }
  });

  it('refuses a model whose adapter declares no attention sites, naming the policy', () => {
    const transformer = new ToyAttentionTransformer(new PlainTensorOps());
    expect(() => enableCache(adapterOf(transformer, false), { policy: 'pab', spatial_attention_block_skip_range: 2 })).toThrow(
      /cache policy 'pab' acts on attention modules, but the adapter of transformer.blocks declares no attention sites: its BlockAdapter must declare them/,
    );
    // Nothing stays patched after the refusal.
    expect(transformer.blocks.every((b) => !Object.hasOwn(b.attn1, 'forward'))).toBe(true);
  });

  it('refuses a refresh to pab on a model without sites, leaving its cache as it was', () => {
    const transformer = new ToyAttentionTransformer(new PlainTensorOps());
    enableCache(adapterOf(transformer, false), { policy: 'dbcache', Fn_compute_blocks: 1, Bn_compute_blocks: 0, residual_diff_threshold: 0.1 });
    try {
      expect(() => refreshContext(transformer, { policy: 'pab', spatial_attention_block_skip_range: 2 })).toThrow(
        /cache policy 'pab' acts on attention modules/,
      );
      expect(cacheHandleOf(transformer)?.baseConfig.policy).toBe('dbcache');
      expect(cacheHandleOf(transformer)?.contexts[0].config.policy).toBe('dbcache');
    } finally {
      disableCache(transformer);
    }
  });

  it('a call without a timestep is refused under PAB', () => {
    const transformer = new ToyAttentionTransformer(new PlainTensorOps());
    enableCache(adapterOf(transformer), { policy: 'pab', spatial_attention_block_skip_range: 2 });
    try {
      const ops = transformer.ops;
      const [h, e] = [ops.tensor(noise(8, 1)), ops.tensor(noise(8, 2))];
      expect(() => runTransformerCall(transformer, { step: 0, branch: 'cond' }, () => transformer.forward(h, e))).toThrow(
        /cache policy 'pab' needs each call's timestep/,
      );
    } finally {
      disableCache(transformer);
    }
  });
});

describe('pab keys', () => {
  it.each([
    [{ spatial_attention_block_skip_range: 0 }, /spatial_attention_block_skip_range must be an integer >= 1 or null, got 0/],
    [{ cross_attention_timestep_skip_range: [800, 100] }, /cross_attention_timestep_skip_range must be a list \[lo, hi\] of two finite numbers, lo <= hi/],
    [{ temporal_attention_timestep_skip_range: 5 }, /temporal_attention_timestep_skip_range must be a list \[lo, hi\]/],
    [{ residual_diff_threshold: 0.1 }, /residual_diff_threshold.*pab/s],
  ])('refuse %j, naming the key and the valid values', (settings, message) => {
    const transformer = new ToyAttentionTransformer(new PlainTensorOps());
    expect(() => enableCache(adapterOf(transformer), { policy: 'pab', ...settings })).toThrow(message);
  });
});
