// Wan's 3-D rotary position embedding (diffusers' WanRotaryPosEmbed): each head is split into a
// frame part and equal row and column parts, and a token at (frame, row, column) of the patch
// grid rotates each part by its own position. Pairs are interleaved: every frequency's cos / sin
// is repeated for the two channels it rotates, the form the runtime's interleaved rope takes.
import { tensor, type Device, type Tensor } from '@ditcache/cuda-runtime';

/** cos and sin, each (1, tokens, 1, head dim): they broadcast over batch and heads. */
export interface RotaryEmbedding {
  cos: Tensor;
  sin: Tensor;
}

/** The widths of the frame, row and column parts of a head of `headDim` channels. */
export function wanRotaryAxes(headDim: number): [frames: number, rows: number, columns: number] {
  const spatial = 2 * Math.floor(headDim / 6);
  return [headDim - 2 * spatial, spatial, spatial];
}

export interface WanRotaryOptions {
  /** Positions per axis the model was built for (the config's rope_max_seq_len). */
  maxSeqLen: number;
  theta?: number;
  device?: Device;
}

/**
 * The rotary tables of a (frames, rows, columns) patch grid, tokens in frame-major order.
 * Computed in float64 and stored as float32, as diffusers does.
 */
export function wanRotaryEmbedding(grid: readonly [number, number, number], headDim: number, opts: WanRotaryOptions): RotaryEmbedding {
  const theta = opts.theta ?? 10000;
  const over = grid.findIndex((n) => n > opts.maxSeqLen);
  if (over >= 0) {
    throw new RangeError(
      `wanRotaryEmbedding: the patch grid (${grid.join(', ')}) has ${grid[over]} positions along ${['frames', 'rows', 'columns'][over]}, more than rope_max_seq_len ${opts.maxSeqLen}`,
    );
  }
  const axes = wanRotaryAxes(headDim);
  const freqs = axes.map((dim) => Array.from({ length: dim / 2 }, (_, i) => 1 / theta ** ((2 * i) / dim)));
  const [frames, rows, columns] = grid;
  const tokens = frames * rows * columns;
  const cos = new Float32Array(tokens * headDim);
  const sin = new Float32Array(tokens * headDim);
  let at = 0;
  for (let f = 0; f < frames; ++f) {
    for (let r = 0; r < rows; ++r) {
      for (let c = 0; c < columns; ++c) {
        [f, r, c].forEach((pos, axis) => {
          for (const freq of freqs[axis]) {
            const angle = pos * freq;
            cos[at] = cos[at + 1] = Math.cos(angle);
            sin[at] = sin[at + 1] = Math.sin(angle);
            at += 2;
          }
        });
      }
    }
  }
  return {
    cos: tensor(cos, [1, tokens, 1, headDim], { device: opts.device }),
    sin: tensor(sin, [1, tokens, 1, headDim], { device: opts.device }),
  };
}
