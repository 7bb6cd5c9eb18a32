// HiDream's feed-forward layers: the SwiGLU MLP (diffusers' HiDreamImageFeedForwardSwiGLU) and
// the mixture of experts of the image stream (MOEFeedForwardSwiGLU with its MoEGate): a softmax
// gate picks the top-k routed experts of each token, their outputs are weighted by the gate
// scores and summed, and a shared expert is added for every token.
//
// Routing is sparse, as in diffusers' inference path: each routed expert runs on its own tokens
// only, so the cost is that of k experts per token, not of all of them. The runtime has no
// gather / scatter op; `embedding` (rows of a table picked by int32 indices) is the gather, and
// the scatter-add back to tokens is k gathers of the weighted expert rows, summed in ascending
// expert order, the order diffusers' scatter_reduce adds them in.
//
// In bfloat16 / float16 the gate computes in that dtype as diffusers' does (logits, softmax and
// the routing weights rounded to it), and its rounded scores often tie at the k-th place: the
// experts are then picked as torch.topk picks them (see topk.ts), not by the runtime's topk.
import { add, concat, embedding, linear, mul, silu, softmax, tensor, tidy, type Tensor } from '@ditcache/cuda-runtime';
import { Linear, type WeightReader } from '@ditcache/diffusion';

import { torchTopkIndices } from './topk.js';

/** What a block's MLP (one SwiGLU, or the mixture of experts) does to (B, tokens, dim) states. */
export interface HiDreamMlp {
  forward(x: Tensor): Tensor;
}

/**
 * The hidden width of a SwiGLU MLP asked for `hidden`: two thirds of it (the third matrix keeps
 * the parameter count), rounded up to a multiple of 256.
 */
export function swigluHiddenDim(hidden: number): number {
  return 256 * Math.ceil(Math.trunc((2 * hidden) / 3) / 256);
}

/** w2(silu(w1 x) * w3 x), without biases. */
export class SwiGLUFeedForward implements HiDreamMlp {
  constructor(
    readonly w1: Linear,
    readonly w2: Linear,
    readonly w3: Linear,
  ) {}

  static load(w: WeightReader, dim: number, hidden: number): SwiGLUFeedForward {
    const inner = swigluHiddenDim(hidden);
    const noBias = { bias: false };
    return new SwiGLUFeedForward(
      Linear.load(w.at('w1'), dim, inner, noBias),
      Linear.load(w.at('w2'), inner, dim, noBias),
      Linear.load(w.at('w3'), dim, inner, noBias),
    );
  }

  forward(x: Tensor): Tensor {
    return tidy(() => this.w2.forward(mul(silu(this.w1.forward(x)), this.w3.forward(x))));
  }
}

/** Where each token's routed rows go, computed on the host from the gate's choices. */
interface Routing {
  /** Rows per expert; the rows of expert e follow those of experts < e. */
  counts: number[];
  /** The token of each routed row. */
  tokenOfRow: Int32Array;
  /** Each routed row's index into the flattened (tokens, experts) gate scores. */
  scoreOfRow: Int32Array;
  /** rowOf[r][n]: the row of token n's r-th expert in ascending expert order. */
  rowOf: Int32Array[];
}

/** `choices` holds each token's k experts, (tokens * k). */
function route(choices: Int32Array, tokens: number, k: number, experts: number): Routing {
  const counts = Array<number>(experts).fill(0);
  for (const e of choices) counts[e] += 1;
  const next = counts.map((_, e) => counts.slice(0, e).reduce((a, b) => a + b, 0));
  const tokenOfRow = new Int32Array(tokens * k);
  const scoreOfRow = new Int32Array(tokens * k);
  const rowOf = Array.from({ length: k }, () => new Int32Array(tokens));
  for (let n = 0; n < tokens; ++n) {
    const slots = Array.from({ length: k }, (_, j) => n * k + j).sort((a, b) => choices[a] - choices[b]);
    slots.forEach((slot, r) => {
      const row = next[choices[slot]]++;
      tokenOfRow[row] = n;
      scoreOfRow[row] = n * experts + choices[slot];
      rowOf[r][n] = row;
    });
  }
  return { counts, tokenOfRow, scoreOfRow, rowOf };
}

/** diffusers' MOEFeedForwardSwiGLU at inference (no renormalised top-k scores, no aux loss). */
export class MoEFeedForward implements HiDreamMlp {
  constructor(
    /** The gate's (routed experts, dim) logit weights. */
    readonly gate: Tensor,
    readonly experts: readonly SwiGLUFeedForward[],
    readonly sharedExperts: SwiGLUFeedForward,
    readonly activatedExperts: number,
  ) {}

  /** `hidden` is what the block asks of its MLP (4 dim); the shared expert gets half of it. */
  static load(w: WeightReader, dim: number, hidden: number, routedExperts: number, activatedExperts: number): MoEFeedForward {
    return new MoEFeedForward(
      w.tensor('gate.weight', [routedExperts, dim]),
      Array.from({ length: routedExperts }, (_, e) => SwiGLUFeedForward.load(w.at('experts').at(e), dim, hidden)),
      SwiGLUFeedForward.load(w.at('shared_experts'), dim, Math.floor(hidden / 2)),
      activatedExperts,
    );
  }

  forward(x: Tensor): Tensor {
    const [batch, seq, dim] = x.shape;
    const tokens = batch * seq;
    const k = this.activatedExperts;
    return tidy(() => {
      const device = x.device;
      const flat = x.reshape(tokens, dim);
      const experts = this.experts.length;
      const scores = softmax(linear(flat, this.gate), -1);
      const routing = route(torchTopkIndices(scores.toFloat32Array(), tokens, experts, k), tokens, k, experts);
      const rows = (indices: Int32Array): Tensor => tensor(indices, [indices.length], { device });
      const gathered = embedding(flat, rows(routing.tokenOfRow));
      const outputs: Tensor[] = [];
      let start = 0;
      routing.counts.forEach((count, e) => {
        if (count > 0) outputs.push(this.experts[e].forward(gathered.narrow(0, start, count)));
        start += count;
      });
      const weighted = mul(concat(outputs, 0), embedding(scores.reshape(tokens * experts, 1), rows(routing.scoreOfRow)));
      let routed = embedding(weighted, rows(routing.rowOf[0]));
      for (let r = 1; r < k; ++r) routed = add(routed, embedding(weighted, rows(routing.rowOf[r])));
      return add(routed, this.sharedExperts.forward(flat)).reshape(batch, seq, dim);
    });
  }
}
