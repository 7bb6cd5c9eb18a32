// Charts and image grids as SVG, rendered to PNG by sharp (librsvg): the benchmark's speedup vs
// PSNR plot, the demo's residual diff per step, and side-by-side image grids.
import sharp from 'sharp';

const FONT = 'font-family="DejaVu Sans, Helvetica, Arial, sans-serif"';
// Hues that no demo prompt names (its prompts are red, green, blue, yellow, ... shapes).
const PALETTE = ['#17becf', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#393b79', '#ad494a', '#637939'];

export function seriesColour(i: number): string {
  return PALETTE[i % PALETTE.length];
}

/** Writes an SVG document as a PNG file. */
export async function renderSvgToPng(svg: string, path: string): Promise<void> {
  await sharp(Buffer.from(svg)).png().toFile(path);
}

function escapeXml(s: string): string {
  return s.replace(/[<>&"']/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[c]!);
}

function text(
  x: number,
  y: number,
  s: string,
  opts: { size?: number; anchor?: 'start' | 'middle' | 'end'; colour?: string; weight?: string; rotate?: boolean } = {},
): string {
  const rotate = opts.rotate ? ` transform="rotate(-90 ${x} ${y})"` : '';
  return `<text x="${x}" y="${y}" ${FONT} font-size="${opts.size ?? 12}" text-anchor="${opts.anchor ?? 'start'}" fill="${opts.colour ?? '#222'}"${opts.weight ? ` font-weight="${opts.weight}"` : ''}${rotate}>${escapeXml(s)}</text>`;
}

/** About `count` round tick values covering [lo, hi]. */
export function niceTicks(lo: number, hi: number, count = 5): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * magnitude).find((s) => s >= raw)!;
  const ticks: number[] = [];
  for (let v = Math.ceil(lo / step - 1e-9) * step; v <= hi + step * 1e-9; v += step) ticks.push(Number(v.toPrecision(12)));
  return ticks;
}

interface Frame {
  x: (v: number) => number;
  y: (v: number) => number;
  svg: string;
}

/** Axes, grid lines and labels of a plot area at (left, top) of size w x h. */
function frame(o: {
  left: number;
  top: number;
  w: number;
  h: number;
  xRange: [number, number];
  yRange: [number, number];
  xLabel: string;
  yLabel: string;
  title: string;
  xTicks?: number[];
  yFormat?: (v: number) => string;
}): Frame {
  const [x0, x1] = o.xRange;
  const [y0, y1] = o.yRange;
  const x = (v: number) => o.left + ((v - x0) / (x1 - x0)) * o.w;
  const y = (v: number) => o.top + o.h - ((v - y0) / (y1 - y0)) * o.h;
  const parts = [`<rect x="${o.left}" y="${o.top}" width="${o.w}" height="${o.h}" fill="#fff" stroke="#888"/>`];
  for (const t of o.xTicks ?? niceTicks(x0, x1, 8)) {
    parts.push(
      `<line x1="${x(t)}" y1="${o.top}" x2="${x(t)}" y2="${o.top + o.h}" stroke="#eee"/>`,
      text(x(t), o.top + o.h + 15, String(t), { anchor: 'middle', size: 11 }),
    );
  }
  for (const t of niceTicks(y0, y1, 5)) {
    parts.push(
      `<line x1="${o.left}" y1="${y(t)}" x2="${o.left + o.w}" y2="${y(t)}" stroke="#eee"/>`,
      text(o.left - 6, y(t) + 4, (o.yFormat ?? String)(t), { anchor: 'end', size: 11 }),
    );
  }
  parts.push(
    text(o.left + o.w / 2, o.top + o.h + 34, o.xLabel, { anchor: 'middle' }),
    text(o.left - 44, o.top + o.h / 2, o.yLabel, { anchor: 'middle', rotate: true }),
    text(o.left, o.top - 10, o.title, { weight: 'bold', size: 13 }),
  );
  return { x, y, svg: parts.join('\n') };
}

export interface ScatterPoint {
  readonly label: string;
  readonly x: number;
  /** Infinity is drawn at the top edge and labelled so. */
  readonly y: number;
  readonly highlighted: boolean;
}

/** Speedup (x) against PSNR (y): every config a dot, the Pareto front joined and labelled. */
export function paretoChartSvg(points: readonly ScatterPoint[], opts: { title: string; xLabel: string; yLabel: string }): string {
  const front = points.filter((p) => p.highlighted).sort((a, b) => a.x - b.x);
  const width = 900;
  // Room for the legend: two lines per point of the front.
  const height = Math.max(560, 90 + 28 * front.length);
  const finite = points.map((p) => p.y).filter(Number.isFinite);
  const yHi = Math.max(...finite, 0) + 3;
  const yLo = Math.max(0, Math.min(...finite, yHi) - 3);
  const xHi = Math.max(...points.map((p) => p.x), 1) * 1.05;
  const f = frame({
    left: 70,
    top: 40,
    w: width - 300,
    h: height - 100,
    xRange: [Math.min(1, ...points.map((p) => p.x)) * 0.95, xHi],
    yRange: [yLo, yHi],
    ...opts,
  });
  const yOf = (p: ScatterPoint) => f.y(Number.isFinite(p.y) ? p.y : yHi);
  const parts = [f.svg];
  parts.push(`<polyline fill="none" stroke="#d62728" stroke-width="1.5" points="${front.map((p) => `${f.x(p.x)},${yOf(p)}`).join(' ')}"/>`);
  for (const p of points.filter((q) => !q.highlighted)) parts.push(`<circle cx="${f.x(p.x)}" cy="${yOf(p)}" r="3.5" fill="#9aa" />`);
  front.forEach((p, i) => {
    parts.push(`<circle cx="${f.x(p.x)}" cy="${yOf(p)}" r="5" fill="#d62728"/>`);
    parts.push(text(f.x(p.x) + 7, yOf(p) - 6, String(i + 1), { size: 11, colour: '#d62728' }));
  });
  // The front's legend, numbered as on the plot.
  const legendX = width - 220;
  parts.push(text(legendX, 52, 'Pareto front (speedup, PSNR):', { size: 11, weight: 'bold' }));
  front.forEach((p, i) => {
    parts.push(text(legendX, 72 + i * 28, `${i + 1}. ${p.x.toFixed(2)}x, ${Number.isFinite(p.y) ? `${p.y.toFixed(1)} dB` : 'inf'}`, { size: 11 }));
    parts.push(text(legendX + 14, 72 + i * 28 + 12, p.label, { size: 8, colour: '#555' }));
  });
  return svgDocument(width, height, parts.join('\n'));
}

export interface DiffSeries {
  readonly label: string;
  /** Denoising step -> relative L1 diff. */
  readonly diffs: Readonly<Record<string, number>>;
  readonly cachedSteps: readonly number[];
}

export interface DiffPanel {
  readonly title: string;
  readonly threshold: number;
  readonly series: readonly DiffSeries[];
}

/**
 * One panel per cache config: each prompt's residual diff per step (a line), its cached steps
 * (filled dots; computed steps are hollow), and the threshold (dashed).
 */
export function residualDiffChartSvg(panels: readonly DiffPanel[], steps: number): string {
  const panelW = 430;
  const panelH = 250;
  const columns = Math.min(2, panels.length);
  const rows = Math.ceil(panels.length / columns);
  const width = columns * (panelW + 110) + 20;
  const height = rows * (panelH + 90) + 70;
  const parts: string[] = [];
  panels.forEach((panel, i) => {
    const left = 80 + (i % columns) * (panelW + 110);
    const top = 40 + Math.floor(i / columns) * (panelH + 90);
    const values = panel.series.flatMap((s) => Object.values(s.diffs));
    const yHi = Math.max(panel.threshold * 1.5, ...values) * 1.08;
    const f = frame({
      left,
      top,
      w: panelW,
      h: panelH,
      xRange: [0, steps - 1],
      yRange: [0, yHi],
      xLabel: 'denoising step',
      yLabel: 'residual diff (rel. L1)',
      title: panel.title,
      xTicks: niceTicks(0, steps - 1, 7).filter(Number.isInteger),
    });
    parts.push(f.svg);
    const yClamp = (v: number) => f.y(Math.min(v, yHi));
    parts.push(`<line x1="${left}" y1="${f.y(panel.threshold)}" x2="${left + panelW}" y2="${f.y(panel.threshold)}" stroke="#000" stroke-dasharray="6 4"/>`);
    parts.push(text(left + panelW - 4, f.y(panel.threshold) - 5, `threshold ${panel.threshold}`, { anchor: 'end', size: 10 }));
    panel.series.forEach((s, k) => {
      const colour = seriesColour(k);
      const entries = Object.entries(s.diffs)
        .map(([step, d]) => [Number(step), d] as const)
        .sort((a, b) => a[0] - b[0]);
      parts.push(`<polyline fill="none" stroke="${colour}" stroke-width="1.3" points="${entries.map(([st, d]) => `${f.x(st)},${yClamp(d)}`).join(' ')}"/>`);
      const cached = new Set(s.cachedSteps);
      for (const [st, d] of entries) {
        parts.push(
          cached.has(st)
            ? `<circle cx="${f.x(st)}" cy="${yClamp(d)}" r="3.2" fill="${colour}"/>`
            : `<circle cx="${f.x(st)}" cy="${yClamp(d)}" r="3" fill="#fff" stroke="${colour}"/>`,
        );
      }
      // Cached steps as ticks under the axis, one row per series.
      for (const st of s.cachedSteps) parts.push(`<rect x="${f.x(st) - 2}" y="${top + panelH - 6 - 5 * k}" width="4" height="4" fill="${colour}"/>`);
    });
  });
  const legendTop = height - 24;
  const labels = panels[0]?.series.map((s) => s.label) ?? [];
  labels.forEach((label, k) => {
    const x = 20 + k * Math.floor((width - 40) / Math.max(1, labels.length));
    parts.push(`<rect x="${x}" y="${legendTop - 9}" width="10" height="10" fill="${seriesColour(k)}"/>`, text(x + 14, legendTop, label, { size: 11 }));
  });
  parts.push(
    text(20, legendTop - 22, 'filled dot: cached step (also marked along the bottom of the panel); hollow dot: computed step; dashed: threshold', {
      size: 11,
      colour: '#555',
    }),
  );
  return svgDocument(width, height, parts.join('\n'));
}

/**
 * Images side by side: one row per row label, one column per column label (its lines stacked),
 * each tile a PNG scaled by `scale` without smoothing (the pixels stay visible).
 */
export async function imageGridSvg(
  tiles: readonly (readonly Buffer[])[],
  opts: { rowLabels: readonly string[]; columnLabels: readonly (readonly string[])[]; scale: number },
): Promise<string> {
  const meta = await sharp(tiles[0][0]).metadata();
  const tileW = (meta.width ?? 0) * opts.scale;
  const tileH = (meta.height ?? 0) * opts.scale;
  const labelW = 260;
  const gap = 6;
  const lines = Math.max(1, ...opts.columnLabels.map((l) => l.length));
  const headerH = 12 + 16 * lines;
  const width = labelW + opts.columnLabels.length * (tileW + gap);
  const height = headerH + opts.rowLabels.length * (tileH + gap);
  const parts = [`<rect width="${width}" height="${height}" fill="#fff"/>`];
  opts.columnLabels.forEach((label, c) =>
    label.forEach((line, k) =>
      parts.push(text(labelW + c * (tileW + gap) + tileW / 2, 18 + 16 * k, line, { anchor: 'middle', size: 13, weight: k === 0 ? 'bold' : undefined })),
    ),
  );
  for (let r = 0; r < tiles.length; ++r) {
    parts.push(text(8, headerH + r * (tileH + gap) + tileH / 2 + 4, opts.rowLabels[r], { size: 12 }));
    for (let c = 0; c < tiles[r].length; ++c) {
      const scaled = await sharp(tiles[r][c]).resize(tileW, tileH, { kernel: 'nearest' }).png().toBuffer();
      parts.push(
        `<image x="${labelW + c * (tileW + gap)}" y="${headerH + r * (tileH + gap)}" width="${tileW}" height="${tileH}" href="data:image/png;base64,${scaled.toString('base64')}"/>`,
      );
    }
  }
  return svgDocument(width, height, parts.join('\n'));
}

function svgDocument(width: number, height: number, body: string): string {
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}">\n<rect width="100%" height="100%" fill="#fff"/>\n${body}\n</svg>\n`;
}
