// What `ditcache tune` leaves in --out: best.yaml (the pick as a `cache_config:` document that
// `--cache` loads, and cache-dit's loader too where the policy has a cache-dit form), results.md
// (the pick, the held-out check, a table per policy), results.json and a Pareto plot per policy.
import { join } from 'node:path';

import type { RegisteredPolicy } from '@ditcache/core';
import { Document, isSeq, visit } from 'yaml';

import { paretoChartSvg, renderSvgToPng } from '../bench/charts.js';
import { formatPsnr, paretoFlags, type ConfigResult } from '../bench/report.js';
import { writeTextAtomically } from '../outputs.js';
import type { HeldOutCheck, TunedPoint, TuneSettings } from './tune.js';

export interface TuneFiles {
  /** Absent when no config met the target. */
  readonly best?: string;
  readonly table: string;
  readonly json: string;
  /** Policy name -> its Pareto plot. */
  readonly plots: Readonly<Record<string, string>>;
}

export interface TuneReport {
  readonly model: string;
  readonly settings: TuneSettings;
  readonly points: readonly TunedPoint[];
  readonly policies: readonly RegisteredPolicy[];
  readonly pick?: TunedPoint;
  readonly heldOut?: readonly HeldOutCheck[];
  readonly bestHeldOut?: HeldOutCheck;
}

/** The pick's config as cache-dit's loader reads it, when its policy has such a form. */
export function cacheDitConfig(report: Pick<TuneReport, 'policies' | 'settings'>, point: TunedPoint): Readonly<Record<string, unknown>> | undefined {
  const tuning = report.policies.find((p) => p.name === point.policy)?.tuning;
  return tuning?.cacheDitForm?.(point.config, { steps: report.settings.steps });
}

/** The run's size, with the family's own settings: '48x32, frames 5, fps 12'. */
const runSize = (settings: TuneSettings): string =>
  [`${settings.width}x${settings.height}`, ...Object.entries(settings.family ?? {}).map(([setting, value]) => `${setting} ${value}`)].join(', ');

/** A mean PSNR for a sentence. */
export const psnrText = (r: Pick<ConfigResult, 'meanPsnr'>): string => (Number.isFinite(r.meanPsnr) ? `${r.meanPsnr.toFixed(2)} dB` : 'identical to uncached');

/** best.yaml: the pick under `cache_config:`, with what it measured as comments. */
export function bestYaml(report: TuneReport, pick: TunedPoint, heldOut: HeldOutCheck | undefined): string {
  const { settings } = report;
  const cacheDit = cacheDitConfig(report, pick);
  const knob = pick.knob ? ` with ${pick.knob.key} ${pick.knob.value}` : '';
  const lines = [
    `# ditcache tune: the fastest config found whose mean PSNR against the uncached images is >= ${settings.targetPsnr} dB`,
    `# (${report.model}, ${settings.steps} steps, ${runSize(settings)}, ${settings.dtype}): policy ${pick.policy}, variant ${pick.variant}${knob}.`,
    `# Tuning prompts (seeds from ${settings.seed}): ${psnrText(pick.measured)}, ${(heldOut?.timed ?? pick.measured).speedup.toFixed(2)}x.`,
    ...(heldOut ? [`# Held-out prompts (seeds from ${settings.holdoutSeed}): ${psnrText(heldOut.heldOut)}, ${heldOut.heldOut.speedup.toFixed(2)}x.`] : []),
    cacheDit
      ? `# Load it with: ditcache generate --cache best.yaml, or cache-dit's load_configs.`
      : `# Load it with: ditcache generate --cache best.yaml (cache-dit has no form of policy ${pick.policy}).`,
  ];
  const document = new Document({ cache_config: cacheDit ?? pick.config });
  // Lists (a steps mask, magnitude ratios) on one line each, however long.
  visit(document, {
    Seq(_, node) {
      if (isSeq(node)) node.flow = true;
    },
  });
  return `${lines.join('\n')}\n${document.toString({ lineWidth: 0 })}`;
}

function policyTable(points: readonly TunedPoint[], steps: number): string {
  const front = paretoFlags(points.map((p) => ({ x: p.measured.speedup, y: p.measured.meanPsnr })));
  const rows = points
    .map((p, i) => ({ p, pareto: front[i] }))
    .sort((a, b) => b.p.measured.speedup - a.p.measured.speedup)
    .map(({ p, pareto }) => {
      const m = p.measured;
      return `| ${[
        p.name,
        p.variant,
        p.knob ? `${p.knob.key} = ${p.knob.value}` : '-',
        formatPsnr(m),
        m.meanSsim.toFixed(4),
        `${m.speedup.toFixed(2)}x`,
        m.seconds.toFixed(2),
        `${m.cachedSteps.toFixed(1)}/${steps}`,
        p.meetsTarget ? 'yes' : '',
        pareto ? 'yes' : '',
      ].join(' | ')} |`;
    });
  return [
    '| Config | Variant | Knob | PSNR dB | SSIM | Speedup | Wall s | Cached steps | Meets target | Pareto |',
    '|---|---|---|---|---|---|---|---|---|---|',
    ...rows,
  ].join('\n');
}

function heldOutTable(checks: readonly HeldOutCheck[]): string {
  return [
    '| Config | Cached steps | Tuning PSNR dB | Tuning speedup (timed together) | Held-out PSNR dB | Held-out speedup | Meets target held out |',
    '|---|---|---|---|---|---|---|',
    ...checks.map(
      (c) =>
        `| ${c.point.name} | ${c.point.measured.cachedSteps.toFixed(1)} | ${formatPsnr(c.point.measured)} | ${c.timed.speedup.toFixed(2)}x | ${formatPsnr(c.heldOut)} | ${c.heldOut.speedup.toFixed(2)}x | ${c.meetsTarget ? 'yes' : 'no'} |`,
    ),
  ].join('\n');
}

/** results.md: settings, the pick and its held-out check, then every config per policy. */
export function tuneMarkdown(report: TuneReport, count: number): string {
  const { settings, pick, heldOut, bestHeldOut } = report;
  const seeds = (from: number) => `seeds ${from}..${from + count - 1}`;
  const parts = [
    '# ditcache tune',
    `Model ${report.model} in ${settings.dtype}, ${count} prompts, ${settings.steps} steps, ${runSize(settings)}. ` +
      `Target: mean PSNR >= ${settings.targetPsnr} dB against the uncached images (8-bit) on the tuning prompts (${seeds(settings.seed)}). ` +
      `Speedup: uncached wall time over the config's, summed over prompts (VAE decoding included; the fastest of ${settings.repeats} per cell); ` +
      "in the per-policy tables, as measured in the search's rounds, against the uncached time of its first. " +
      `Held-out prompts: the same prompts from ${seeds(settings.holdoutSeed)}. Policies searched: ${settings.policies.join(', ')}.`,
  ];
  if (pick && heldOut) {
    const checked = heldOut[0];
    parts.push(
      '## Pick',
      `\`${pick.name}\` (written to best.yaml): ${psnrText(pick.measured)} at ${checked.timed.speedup.toFixed(2)}x on the tuning prompts, ` +
        `${psnrText(checked.heldOut)} at ${checked.heldOut.speedup.toFixed(2)}x on the held-out prompts (${checked.meetsTarget ? 'meets' : 'misses'} the target there).`,
      '## Finalists and held-out check',
      'The finalists are the configs that met the target on the tuning prompts, skip work, and no other config beats in both blocks computed and PSNR. ' +
        'They were timed again together with the uncached run on the tuning prompts (prompt by prompt, every config in turn, so load on the machine slows them alike); ' +
        'the fastest there is the pick. Then all of them ran on the held-out prompts.',
      heldOutTable(heldOut),
      bestHeldOut
        ? `Fastest of these meeting the target on the held-out prompts: \`${bestHeldOut.point.name}\` at ${bestHeldOut.heldOut.speedup.toFixed(2)}x; ` +
            `the pick's held-out speedup is ${((100 * checked.heldOut.speedup) / bestHeldOut.heldOut.speedup).toFixed(1)}% of it.`
        : 'None of these meets the target on the held-out prompts: consider a higher --target-psnr for a margin.',
    );
  } else {
    parts.push('## Pick', `No config met the target of ${settings.targetPsnr} dB on the tuning prompts.`);
  }
  for (const policy of settings.policies) {
    const points = report.points.filter((p) => p.policy === policy);
    parts.push(`## Policy ${policy}`, points.length ? policyTable(points, settings.steps) : `No configs at ${settings.steps} steps.`);
  }
  return `${parts.join('\n\n')}\n`;
}

/** bench's Pareto flag compares a result with its round's batch only: meaningless here, so left out. */
function withoutBatchPareto({ pareto: _, ...measured }: ConfigResult): Omit<ConfigResult, 'pareto'> {
  return measured;
}

/** Writes results.md, results.json, a plot per policy and, when there is a pick, best.yaml. */
export async function writeTuneOutputs(out: string, report: TuneReport): Promise<TuneFiles> {
  const count = report.points[0]?.measured.psnr.length ?? 0;
  const plots: Record<string, string> = {};
  for (const policy of report.settings.policies) {
    const points = report.points.filter((p) => p.policy === policy);
    if (points.length === 0) continue;
    const front = paretoFlags(points.map((p) => ({ x: p.measured.speedup, y: p.measured.meanPsnr })));
    plots[policy] = join(out, `pareto-${policy}.png`);
    await renderSvgToPng(
      paretoChartSvg(
        points.map((p, i) => ({ label: p.name, x: p.measured.speedup, y: p.measured.meanPsnr, highlighted: front[i] })),
        {
          title: `${policy}: speedup vs PSNR, ${report.settings.steps} steps, target ${report.settings.targetPsnr} dB (Pareto front in red)`,
          xLabel: 'wall-clock speedup vs uncached',
          yLabel: 'PSNR vs uncached (dB)',
        },
      ),
      plots[policy],
    );
  }
  const files: TuneFiles = {
    ...(report.pick ? { best: join(out, 'best.yaml') } : {}),
    table: join(out, 'results.md'),
    json: join(out, 'results.json'),
    plots,
  };
  writeTextAtomically(files.table, tuneMarkdown(report, count));
  const json = {
    model: report.model,
    settings: report.settings,
    pick: report.pick?.name ?? null,
    cacheDitForm: report.pick ? (cacheDitConfig(report, report.pick) ?? null) : null,
    points: report.points.map((p) => ({ ...p, measured: withoutBatchPareto(p.measured) })),
    heldOut:
      report.heldOut?.map((c) => ({
        name: c.point.name,
        timed: withoutBatchPareto(c.timed),
        heldOut: withoutBatchPareto(c.heldOut),
        meetsTarget: c.meetsTarget,
      })) ?? [],
    bestHeldOut: report.bestHeldOut?.point.name ?? null,
  };
  writeTextAtomically(files.json, `${JSON.stringify(json, (_, v: unknown) => (v === Infinity ? null : v), 2)}\n`);
  if (files.best && report.pick) writeTextAtomically(files.best, bestYaml(report, report.pick, report.heldOut?.[0]));
  return files;
}
