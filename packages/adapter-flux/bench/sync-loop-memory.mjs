// Memory of a long-running app that calls pipe.generate() in a plain synchronous loop, as the
// README shows: the process's RSS after every few generations on the reference model, so a leak
// (anything the runtime frees only when the event loop turns) shows as a rising curve.
//
//   npm run bench:memory -w @ditcache/adapter-flux [-- --generations 200 --steps 28 --every 10 --json]
//
// Plain JavaScript on the built package, so that the test suite can run it in a fresh process.
import { parseArgs } from 'node:util';

import { memoryStats } from '@ditcache/cuda-runtime';

import { FluxPipeline } from '@ditcache/adapter-flux';

const REFERENCE_MODEL = new URL('../../../models/flux-shapes', import.meta.url).pathname;
const PROMPTS = ['a red circle at the top left', 'a blue square in the center', 'a green triangle at the bottom right', 'a purple circle at the top right'];

const { values } = parseArgs({
  options: {
    model: { type: 'string', default: REFERENCE_MODEL },
    generations: { type: 'string', default: '200' },
    steps: { type: 'string', default: '28' },
    every: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '5' },
    json: { type: 'boolean', default: false },
  },
});
const count = (flag) => {
  const n = Number(values[flag]);
  if (!Number.isInteger(n) || n < 0) throw new Error(`--${flag} must be a non-negative integer, not ${values[flag]}`);
  return n;
};
const [generations, steps, every, warmup] = [count('generations'), count('steps'), Math.max(1, count('every')), count('warmup')];

const mb = (bytes) => bytes / (1 << 20);
const pipe = FluxPipeline.fromPretrained(values.model);
// 32x32, 16 tokens: the reference model's size (its README).
const generate = (i) => {
  const { latents, image } = pipe.generate({
    prompt: PROMPTS[i % PROMPTS.length],
    height: 32,
    width: 32,
    maxSequenceLength: 16,
    numInferenceSteps: steps,
    seed: i,
  });
  latents.dispose();
  image?.dispose();
};

// The first generations size the JS heap and fill the runtime's block cache; the curve starts after them.
for (let i = 0; i < warmup; ++i) generate(i);
const point = (i) => ({
  generations: i,
  rssMb: mb(process.memoryUsage().rss),
  heapMb: mb(process.memoryUsage().heapTotal),
  liveTensors: memoryStats().liveTensors,
});
const curve = [point(0)];
const t0 = performance.now();
for (let i = 1; i <= generations; ++i) {
  generate(warmup + i);
  if (i % every === 0 || i === generations) curve.push(point(i));
}
const seconds = (performance.now() - t0) / 1000;
pipe[Symbol.dispose]();
const growthMb = curve[curve.length - 1].rssMb - curve[0].rssMb;

if (values.json) {
  console.log(JSON.stringify({ generations, steps, warmup, seconds, growthMb, curve }));
} else {
  console.log(`${generations} synchronous generations (${steps} steps, 32x32, text prompts) after ${warmup} warm-up ones, ${seconds.toFixed(1)} s`);
  console.log('\n| generations | RSS (MB) | of it, JS heap (MB) | live tensors |\n|---:|---:|---:|---:|');
  for (const p of curve) console.log(`| ${p.generations} | ${p.rssMb.toFixed(1)} | ${p.heapMb.toFixed(1)} | ${p.liveTensors} |`);
  console.log(`\nRSS growth over the loop: ${growthMb.toFixed(1)} MB`);
}
