// safetensors files: a strict header parser (every field, offset and size checked before any
// byte of tensor data is touched), memory-mapped loading, sharded diffusers folders, and writing.
import { closeSync, existsSync, fsyncSync, openSync, readdirSync, readFileSync, renameSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

import { typedConfig } from './config.js';
import { native, type DType, type NativeMapping } from './native.js';
import { Tensor, wrap, type Device } from './tensor.js';

/** A file that is not valid safetensors, or a tensor it does not hold. */
export class SafetensorsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SafetensorsError';
  }
}

/** Every dtype the safetensors format defines, with its element size in bytes. */
const FORMAT_DTYPES: Record<string, number> = {
  BOOL: 1,
  U8: 1,
  I8: 1,
  F8_E5M2: 1,
  F8_E4M3: 1,
  I16: 2,
  U16: 2,
  F16: 2,
  BF16: 2,
  I32: 4,
  U32: 4,
  F32: 4,
  I64: 8,
  U64: 8,
  F64: 8,
};
/** Stored in place (viewed in the mapped file without a copy). */
const NATIVE_DTYPES: Record<string, DType> = { F32: 'float32', F16: 'float16', BF16: 'bfloat16', I32: 'int32' };
const TO_FORMAT: Record<DType, string> = { float32: 'F32', float16: 'F16', bfloat16: 'BF16', int32: 'I32' };

// The reference implementation refuses headers over 100 MB; so do we.
const MAX_HEADER_BYTES = 100_000_000;

export interface TensorEntry {
  /** The format's dtype name (F32, BF16, I64, ...). */
  dtype: string;
  shape: number[];
  /** Absolute byte range of the data in the file. */
  begin: number;
  end: number;
}

export interface SafetensorsHeader {
  tensors: Map<string, TensorEntry>;
  metadata: Record<string, string>;
  /** Byte offset where the data section starts (8 + header length). */
  dataStart: number;
}

/**
 * Parses and validates a safetensors header. `readAt(offset, length)` returns file bytes;
 * `fileSize` is the file's length. Throws SafetensorsError naming `source` for any defect.
 */
export function parseHeader(readAt: (offset: number, length: number) => Uint8Array, fileSize: number, source: string): SafetensorsHeader {
  const bad = (why: string): never => {
    throw new SafetensorsError(`${source}: not a valid safetensors file: ${why}`);
  };
  if (fileSize < 8) bad(`it has ${fileSize} bytes, fewer than the 8-byte header length`);
  const lenBytes = readAt(0, 8);
  const headerLen = Number(new DataView(lenBytes.buffer, lenBytes.byteOffset, 8).getBigUint64(0, true));
  if (headerLen > MAX_HEADER_BYTES) bad(`header length ${headerLen} exceeds ${MAX_HEADER_BYTES} bytes`);
  if (8 + headerLen > fileSize) bad(`header length ${headerLen} runs past the end of the ${fileSize}-byte file (truncated?)`);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(readAt(8, headerLen));
  } catch {
    return bad('the header is not UTF-8 text');
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    return bad(`the header is not JSON (${(e as Error).message})`);
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) bad('the header is not a JSON object');
  const dataStart = 8 + headerLen;
  const dataSize = fileSize - dataStart;
  const tensors = new Map<string, TensorEntry>();
  let metadata: Record<string, string> = {};
  for (const [name, raw] of Object.entries(json as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) bad('__metadata__ is not an object');
      for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
        if (typeof v !== 'string') bad(`__metadata__.${k} is not a string`);
      }
      metadata = raw as Record<string, string>;
      continue;
    }
    const where = `tensor '${name}'`;
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) bad(`${where} is not an object`);
    const { dtype, shape, data_offsets: offsets } = raw as Record<string, unknown>;
    if (typeof dtype !== 'string' || !(dtype in FORMAT_DTYPES)) {
      bad(`${where} has unknown dtype ${JSON.stringify(dtype)} (known: ${Object.keys(FORMAT_DTYPES).join(', ')})`);
    }
    if (!Array.isArray(shape) || shape.length > 8 || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      bad(`${where} has an invalid shape ${JSON.stringify(shape)}`);
    }
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0)) {
      bad(`${where} has invalid data_offsets ${JSON.stringify(offsets)}`);
    }
    const [b, e] = offsets as number[];
    if (b > e) bad(`${where} has data_offsets [${b}, ${e}] that run backwards`);
    if (e > dataSize) bad(`${where} ends at data byte ${e} but the file holds only ${dataSize} data bytes (truncated?)`);
    const numel = (shape as number[]).reduce((a, d) => a * d, 1);
    const expected = numel * FORMAT_DTYPES[dtype as string];
    if (!Number.isSafeInteger(expected) || expected !== e - b) {
      bad(`${where} of dtype ${dtype} and shape [${(shape as number[]).join(', ')}] needs ${expected} bytes but data_offsets give ${e - b}`);
    }
    tensors.set(name, { dtype: dtype as string, shape: shape as number[], begin: dataStart + b, end: dataStart + e });
  }
  const ranges = [...tensors.entries()].filter(([, t]) => t.end > t.begin).sort((x, y) => x[1].begin - y[1].begin);
  for (let i = 1; i < ranges.length; ++i) {
    if (ranges[i][1].begin < ranges[i - 1][1].end) bad(`tensors '${ranges[i - 1][0]}' and '${ranges[i][0]}' overlap`);
  }
  return { tensors, metadata, dataStart };
}

export interface LoadOptions {
  /** Where tensors are placed (default 'cpu': views of the mapped file, no copy). */
  device?: Device;
  /** Convert every floating tensor to this dtype on load. */
  dtype?: DType;
}

/**
 * An open safetensors file. Tensors of dtype F32 / F16 / BF16 / I32 on the CPU are read-only
 * views of the mapped file; other integer dtypes and F64 are converted (to int32 / float32).
 */
export class SafetensorsFile implements Disposable {
  readonly path: string;
  readonly header: SafetensorsHeader;
  private mapping: NativeMapping | null;

  constructor(path: string) {
    this.path = path;
    this.mapping = native.mapFile(path);
    const m = this.mapping;
    try {
      this.header = parseHeader((o, l) => m.read(o, l), m.byteLength, path);
    } catch (e) {
      m.close();
      throw e;
    }
  }

  keys(): string[] {
    return [...this.header.tensors.keys()];
  }
  has(name: string): boolean {
    return this.header.tensors.has(name);
  }
  get metadata(): Record<string, string> {
    return this.header.metadata;
  }

  /** Loads one tensor; the caller owns (and disposes) it. */
  get(name: string, opts: LoadOptions = {}): Tensor {
    const entry = this.header.tensors.get(name);
    if (!entry) throw new SafetensorsError(`${this.path}: no tensor named '${name}'${suggest(name, this.keys())}`);
    const m = this.open();
    let t: Tensor;
    const nativeType = NATIVE_DTYPES[entry.dtype];
    if (nativeType) {
      t = wrap(native.fromMapping(m, entry.begin, nativeType, entry.shape));
    } else {
      t = convertEntry(m.read(entry.begin, entry.end - entry.begin), entry, `${this.path}: tensor '${name}'`);
    }
    return place(t, opts);
  }

  close(): void {
    this.mapping?.close();
    this.mapping = null;
  }
  [Symbol.dispose](): void {
    this.close();
  }

  private open(): NativeMapping {
    if (!this.mapping) throw new SafetensorsError(`${this.path}: the file was closed`);
    return this.mapping;
  }
}

function place(t: Tensor, opts: LoadOptions): Tensor {
  let out = t;
  if (opts.dtype && out.dtype !== opts.dtype && out.dtype !== 'int32') {
    const c = out.cast(opts.dtype);
    out.dispose();
    out = c;
  }
  if (opts.device && opts.device !== 'cpu') {
    const d = out.to(opts.device);
    out.dispose();
    out = d;
  }
  return out;
}

function convertEntry(bytes: Buffer, entry: TensorEntry, where: string): Tensor {
  const n = entry.shape.reduce((a, d) => a * d, 1);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (entry.dtype === 'F64') {
    const out = new Float64Array(n);
    for (let i = 0; i < n; ++i) out[i] = view.getFloat64(i * 8, true);
    return wrap(native.fromArray(out, entry.shape, 'float32', 'cpu'));
  }
  if (entry.dtype.startsWith('F8')) {
    throw new SafetensorsError(`${where} has dtype ${entry.dtype}, which @ditcache/cuda-runtime does not support`);
  }
  // Integer and boolean tensors (position ids, masks) become int32, exactly or not at all.
  const out = new Int32Array(n);
  const size = FORMAT_DTYPES[entry.dtype];
  for (let i = 0; i < n; ++i) {
    let v: number | bigint;
    switch (entry.dtype) {
      case 'BOOL':
      case 'U8':
        v = view.getUint8(i);
        break;
      case 'I8':
        v = view.getInt8(i);
        break;
      case 'I16':
        v = view.getInt16(i * size, true);
        break;
      case 'U16':
        v = view.getUint16(i * size, true);
        break;
      case 'U32':
        v = view.getUint32(i * size, true);
        break;
      case 'I64':
        v = view.getBigInt64(i * size, true);
        break;
      case 'U64':
        v = view.getBigUint64(i * size, true);
        break;
      default:
        throw new SafetensorsError(`${where}: unexpected dtype ${entry.dtype}`);
    }
    const num = Number(v);
    if (num > 2147483647 || num < -2147483648) {
      throw new SafetensorsError(`${where} (${entry.dtype}) holds ${v} at element ${i}, outside the int32 range`);
    }
    out[i] = num;
  }
  return wrap(native.fromArray(out, entry.shape, 'int32', 'cpu'));
}

function suggest(name: string, keys: string[]): string {
  const tail = name.split('.').slice(-2).join('.');
  const near = keys.filter((k) => k.endsWith(tail)).slice(0, 3);
  return near.length ? ` (similar: ${near.join(', ')})` : '';
}

/** Opens one safetensors file. */
export function openSafetensors(path: string): SafetensorsFile {
  return new SafetensorsFile(path);
}

/** Loads every tensor of a file into a plain object (convenient for tests and small files). */
export function loadSafetensors(path: string, opts: LoadOptions = {}): Record<string, Tensor> {
  using f = new SafetensorsFile(path);
  const out: Record<string, Tensor> = {};
  for (const k of f.keys()) out[k] = f.get(k, opts);
  return out;
}

/**
 * Writes tensors (and string metadata) as a safetensors file. The file appears atomically: it
 * is written next to `path` and renamed, so a failure never leaves a half-written file there.
 */
export function saveSafetensors(path: string, tensors: Record<string, Tensor>, metadata?: Record<string, string>): void {
  const names = Object.keys(tensors).sort();
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') throw new TypeError(`saveSafetensors: metadata value '${k}' must be a string`);
    }
    header.__metadata__ = metadata;
  }
  const blobs: Buffer[] = [];
  let offset = 0;
  for (const name of names) {
    const t = tensors[name];
    if (!(t instanceof Tensor)) throw new TypeError(`saveSafetensors: '${name}' is not a Tensor`);
    const bytes = t.toBytes();
    header[name] = { dtype: TO_FORMAT[t.dtype], shape: [...t.shape], data_offsets: [offset, offset + bytes.length] };
    blobs.push(bytes);
    offset += bytes.length;
  }
  let json = JSON.stringify(header);
  // Pad the header with spaces so the data section starts 8-byte aligned.
  json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
  const headerBytes = Buffer.from(json, 'utf-8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(headerBytes.length));
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  const fd = openSync(tmp, 'w');
  try {
    for (const b of [len, headerBytes, ...blobs]) {
      let done = 0;
      while (done < b.length) done += writeSync(fd, b, done, b.length - done);
    }
    fsyncSync(fd);
  } catch (e) {
    closeSync(fd);
    unlinkSync(tmp);
    throw e;
  }
  closeSync(fd);
  renameSync(tmp, path);
}

// ---------------------------------------------------------------- model folders

const WEIGHT_NAMES = ['diffusion_pytorch_model.safetensors', 'model.safetensors'];

/**
 * The weights of one diffusers / transformers component folder (`transformer/`, `vae/`, ...):
 * its config.json and its safetensors, single-file or sharded through a `*.safetensors.index.json`.
 */
export class WeightFolder implements Disposable {
  readonly dir: string;
  readonly config: Record<string, unknown>;
  private readonly files = new Map<string, SafetensorsFile>();
  private readonly where = new Map<string, SafetensorsFile>();

  constructor(dir: string) {
    this.dir = dir;
    if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new SafetensorsError(`${dir}: no such model folder`);
    const configPath = join(dir, 'config.json');
    if (!existsSync(configPath)) throw new SafetensorsError(`${dir}: no config.json`);
    try {
      this.config = JSON.parse(readFileSync(configPath, 'utf-8')) as Record<string, unknown>;
    } catch (e) {
      throw new SafetensorsError(`${configPath}: not valid JSON (${(e as Error).message})`);
    }
    try {
      this.open();
    } catch (e) {
      this.close();
      throw e;
    }
  }

  private open(): void {
    const entries = readdirSync(this.dir);
    const index = entries.filter((f) => f.endsWith('.safetensors.index.json'));
    if (index.length > 1) throw new SafetensorsError(`${this.dir}: several shard indexes (${index.join(', ')}); keep one`);
    if (index.length === 1) {
      const indexPath = join(this.dir, index[0]);
      let parsed: { weight_map?: Record<string, unknown> };
      try {
        parsed = JSON.parse(readFileSync(indexPath, 'utf-8')) as typeof parsed;
      } catch (e) {
        throw new SafetensorsError(`${indexPath}: not valid JSON (${(e as Error).message})`);
      }
      const map = parsed.weight_map;
      if (!map || typeof map !== 'object') throw new SafetensorsError(`${indexPath}: no weight_map object`);
      for (const [name, file] of Object.entries(map)) {
        if (typeof file !== 'string' || file.includes('/') || file.includes('\\')) {
          throw new SafetensorsError(`${indexPath}: weight_map['${name}'] is not a file name in the folder`);
        }
        const f = this.file(file, indexPath);
        if (!f.has(name)) throw new SafetensorsError(`${indexPath}: maps '${name}' to ${file}, which does not hold it`);
        this.where.set(name, f);
      }
      return;
    }
    const named = WEIGHT_NAMES.filter((n) => entries.includes(n));
    const all = entries.filter((f) => f.endsWith('.safetensors'));
    const chosen = named[0] ?? (all.length === 1 ? all[0] : undefined);
    if (!chosen) {
      throw new SafetensorsError(
        all.length ? `${this.dir}: several .safetensors files (${all.join(', ')}) and no *.safetensors.index.json` : `${this.dir}: no .safetensors weights`,
      );
    }
    const f = this.file(chosen, this.dir);
    for (const k of f.keys()) this.where.set(k, f);
  }

  private file(name: string, referrer: string): SafetensorsFile {
    let f = this.files.get(name);
    if (!f) {
      const p = join(this.dir, name);
      if (!existsSync(p)) throw new SafetensorsError(`${referrer}: shard ${name} is missing`);
      f = new SafetensorsFile(p);
      this.files.set(name, f);
    }
    return f;
  }

  /**
   * config.json checked against a model class: `_class_name` must be one of `classNames`, and
   * every key of `defaults` takes the file's value (when present) after a type check, else the
   * default. Keys the defaults do not know are listed in `ignoredKeys` (diffusers ignores them too).
   */
  typedConfig<T extends Record<string, unknown>>(classNames: readonly string[], defaults: T): T & { ignoredKeys: string[] } {
    return typedConfig(this.config, join(this.dir, 'config.json'), classNames, defaults);
  }

  keys(): string[] {
    return [...this.where.keys()];
  }
  has(name: string): boolean {
    return this.where.has(name);
  }
  /** Shape and format dtype of a weight without loading it. */
  entry(name: string): TensorEntry | undefined {
    return this.where.get(name)?.header.tensors.get(name);
  }
  /** Loads one weight; the caller owns (and disposes) it. */
  get(name: string, opts: LoadOptions = {}): Tensor {
    const f = this.where.get(name);
    if (!f) throw new SafetensorsError(`${this.dir}: no weight named '${name}'${suggest(name, this.keys())}`);
    return f.get(name, opts);
  }

  close(): void {
    for (const f of this.files.values()) f.close();
    this.files.clear();
  }
  [Symbol.dispose](): void {
    this.close();
  }
}
