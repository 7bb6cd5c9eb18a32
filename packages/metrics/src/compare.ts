import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { basename, join } from 'node:path';
import { ClipModel, evaluateClipScore, readPrompts } from './clip.js';
import { MetricsError } from './errors.js';
import { evaluatePixelMetrics } from './evaluate-pixels.js';
import { frechetDistance, type FeatureStatistics } from './fid.js';
import { fileFeatureStatistics, InceptionFeatureExtractor } from './fid-network.js';
import { evaluateLpips, LpipsNetwork } from './lpips.js';
import type { OnnxRuntimeChoice } from './onnx-network.js';
import { resolveImageSet, resolvePairs, type ImagePair } from './pairs.js';
import { PIXEL_METRICS, type PixelMetricName } from './pixel-evaluation.js';
import type { Comparison, MetricName, MetricResult } from './report.js';
import type { SsimWindow } from './ssim.js';

/**
 * Runs the metrics of the CLI over a reference and a compared path (files or directories),
 * loading each network once and reusing the reference's FID statistics across comparisons
 * (the 1-vs-many mode compares one reference with many directories).
 */

export type LpipsBackbone = 'alex' | 'vgg';

/** Default folder of the ONNX exports: $DITCACHE_METRICS_MODELS, else ~/.cache/ditcache/metrics. */
export function defaultModelsDir(): string {
  return process.env.DITCACHE_METRICS_MODELS || join(homedir(), '.cache', 'ditcache', 'metrics');
}

/** Where each network's files are expected inside the models folder. */
export function modelPaths(modelsDir: string, lpipsNet: LpipsBackbone = 'alex') {
  return {
    lpips: join(modelsDir, `lpips-${lpipsNet}.onnx`),
    fid: join(modelsDir, 'fid-inception-v3.onnx'),
    clipImage: join(modelsDir, 'clip-image.onnx'),
    clipText: join(modelsDir, 'clip-text.onnx'),
    clipTokenizer: join(modelsDir, 'clip-tokenizer'),
    clipConfig: join(modelsDir, 'clip-config.json'),
  };
}

export interface ProgressReporter {
  update(done: number): void;
  stop(): void;
}

export interface CompareOptions {
  metrics: readonly MetricName[];
  ssimWindow?: SsimWindow;
  dataRange?: number;
  threads?: number;
  modelsDir?: string;
  lpipsNet?: LpipsBackbone;
  /** Prompts for clip_score: a .txt (one per line, file-name order) or .json (name -> prompt). */
  prompts?: string;
  runtime?: OnnxRuntimeChoice;
  batchSize?: number;
  /** Called when a metric starts over `total` items; no progress when omitted. */
  progress?: (label: string, total: number) => ProgressReporter;
}

/**
 * The learned metrics whose files are present (the ones `all` includes), and why the others
 * are left out.
 */
export function availableLearnedMetrics(options: CompareOptions): { available: MetricName[]; skipped: string[] } {
  const paths = modelPaths(options.modelsDir ?? defaultModelsDir(), options.lpipsNet);
  const available: MetricName[] = [];
  const skipped: string[] = [];
  if (existsSync(paths.lpips)) available.push('lpips');
  else skipped.push(`lpips (no ${paths.lpips})`);
  if (existsSync(paths.fid)) available.push('fid');
  else skipped.push(`fid (no ${paths.fid})`);
  if (!existsSync(paths.clipImage) || !existsSync(paths.clipText) || !existsSync(paths.clipTokenizer)) {
    skipped.push(`clip_score (no ${paths.clipImage}, ${paths.clipText} or ${paths.clipTokenizer})`);
  } else if (!options.prompts) {
    skipped.push('clip_score (no --prompts)');
  } else {
    available.push('clip_score');
  }
  return { available, skipped };
}

export class MetricsSession {
  private lpips?: Promise<LpipsNetwork>;
  private inception?: Promise<InceptionFeatureExtractor>;
  private clip?: Promise<ClipModel>;
  private readonly referenceStatistics = new Map<string, Promise<FeatureStatistics>>();

  constructor(private readonly options: CompareOptions) {
    const unknown = options.metrics.filter((m) => !['psnr', 'ssim', 'mse', 'mae', 'lpips', 'fid', 'clip_score'].includes(m));
    if (unknown.length > 0) throw new MetricsError(`unknown metric ${unknown.join(', ')}`);
  }

  private get paths() {
    return modelPaths(this.options.modelsDir ?? defaultModelsDir(), this.options.lpipsNet);
  }

  private get networkOptions() {
    return { runtime: this.options.runtime ?? 'auto', threads: this.options.threads };
  }

  private track<T>(label: string, total: number, run: (onProgress?: (done: number) => void) => Promise<T>): Promise<T> {
    const reporter = this.options.progress?.(label, total);
    return run(reporter ? (done) => reporter.update(done) : undefined).finally(() => reporter?.stop());
  }

  /** Every metric asked for, `compared` against `reference`. */
  async compare(reference: string, compared: string, label = basename(compared)): Promise<Comparison> {
    const metrics = this.options.metrics;
    const results: Comparison['results'] = {};
    const pixelMetrics = PIXEL_METRICS.filter((m) => metrics.includes(m)) as PixelMetricName[];
    let pairs: ImagePair[] | undefined;
    if (pixelMetrics.length > 0 || metrics.includes('lpips')) pairs = await resolvePairs(reference, compared);
    if (pairs && pixelMetrics.length > 0) {
      const evaluation = await this.track(`${label}: ${pixelMetrics.join(', ')}`, pairs.length, (onProgress) =>
        evaluatePixelMetrics(pairs as ImagePair[], {
          metrics: pixelMetrics,
          dataRange: this.options.dataRange,
          ssim: { window: this.options.ssimWindow ?? 'uniform' },
          threads: this.options.threads,
          onProgress: onProgress && ((done) => onProgress(done)),
        }),
      );
      for (const metric of pixelMetrics) results[metric] = { kind: 'summary', summary: evaluation[metric]! };
    }
    if (pairs && metrics.includes('lpips')) {
      this.lpips ??= LpipsNetwork.load(this.paths.lpips, this.networkOptions);
      const network = await this.lpips;
      const summary = await this.track(`${label}: lpips`, pairs.length, (onProgress) =>
        evaluateLpips(pairs as ImagePair[], network, onProgress && ((done) => onProgress(done))),
      );
      results.lpips = { kind: 'summary', summary };
    }
    if (metrics.includes('fid')) results.fid = await this.fid(reference, compared, label);
    if (metrics.includes('clip_score')) results.clip_score = await this.clipScore(compared, label);
    return { label, reference, compared, results };
  }

  private async fid(reference: string, compared: string, label: string): Promise<MetricResult> {
    this.inception ??= InceptionFeatureExtractor.load(this.paths.fid, this.networkOptions);
    const extractor = await this.inception;
    const referenceFiles = (await resolveImageSet(reference)).map((f) => f.path);
    const comparedFiles = (await resolveImageSet(compared)).map((f) => f.path);
    const batchSize = this.options.batchSize;
    let referenceStats = this.referenceStatistics.get(reference);
    if (!referenceStats) {
      referenceStats = this.track(`reference: fid features`, referenceFiles.length, (onProgress) =>
        fileFeatureStatistics(referenceFiles, extractor, { batchSize, onProgress: onProgress && ((done) => onProgress(done)) }),
      );
      this.referenceStatistics.set(reference, referenceStats);
    }
    const comparedStats = await this.track(`${label}: fid features`, comparedFiles.length, (onProgress) =>
      fileFeatureStatistics(comparedFiles, extractor, { batchSize, onProgress: onProgress && ((done) => onProgress(done)) }),
    );
    return {
      kind: 'fid',
      fid: { value: frechetDistance(await referenceStats, comparedStats), count: comparedFiles.length, referenceCount: referenceFiles.length },
    };
  }

  private async clipScore(compared: string, label: string): Promise<MetricResult> {
    if (!this.options.prompts) throw new MetricsError('clip_score needs --prompts FILE (.txt, one prompt per line, or .json, file name -> prompt)');
    const paths = this.paths;
    this.clip ??= ClipModel.load(
      { imageModel: paths.clipImage, textModel: paths.clipText, tokenizerDir: paths.clipTokenizer, configFile: paths.clipConfig },
      this.networkOptions,
    );
    const model = await this.clip;
    const images = await resolveImageSet(compared);
    const prompts = await readPrompts(
      this.options.prompts,
      images.map((image) => image.name),
    );
    const summary = await this.track(`${label}: clip_score`, images.length, (onProgress) =>
      evaluateClipScore(images, prompts, model, {
        batchSize: this.options.batchSize,
        onProgress: onProgress && ((done) => onProgress(done)),
      }),
    );
    return { kind: 'summary', summary };
  }

  async dispose(): Promise<void> {
    const settled = await Promise.allSettled([this.lpips, this.inception, this.clip]);
    for (const result of settled) if (result.status === 'fulfilled' && result.value) await result.value.dispose();
  }
}
