import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import * as rt from '../src/index.js';
import { rngFor } from './helpers.js';

const rng = rngFor('safetensors');
const dir = mkdtempSync(join(tmpdir(), 'ditcache-st-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Builds a safetensors file by hand from a header object and a data section. */
function rawFile(header: unknown, data: Uint8Array): Buffer {
  const json = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([len, json, data]);
}

describe('safetensors', () => {
  it('round-trips float32 / float16 / bfloat16 / int32 tensors and metadata', () => {
    const path = join(dir, 'round.safetensors');
    rt.tidy(() => {
      const a = rt.tensor(rng.nd([3, 4]).f32(), [3, 4]);
      const h = rt.tensor([1, -2, 0.5], [3], { dtype: 'float16' });
      const b = rt.tensor([3.5, 1e-3], [2, 1], { dtype: 'bfloat16' });
      const i = rt.tensor(new Int32Array([5, -6, 7]));
      rt.saveSafetensors(path, { a, h, b, i, strided: a.transpose(0, 1) }, { format: 'pt' });
      using f = rt.openSafetensors(path);
      expect(f.keys().sort()).toEqual(['a', 'b', 'h', 'i', 'strided']);
      expect(f.metadata).toEqual({ format: 'pt' });
      expect(f.header.dataStart % 8).toBe(0);
      const a2 = f.get('a');
      expect(a2.readOnly).toBe(true);
      expect(a2.toFloat32Array()).toEqual(a.toFloat32Array());
      expect(f.get('h').dtype).toBe('float16');
      expect(f.get('h').toFloat32Array()).toEqual(new Float32Array([1, -2, 0.5]));
      expect(f.get('b').toBytes()).toEqual(b.toBytes());
      expect(f.get('i').toInt32Array()).toEqual(new Int32Array([5, -6, 7]));
      expect(f.get('strided').toFloat32Array()).toEqual(a.transpose(0, 1).contiguous().toFloat32Array());
      // Converting on load, and computing directly on the mapped (read-only) view.
      expect(f.get('h', { dtype: 'float32' }).dtype).toBe('float32');
      expect(rt.add(a2, 1).toFloat32Array()).toEqual(rt.add(a, 1).toFloat32Array());
      expect(() => f.get('missing')).toThrow(/no tensor named 'missing'/);
    });
  });

  it('converts other integer dtypes and F64 on load', () => {
    const data = Buffer.alloc(8 * 3 + 8 * 2 + 1 * 2);
    data.writeBigInt64LE(-3n, 0);
    data.writeBigInt64LE(77n, 8);
    data.writeBigInt64LE(2n ** 40n, 16);
    data.writeDoubleLE(0.1, 24);
    data.writeDoubleLE(-2.5, 32);
    data.writeUInt8(1, 40);
    data.writeUInt8(0, 41);
    const path = join(dir, 'ints.safetensors');
    writeFileSync(
      path,
      rawFile(
        {
          ids: { dtype: 'I64', shape: [2], data_offsets: [0, 16] },
          big: { dtype: 'I64', shape: [1], data_offsets: [16, 24] },
          f64: { dtype: 'F64', shape: [2], data_offsets: [24, 40] },
          mask: { dtype: 'BOOL', shape: [2], data_offsets: [40, 42] },
        },
        data,
      ),
    );
    rt.tidy(() => {
      using f = rt.openSafetensors(path);
      expect(f.get('ids').toInt32Array()).toEqual(new Int32Array([-3, 77]));
      expect(f.get('f64').toFloat32Array()).toEqual(new Float32Array([0.1, -2.5]));
      expect(f.get('mask').toInt32Array()).toEqual(new Int32Array([1, 0]));
      expect(() => f.get('big')).toThrow(/holds 1099511627776 at element 0, outside the int32 range/);
    });
  });

  describe('rejects malformed files with an error naming the defect', () => {
    const cases: [string, () => Buffer, RegExp][] = [
      ['empty file', () => Buffer.alloc(0), /fewer than the 8-byte header length/],
      [
        'header longer than the file',
        () => {
          const b = rawFile({}, new Uint8Array());
          b.writeBigUInt64LE(1000n);
          return b;
        },
        /runs past the end/,
      ],
      [
        'absurd header length',
        () => {
          const b = Buffer.alloc(16);
          b.writeBigUInt64LE(2n ** 62n);
          return b;
        },
        /exceeds 100000000 bytes/,
      ],
      [
        'bad JSON',
        () => {
          const j = Buffer.from('{"a": ');
          const l = Buffer.alloc(8);
          l.writeBigUInt64LE(BigInt(j.length));
          return Buffer.concat([l, j]);
        },
        /not JSON/,
      ],
      ['not an object', () => rawFile([1, 2], new Uint8Array()), /not a JSON object/],
      ['unknown dtype', () => rawFile({ x: { dtype: 'F128', shape: [1], data_offsets: [0, 16] } }, new Uint8Array(16)), /unknown dtype "F128"/],
      ['negative shape', () => rawFile({ x: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, new Uint8Array(4)), /invalid shape/],
      [
        'offsets past the data',
        () => rawFile({ x: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } }, new Uint8Array(8)),
        /only 8 data bytes \(truncated\?\)/,
      ],
      ['size mismatch', () => rawFile({ x: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, new Uint8Array(8)), /needs 12 bytes but data_offsets give 8/],
      ['backwards offsets', () => rawFile({ x: { dtype: 'F32', shape: [0], data_offsets: [8, 0] } }, new Uint8Array(8)), /run backwards/],
      [
        'overlap',
        () => rawFile({ x: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, y: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } }, new Uint8Array(12)),
        /overlap/,
      ],
      ['bad metadata', () => rawFile({ __metadata__: { a: 1 } }, new Uint8Array()), /__metadata__.a is not a string/],
      [
        'huge shape',
        () => rawFile({ x: { dtype: 'F32', shape: [2 ** 30, 2 ** 30, 2 ** 30], data_offsets: [0, 4] } }, new Uint8Array(4)),
        /needs .* bytes but data_offsets give 4/,
      ],
    ];
    for (const [name, make, message] of cases) {
      it(name, () => {
        const path = join(dir, `bad-${name.replace(/\W+/g, '-')}.safetensors`);
        writeFileSync(path, make());
        expect(() => rt.openSafetensors(path)).toThrow(message);
        expect(() => rt.openSafetensors(path)).toThrow(rt.SafetensorsError);
      });
    }
    it('a missing file', () => {
      expect(() => rt.openSafetensors(join(dir, 'nope.safetensors'))).toThrow(/cannot open .*nope.safetensors/);
    });
  });

  it('survives fuzzing: random bytes, truncations and mutations never crash or misread', () => {
    const good = join(dir, 'fuzz-base.safetensors');
    rt.tidy(() => rt.saveSafetensors(good, { w: rt.tensor(rng.nd([16, 8]).f32(), [16, 8]), b: rt.tensor(rng.nd([8]).f32(), [8], { dtype: 'bfloat16' }) }));
    const base = readFileSync(good);
    const path = join(dir, 'fuzz.safetensors');
    let rejected = 0,
      accepted = 0;
    for (let trial = 0; trial < 600; ++trial) {
      let bytes: Buffer;
      const kind = trial % 3;
      if (kind === 0) {
        bytes = Buffer.from(Array.from({ length: rng.int(0, 200) }, () => rng.int(0, 256)));
        if (bytes.length >= 8 && trial % 2) bytes.writeBigUInt64LE(BigInt(rng.int(0, bytes.length)), 0);
      } else if (kind === 1) {
        bytes = base.subarray(0, rng.int(0, base.length));
      } else {
        bytes = Buffer.from(base);
        for (let m = 0; m < 3; ++m) bytes[rng.int(0, Math.min(bytes.length, 200))] = rng.int(0, 256);
      }
      writeFileSync(path, bytes);
      try {
        using f = rt.openSafetensors(path);
        // Whatever parses must load every tensor within the file's bounds.
        for (const k of f.keys()) rt.tidy(() => f.get(k).toFloat32Array());
        accepted++;
      } catch (e) {
        expect(e).toBeInstanceOf(rt.SafetensorsError);
        rejected++;
      }
    }
    expect(rejected).toBeGreaterThan(300);
    expect(accepted).toBeGreaterThan(0);
    expect(rt.memoryStats().mappedBytes).toBe(0);
  });

  it('opens diffusers folders: single file or sharded with an index', () => {
    const single = join(dir, 'single');
    const sharded = join(dir, 'sharded');
    mkdirSync(single);
    mkdirSync(sharded);
    rt.tidy(() => {
      const w1 = rt.tensor(rng.nd([4, 3]).f32(), [4, 3]);
      const w2 = rt.tensor(rng.nd([5]).f32(), [5]);
      writeFileSync(join(single, 'config.json'), JSON.stringify({ _class_name: 'Toy', hidden: 3 }));
      rt.saveSafetensors(join(single, 'diffusion_pytorch_model.safetensors'), { 'a.weight': w1, 'b.bias': w2 });
      writeFileSync(join(sharded, 'config.json'), JSON.stringify({ _class_name: 'Toy' }));
      rt.saveSafetensors(join(sharded, 'model-00001-of-00002.safetensors'), { 'a.weight': w1 });
      rt.saveSafetensors(join(sharded, 'model-00002-of-00002.safetensors'), { 'b.bias': w2 });
      writeFileSync(
        join(sharded, 'model.safetensors.index.json'),
        JSON.stringify({
          metadata: { total_size: 68 },
          weight_map: { 'a.weight': 'model-00001-of-00002.safetensors', 'b.bias': 'model-00002-of-00002.safetensors' },
        }),
      );
      for (const d of [single, sharded]) {
        using folder = new rt.WeightFolder(d);
        expect(folder.config._class_name).toBe('Toy');
        expect(folder.keys().sort()).toEqual(['a.weight', 'b.bias']);
        expect(folder.entry('a.weight')).toMatchObject({ dtype: 'F32', shape: [4, 3] });
        expect(folder.get('a.weight').toFloat32Array()).toEqual(w1.toFloat32Array());
        expect(folder.get('b.bias').toFloat32Array()).toEqual(w2.toFloat32Array());
        expect(() => folder.get('a.bias')).toThrow(/no weight named 'a.bias'/);
      }
    });
    // A shard the index names but the folder lacks, and an index that maps a missing tensor.
    writeFileSync(join(sharded, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { 'a.weight': 'gone.safetensors' } }));
    expect(() => new rt.WeightFolder(sharded)).toThrow(/shard gone.safetensors is missing/);
    writeFileSync(join(sharded, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { 'c.weight': 'model-00001-of-00002.safetensors' } }));
    expect(() => new rt.WeightFolder(sharded)).toThrow(/maps 'c.weight' to model-00001-of-00002.safetensors, which does not hold it/);
    expect(() => new rt.WeightFolder(join(dir, 'nowhere'))).toThrow(/no such model folder/);
    expect(rt.memoryStats().mappedBytes).toBe(0);
  });

  it('writes atomically and never leaves a partial file behind', () => {
    const path = join(dir, 'atomic.safetensors');
    writeFileSync(path, 'previous contents');
    const bad = { ok: rt.zeros([2]), notATensor: 3 as unknown as rt.Tensor };
    expect(() => rt.saveSafetensors(path, bad)).toThrow(/'notATensor' is not a Tensor/);
    expect(readFileSync(path, 'utf-8')).toBe('previous contents');
    bad.ok.dispose();
  });
});

describe('typed model configs', () => {
  it('checks the class, types and defaults of config.json', () => {
    const d = join(dir, 'typed');
    mkdirSync(d);
    rt.tidy(() => rt.saveSafetensors(join(d, 'model.safetensors'), { w: rt.zeros([1]) }));
    writeFileSync(join(d, 'config.json'), JSON.stringify({ _class_name: 'ToyModel', _diffusers_version: '0.40', layers: 3, size: null, novel: 1 }));
    using folder = new rt.WeightFolder(d);
    const cfg = folder.typedConfig(['ToyModel'], { layers: 2, eps: 1e-6, size: [4, 4] as number[] | null });
    expect(cfg).toEqual({ layers: 3, eps: 1e-6, size: null, ignoredKeys: ['novel'] });
    expect(() => folder.typedConfig(['OtherModel'], {})).toThrow(/describes a ToyModel, not a OtherModel/);
    expect(() => folder.typedConfig(['ToyModel'], { layers: 'x' })).toThrow(/'layers' should be a string, got 3/);
  });
});
