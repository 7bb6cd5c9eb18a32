// What `npm run gpucheck` runs (through gpucheck.sh), in plain JavaScript so that nothing has to
// be compiled on the GPU machine:
//   1. every CUDA kernel against the CPU kernels on the same inputs: the runtime's self-check
//      with cuBLAS, again in a child process with the built-in CUDA GEMM kernels
//      (DITCACHE_CUDA_GEMM is read once per process), and test/cuda.test.ts when vitest is
//      installed;
//   2. a FLUX.1-dev-width transformer forward (24 heads x 128, joint_attention_dim 4096, pooled
//      768, guidance embeds; 1 double- and 2 single-stream blocks; 1024 image + 256 text tokens)
//      in bfloat16, ours against diffusers + PyTorch on the same GPU, weights and inputs, when a
//      Python with CUDA torch and diffusers is found (skipped with the reason otherwise).
// Exits non-zero when a check fails or there is no CUDA device.
//
// Settings (environment):
//   DITCACHE_REFERENCE_PYTHON  the Python for the PyTorch side (default: python3 on the PATH)
//   DITCACHE_GPUCHECK_DEVICE   where the forward runs (default cuda:0; 'cpu' tries the script out
//                              on a machine without a GPU, with the kernel checks on the CPU only)
//   DITCACHE_GPUCHECK_DTYPE    bfloat16 (default), float16 or float32
//   DITCACHE_GPUCHECK_REPS     timed calls per side (default 10, after 3 untimed ones)
//   DITCACHE_GPUCHECK_SMALL=1  2 heads, 64 image + 32 text tokens instead of FLUX.1's width
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const packageDir = join(here, '..');
const root = join(packageDir, '..', '..');
const rt = await import('../dist/src/index.js');
const { buildSummary, selfCheck } = await import('../dist/src/selfcheck.js');

const device = process.env.DITCACHE_GPUCHECK_DEVICE ?? 'cuda:0';
const dtype = process.env.DITCACHE_GPUCHECK_DTYPE ?? 'bfloat16';
const reps = Number(process.env.DITCACHE_GPUCHECK_REPS ?? 10);
const warmup = 3;
const small = process.env.DITCACHE_GPUCHECK_SMALL === '1';
if (!['bfloat16', 'float16', 'float32'].includes(dtype)) fail(`DITCACHE_GPUCHECK_DTYPE must be bfloat16, float16 or float32, got '${dtype}'`);
if (!Number.isInteger(reps) || reps < 1) fail(`DITCACHE_GPUCHECK_REPS must be a positive integer, got '${process.env.DITCACHE_GPUCHECK_REPS}'`);

function fail(message) {
  console.error(`gpucheck: ${message}`);
  process.exit(2);
}

// ---------------------------------------------------------------- 1. kernels against the CPU

function kernelChecks() {
  const report = rt.devices();
  console.log(`\n## Kernels against the CPU: GEMM on CUDA through ${report.cuda.gemm ?? 'no CUDA'}\n`);
  const results = selfCheck();
  console.log('| check | max error | tolerance | |');
  console.log('|---|---|---|---|');
  for (const r of results) console.log(`| ${r.name} | ${r.error.toExponential(2)} | ${r.tolerance.toExponential(0)} | ${r.ok ? 'ok' : 'FAILED'} |`);
  const failed = results.filter((r) => !r.ok);
  if (failed.length) console.log(`\n${failed.length} check(s) FAILED: ${failed.map((r) => r.name).join(', ')}`);
  return failed.length;
}

async function main() {
  const report = rt.devices();
  const addon = rt.nativeAddon();
  console.log('# ditcache GPU check\n');
  console.log(
    `- CUDA: ${report.cuda.available ? report.cuda.devices.map((d) => `${d.device} ${d.name} (sm ${d.computeCapability}, ${(d.totalMemory / 2 ** 30).toFixed(0)} GiB)`).join(', ') : `not available: ${report.cuda.reason}`}`,
  );
  if (report.cuda.available)
    console.log(
      `- driver ${report.cuda.driverVersion}, runtime ${report.cuda.runtimeVersion}; GEMM: ${report.cuda.gemm}; TF32 ${report.cuda.tf32 ? 'allowed' : 'off'}`,
    );
  console.log(`- CPU: ${report.cpu.name}, ${report.cpu.threads} threads, ${report.cpu.isa} kernels`);
  console.log(`- addon: ${addon.path} (${addon.source}); ${buildSummary()}; Node ${process.version}`);
  if (device !== 'cpu' && !report.cuda.available) {
    console.error(`\ngpucheck: no CUDA device to check (${report.cuda.reason})`);
    return 1;
  }

  let failures = kernelChecks();
  if (report.cuda.available && !report.cuda.gemm.startsWith('built-in')) {
    const child = spawnSync(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), '--kernels-only'], {
      stdio: 'inherit',
      env: { ...process.env, DITCACHE_CUDA_GEMM: 'builtin' },
    });
    if (child.status !== 0) failures += 1;
  }
  failures += cudaTests(report);
  try {
    await fluxForward();
  } catch (e) {
    console.log(`FLUX forward FAILED: ${e.stack ?? e}`);
    failures += 1;
  }
  console.log(failures ? `\ngpucheck: FAILED (${failures} failing part(s) above)` : '\ngpucheck: every check passed');
  return failures ? 1 : 0;
}

/** test/cuda.test.ts (more shapes and ops than the self-check), where vitest is installed. */
function cudaTests(report) {
  const vitest = join(root, 'node_modules', 'vitest', 'vitest.mjs');
  console.log('\n## test/cuda.test.ts\n');
  if (!report.cuda.available) {
    console.log('skipped: no CUDA device');
    return 0;
  }
  if (!existsSync(vitest)) {
    console.log(`skipped: vitest is not installed here (${vitest}); carry node_modules to run it`);
    return 0;
  }
  const run = spawnSync(process.execPath, [vitest, 'run', 'test/cuda.test.ts'], { cwd: packageDir, stdio: 'inherit' });
  return run.status === 0 ? 0 : 1;
}

// ---------------------------------------------------------------- 2. a FLUX.1-width forward

/** FLUX.1-dev's transformer config with 1 double- and 2 single-stream blocks. */
const FLUX_CONFIG = {
  _class_name: 'FluxTransformer2DModel',
  patch_size: 1,
  in_channels: 64,
  num_layers: 1,
  num_single_layers: 2,
  attention_head_dim: 128,
  num_attention_heads: small ? 2 : 24,
  joint_attention_dim: 4096,
  pooled_projection_dim: 768,
  guidance_embeds: true,
  axes_dims_rope: [16, 56, 56],
};
const IMAGE_SIDE = small ? 8 : 32; // packed latents: IMAGE_SIDE^2 image tokens (a 512 x 512 image at full size)
const TEXT_TOKENS = small ? 32 : 256;

async function fluxForward() {
  console.log(`\n## FLUX.1-width forward in ${dtype} on ${device}\n`);
  let flux, diffusion;
  try {
    flux = await import('@ditcache/adapter-flux');
    diffusion = await import('@ditcache/diffusion');
  } catch (e) {
    console.log(`skipped: cannot load @ditcache/adapter-flux (${e.message.split('\n')[0]}); it needs the built workspace with its node_modules`);
    return;
  }
  const dir = join(root, '.cache', 'gpucheck', small ? 'flux-width-small' : 'flux-width');
  makeWeights(dir, flux, diffusion);
  const inputsPath = join(dir, 'inputs.safetensors');
  rt.tidy(() =>
    rt.saveSafetensors(inputsPath, {
      hidden_states: diffusion.randnTensor([1, IMAGE_SIDE * IMAGE_SIDE, FLUX_CONFIG.in_channels], 1),
      encoder_hidden_states: diffusion.randnTensor([1, TEXT_TOKENS, FLUX_CONFIG.joint_attention_dim], 2),
      pooled_projections: diffusion.randnTensor([1, FLUX_CONFIG.pooled_projection_dim], 3),
      timestep: rt.tensor([0.7]),
      guidance: rt.tensor([3.5]),
      img_ids: flux.latentImageIds(IMAGE_SIDE, IMAGE_SIDE),
      txt_ids: rt.zeros([TEXT_TOKENS, 3]),
    }),
  );

  const model = flux.FluxTransformer.load(dir, { dtype, device });
  const inputs = rt.loadSafetensors(inputsPath);
  const on = {};
  for (const [name, t] of Object.entries(inputs)) on[name] = t.to(device).keep();
  const args = {
    hiddenStates: on.hidden_states,
    encoderHiddenStates: on.encoder_hidden_states,
    pooledProjections: on.pooled_projections,
    timestep: on.timestep,
    guidance: on.guidance,
    imgIds: on.img_ids,
    txtIds: on.txt_ids,
  };
  const flops = model.flopsPerCall({ batch: 1, imageTokens: IMAGE_SIDE * IMAGE_SIDE, textTokens: TEXT_TOKENS }).total;
  // One element read back after each call: the GPU has finished the forward when it arrives.
  const call = () => rt.tidy(() => model.forward(args).narrow(1, 0, 1).narrow(2, 0, 1).item());
  const ours = rt.tidy(() => model.forward(args).to('cpu').cast('float32').keep());
  for (let i = 0; i < warmup; ++i) call();
  const oursSeconds = [];
  for (let i = 0; i < reps; ++i) {
    const t0 = performance.now();
    call();
    oursSeconds.push((performance.now() - t0) / 1000);
  }
  model.dispose();
  for (const t of [...Object.values(on), ...Object.values(inputs)]) t.dispose();

  const reference = torchSide(dir, inputsPath);
  const rows = [['ours (ditcache)', oursSeconds]];
  if (reference) rows.push([`PyTorch ${reference.torch} + diffusers ${reference.diffusers}`, reference.seconds]);
  const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
  console.log(
    `${FLUX_CONFIG.num_attention_heads} heads x 128, 1 double + 2 single blocks, ${IMAGE_SIDE * IMAGE_SIDE} image + ${TEXT_TOKENS} text tokens; median and min of ${reps} calls after ${warmup} untimed\n`,
  );
  console.log('| | median ms | min ms | TFLOP/s (products) |');
  console.log('|---|---|---|---|');
  for (const [name, s] of rows)
    console.log(`| ${name} | ${(median(s) * 1e3).toFixed(2)} | ${(Math.min(...s) * 1e3).toFixed(2)} | ${(flops / median(s) / 1e12).toPrecision(3)} |`);
  if (reference) {
    console.log(`\nours / PyTorch (medians): ${(median(oursSeconds) / median(reference.seconds)).toFixed(2)}x`);
    const theirs = rt.loadSafetensors(join(dir, 'torch-sample.safetensors')).sample;
    console.log(`relative L2 difference of the outputs (same weights and inputs, both ${dtype}): ${rt.relativeL2(ours, theirs).toExponential(2)}`);
    theirs.dispose();
  }
  ours.dispose();
}

/**
 * Random weights for FLUX_CONFIG in `dir`, made once, stored in bfloat16 like the FLUX.1-dev
 * checkpoint. Names and shapes come from our loader (it is run once on a folder without weights
 * while WeightReader.tensor records what it asks for); values are uniform in +-1/sqrt(fan in),
 * torch's nn.Linear default, and norm scales are 1.
 */
function makeWeights(dir, flux, diffusion) {
  if (existsSync(join(dir, '.complete'))) return;
  console.log(`making random weights in ${dir} (once)...`);
  const partial = `${dir}.partial`;
  rmSync(partial, { recursive: true, force: true });
  mkdirSync(partial, { recursive: true });
  writeFileSync(join(partial, 'config.json'), JSON.stringify(FLUX_CONFIG, null, 2));
  const weightsPath = join(partial, 'diffusion_pytorch_model.safetensors');
  rt.saveSafetensors(weightsPath, {});
  const shapes = new Map();
  const proto = diffusion.WeightReader.prototype;
  const original = Object.getOwnPropertyDescriptor(proto, 'tensor');
  proto.tensor = function (name, shape) {
    if (!shape) throw new Error(`gpucheck: the FLUX loader reads '${this.prefix}${name}' without its shape`);
    shapes.set(this.prefix + name, [...shape]);
    return this.store.adopt(rt.zeros(shape.map(() => 1)).expand(shape)); // the right shape, no memory
  };
  try {
    flux.FluxTransformer.load(partial).dispose();
  } finally {
    Object.defineProperty(proto, 'tensor', original);
  }
  let state = 1;
  const uniform = () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return (state / 2 ** 32) * 2 - 1;
  };
  const tensors = {};
  for (const [name, shape] of shapes) {
    const size = shape.reduce((a, b) => a * b, 1);
    const values = new Float32Array(size);
    if (shape.length === 1 && /norm[^.]*\.weight$/.test(name)) values.fill(1);
    else {
      const weight = shape.length === 1 ? shapes.get(name.replace(/bias$/, 'weight')) : shape;
      const fanIn = weight && weight.length > 1 ? weight.slice(1).reduce((a, b) => a * b, 1) : shape[0];
      const bound = 1 / Math.sqrt(fanIn);
      for (let i = 0; i < size; ++i) values[i] = uniform() * bound;
    }
    tensors[name] = rt.tidy(() => rt.tensor(values, shape).cast('bfloat16').keep());
  }
  rt.saveSafetensors(weightsPath, tensors);
  for (const t of Object.values(tensors)) t.dispose();
  rmSync(dir, { recursive: true, force: true });
  renameSync(partial, dir);
  writeFileSync(join(dir, '.complete'), '');
}

/** diffusers + PyTorch on the same folder and inputs, or null (after saying why). */
function torchSide(dir, inputsPath) {
  const python = process.env.DITCACHE_REFERENCE_PYTHON || 'python3';
  const probe = spawnSync(python, ['-c', 'import torch, diffusers, safetensors; print(torch.cuda.is_available())'], { encoding: 'utf-8' });
  if (probe.status !== 0) {
    const why = probe.error ? probe.error.message : (probe.stderr || '').trim().split('\n').pop();
    console.log(`PyTorch side skipped: ${python} cannot import torch, diffusers and safetensors (${why}); set DITCACHE_REFERENCE_PYTHON to a Python that can`);
    return null;
  }
  if (device !== 'cpu' && probe.stdout.trim() !== 'True') {
    console.log(`PyTorch side skipped: ${python} has torch without CUDA (torch.cuda.is_available() is False)`);
    return null;
  }
  const run = spawnSync(
    python,
    [join(here, 'gpucheck_torch.py'), dir, inputsPath, dtype, device, String(reps), String(warmup), join(dir, 'torch-sample.safetensors')],
    { encoding: 'utf-8', stdio: ['ignore', 'pipe', 'inherit'] },
  );
  if (run.status !== 0) {
    console.log(`PyTorch side failed (exit ${run.status}); see its messages above`);
    return null;
  }
  return JSON.parse(run.stdout.trim().split('\n').pop());
}

if (process.argv.includes('--kernels-only')) {
  process.exitCode = kernelChecks() ? 1 : 0;
} else {
  process.exitCode = await main();
}
