// The decoding half of diffusers' AutoencoderKLHunyuanVideo: latents (B, C, T, h, w), already
// divided by scaling_factor, to video (B, 3, 1 + 4 (T - 1), 8 h, 8 w) in [-1, 1]. Up to 4 latent
// frames decode at once; longer latents decode as diffusers' framewise decoding does (on by
// default): overlapping tiles of 5 latent frames every 3, each tile's first 4 frames blended
// linearly into the previous tile's last 4. enableTiling() adds diffusers' spatial tiling (off by
// default, as in diffusers), which large videos need to fit in memory.
import { add, concat, mul, silu, tidy, type Tensor } from '@ditcache/cuda-runtime';
import { Conv3d, GroupNorm, loadFromFolder, type LoadOptions, type ParameterStore, type WeightReader } from '@ditcache/diffusion';

import { readHunyuanVideoVaeConfig, type AutoencoderKLHunyuanVideoConfig } from './config.js';
import { CausalConv3d, CausalFrameAttention, CausalUpsampler, ResnetBlock } from './layers.js';

/** diffusers' tile_sample_min_num_frames and tile_sample_stride_num_frames (frames of video). */
const TILE_SAMPLE_FRAMES = 16;
const TILE_SAMPLE_STRIDE = 12;

/** diffusers' enable_tiling arguments for height and width, in pixels. */
export interface SpatialTiling {
  /** Tile size (default 256 each). */
  tileSampleMinHeight?: number;
  tileSampleMinWidth?: number;
  /** Distance between tiles (default 192 each); tiles overlap by min - stride pixels, blended linearly. */
  tileSampleStrideHeight?: number;
  tileSampleStrideWidth?: number;
}
const TILING_DEFAULTS: Required<SpatialTiling> = { tileSampleMinHeight: 256, tileSampleMinWidth: 256, tileSampleStrideHeight: 192, tileSampleStrideWidth: 192 };

/** Residual block, (attention, residual block) at the lowest resolution. */
class MidBlock {
  constructor(
    readonly first: ResnetBlock,
    readonly attention: CausalFrameAttention | null,
    readonly second: ResnetBlock,
  ) {}

  forward(x: Tensor): Tensor {
    return tidy(() => {
      const h = this.first.forward(x);
      return this.second.forward(this.attention ? this.attention.forward(h) : h);
    });
  }
}

/** layers_per_block + 1 residual blocks, then (where the level upsamples) the upsampler. */
class UpBlock {
  constructor(
    readonly resnets: readonly ResnetBlock[],
    readonly upsampler: CausalUpsampler | null,
  ) {}

  forward(x: Tensor): Tensor {
    return tidy(() => {
      let h = x;
      for (const resnet of this.resnets) h = resnet.forward(h);
      return this.upsampler ? this.upsampler.forward(h) : h;
    });
  }
}

export class AutoencoderKLHunyuanVideoDecoder implements Disposable {
  readonly config: AutoencoderKLHunyuanVideoConfig;
  /** Pixels per latent pixel along height and width. */
  readonly scaleFactorSpatial: number;
  /** Frames per latent frame (after the first, which decodes to one frame). */
  readonly scaleFactorTemporal: number;
  private readonly postQuantConv: Conv3d;
  private readonly convIn: CausalConv3d;
  private readonly midBlock: MidBlock;
  private readonly upBlocks: readonly UpBlock[];
  private readonly normOut: GroupNorm;
  private readonly convOut: CausalConv3d;
  private readonly params: ParameterStore;
  /** Spatial tiling, when enabled. */
  private tiling: Required<SpatialTiling> | null = null;

  private constructor(config: AutoencoderKLHunyuanVideoConfig, w: WeightReader, params: ParameterStore) {
    this.config = config;
    this.params = params;
    this.scaleFactorSpatial = config.spatial_compression_ratio;
    this.scaleFactorTemporal = config.temporal_compression_ratio;
    const groups = config.norm_num_groups;
    const channels = config.block_out_channels;
    const levels = channels.length;
    const last = channels[levels - 1];
    const z = config.latent_channels;
    this.postQuantConv = Conv3d.load(w.at('post_quant_conv'), z, z, { kernel: 1 });
    const d = w.at('decoder');
    this.convIn = CausalConv3d.load(d.at('conv_in'), z, last, 3);
    const mid = d.at('mid_block');
    this.midBlock = new MidBlock(
      ResnetBlock.load(mid.at('resnets').at(0), last, last, groups),
      config.mid_block_add_attention ? CausalFrameAttention.load(mid.at('attentions').at(0), last, groups) : null,
      ResnetBlock.load(mid.at('resnets').at(1), last, last, groups),
    );
    const reversed = [...channels].reverse();
    const spatialUps = Math.log2(config.spatial_compression_ratio);
    const temporalUps = Math.log2(config.temporal_compression_ratio);
    this.upBlocks = reversed.map((out, i) => {
      const block = d.at('up_blocks').at(i);
      const inChannels = i === 0 ? reversed[0] : reversed[i - 1];
      const resnets = Array.from({ length: config.layers_per_block + 1 }, (_, j) =>
        ResnetBlock.load(block.at('resnets').at(j), j === 0 ? inChannels : out, out, groups),
      );
      // diffusers: the first log2(spatial ratio) levels double in space, the two before the last double in time.
      const spatial = i < spatialUps ? 2 : 1;
      const temporal = i >= levels - 1 - temporalUps && i !== levels - 1 ? 2 : 1;
      const upsampler =
        spatial === 1 && temporal === 1
          ? null
          : new CausalUpsampler(CausalConv3d.load(block.at('upsamplers').at(0).at('conv'), out, out, 3), temporal, spatial);
      return new UpBlock(resnets, upsampler);
    });
    this.normOut = GroupNorm.load(d.at('conv_norm_out'), groups, channels[0], 1e-6);
    this.convOut = CausalConv3d.load(d.at('conv_out'), channels[0], config.out_channels, 3);
  }

  /** Loads a diffusers `vae/` folder (AutoencoderKLHunyuanVideo); only the decoder's weights are read. */
  static load(dir: string, opts: LoadOptions = {}): AutoencoderKLHunyuanVideoDecoder {
    return loadFromFolder(dir, opts, (folder, w, params) => new AutoencoderKLHunyuanVideoDecoder(readHunyuanVideoVaeConfig(folder), w, params));
  }

  /**
   * Decodes in spatial tiles from now on (diffusers' enable_tiling): latents wider or taller than a
   * tile decode tile by tile, the overlaps blended linearly. Sizes in pixels, multiples of the
   * spatial scale factor; stride below size.
   */
  enableTiling(tiling: SpatialTiling = {}): void {
    const t = { ...TILING_DEFAULTS, ...(this.tiling ?? {}), ...tiling };
    const f = this.scaleFactorSpatial;
    for (const [name, value] of Object.entries(t)) {
      if (!Number.isInteger(value) || value <= 0 || value % f !== 0) {
        throw new RangeError(`AutoencoderKLHunyuanVideoDecoder.enableTiling: ${name} must be a positive multiple of ${f}, got ${value}`);
      }
    }
    if (t.tileSampleStrideHeight > t.tileSampleMinHeight || t.tileSampleStrideWidth > t.tileSampleMinWidth) {
      throw new RangeError(
        `AutoencoderKLHunyuanVideoDecoder.enableTiling: the strides (${t.tileSampleStrideHeight}, ${t.tileSampleStrideWidth}) must not exceed the tile sizes (${t.tileSampleMinHeight}, ${t.tileSampleMinWidth})`,
      );
    }
    this.tiling = t;
  }

  /** Decodes whole frames again (diffusers' disable_tiling). */
  disableTiling(): void {
    this.tiling = null;
  }

  /** (B, latent_channels, T, h, w) latents, divided by scaling_factor, -> (B, out_channels, 1 + 4 (T - 1), 8 h, 8 w). */
  decode(z: Tensor): Tensor {
    const c = this.config;
    if (z.rank !== 5 || z.shape[1] !== c.latent_channels) {
      throw new TypeError(`AutoencoderKLHunyuanVideoDecoder.decode: latents must be (B, ${c.latent_channels}, frames, h, w), got (${z.shape.join(', ')})`);
    }
    const tileLatentFrames = TILE_SAMPLE_FRAMES / c.temporal_compression_ratio;
    if (z.shape[2] > tileLatentFrames) return this.temporalTiledDecode(z);
    return tidy(() => this.decodeFrames(z));
  }

  /** The frames of `z`: in spatial tiles when tiling is on and `z` exceeds a tile, else at once. */
  private decodeFrames(z: Tensor): Tensor {
    const t = this.tiling;
    const f = this.scaleFactorSpatial;
    if (t && (z.shape[4] > t.tileSampleMinWidth / f || z.shape[3] > t.tileSampleMinHeight / f)) return this.spatialTiledDecode(z, t);
    return this.decodeTile(z);
  }

  /** diffusers' tiled_decode. */
  private spatialTiledDecode(z: Tensor, t: Required<SpatialTiling>): Tensor {
    const f = this.scaleFactorSpatial;
    const [, , , height, width] = z.shape;
    const [minH, minW] = [t.tileSampleMinHeight / f, t.tileSampleMinWidth / f];
    const [strideH, strideW] = [t.tileSampleStrideHeight / f, t.tileSampleStrideWidth / f];
    return tidy(() => {
      const rows: Tensor[][] = [];
      for (let i = 0; i < height; i += strideH) {
        const row: Tensor[] = [];
        for (let j = 0; j < width; j += strideW) {
          row.push(this.decodeTile(z.narrow(3, i, Math.min(minH, height - i)).narrow(4, j, Math.min(minW, width - j))));
        }
        rows.push(row);
      }
      // As diffusers, each tile is blended into the one above and the one to its left as those were blended.
      const kept = rows.map((row, i) =>
        row.map((_, j) => {
          if (i > 0) row[j] = blend(rows[i - 1][j], row[j], 3, t.tileSampleMinHeight - t.tileSampleStrideHeight);
          if (j > 0) row[j] = blend(row[j - 1], row[j], 4, t.tileSampleMinWidth - t.tileSampleStrideWidth);
          const tile = row[j];
          return tile.narrow(3, 0, Math.min(tile.shape[3], t.tileSampleStrideHeight)).narrow(4, 0, Math.min(tile.shape[4], t.tileSampleStrideWidth));
        }),
      );
      const all = concat(
        kept.map((row) => concat(row, 4)),
        3,
      );
      return all
        .narrow(3, 0, Math.min(all.shape[3], height * f))
        .narrow(4, 0, Math.min(all.shape[4], width * f))
        .contiguous();
    });
  }

  /** post_quant_conv and the decoder over all of `z`. */
  private decodeTile(z: Tensor): Tensor {
    return tidy(() => {
      let h = this.midBlock.forward(this.convIn.forward(this.postQuantConv.forward(z)));
      for (const block of this.upBlocks) h = block.forward(h);
      return this.convOut.forward(silu(this.normOut.forward(h)));
    });
  }

  /** diffusers' _temporal_tiled_decode. */
  private temporalTiledDecode(z: Tensor): Tensor {
    const ratio = this.config.temporal_compression_ratio;
    const frames = z.shape[2];
    const sampleFrames = (frames - 1) * ratio + 1;
    const tileFrames = TILE_SAMPLE_FRAMES / ratio;
    const stride = TILE_SAMPLE_STRIDE / ratio;
    const blendExtent = TILE_SAMPLE_FRAMES - TILE_SAMPLE_STRIDE;
    return tidy(() => {
      const row: Tensor[] = [];
      for (let i = 0; i < frames; i += stride) {
        const decoded = this.decodeFrames(z.narrow(2, i, Math.min(tileFrames + 1, frames - i)));
        row.push(i > 0 ? decoded.narrow(2, 1, decoded.shape[2] - 1) : decoded);
      }
      const kept: Tensor[] = [];
      for (let i = 0; i < row.length; ++i) {
        if (i > 0) row[i] = blend(row[i - 1], row[i], 2, blendExtent);
        kept.push(row[i].narrow(2, 0, Math.min(row[i].shape[2], i > 0 ? TILE_SAMPLE_STRIDE : TILE_SAMPLE_STRIDE + 1)));
      }
      const all = concat(kept, 2);
      return all.narrow(2, 0, Math.min(sampleFrames, all.shape[2])).contiguous();
    });
  }

  /** Frees the weights. */
  dispose(): void {
    this.params.dispose();
  }
  [Symbol.dispose](): void {
    this.dispose();
  }
}

/**
 * diffusers' blend_t / blend_v / blend_h along `dim`: b's first slices fade in over a's last ones,
 * b[x] = a[-e + x] (1 - x / e) + b[x] x / e.
 */
function blend(a: Tensor, b: Tensor, dim: number, extent: number): Tensor {
  const e = Math.min(a.shape[dim], b.shape[dim], extent);
  const na = a.shape[dim];
  const blended = Array.from({ length: e }, (_, x) => add(mul(a.narrow(dim, na - e + x, 1), 1 - x / e), mul(b.narrow(dim, x, 1), x / e)));
  return concat(e === b.shape[dim] ? blended : [...blended, b.narrow(dim, e, b.shape[dim] - e)], dim);
}
