/**
 * Writes small ONNX models by hand (protobuf wire format, field numbers from onnx.proto), so
 * the tests can build tiny networks with known weights and run them through the same runtime
 * path as the real LPIPS, InceptionV3 and CLIP exports, without Python or downloads.
 */

class ProtoWriter {
  private readonly parts: number[] = [];

  private varint(value: bigint | number): void {
    let v = BigInt.asUintN(64, BigInt(value));
    while (v >= 0x80n) {
      this.parts.push(Number(v & 0x7fn) | 0x80);
      v >>= 7n;
    }
    this.parts.push(Number(v));
  }

  private key(field: number, wireType: number): void {
    this.varint((field << 3) | wireType);
  }

  int(field: number, value: number | bigint): this {
    this.key(field, 0);
    this.varint(value);
    return this;
  }

  float(field: number, value: number): this {
    this.key(field, 5);
    const bytes = new Uint8Array(4);
    new DataView(bytes.buffer).setFloat32(0, value, true);
    this.parts.push(...bytes);
    return this;
  }

  bytes(field: number, value: Uint8Array): this {
    this.key(field, 2);
    this.varint(value.length);
    for (const b of value) this.parts.push(b);
    return this;
  }

  string(field: number, value: string): this {
    return this.bytes(field, new TextEncoder().encode(value));
  }

  message(field: number, build: (writer: ProtoWriter) => void): this {
    const inner = new ProtoWriter();
    build(inner);
    return this.bytes(field, inner.finish());
  }

  finish(): Uint8Array {
    return Uint8Array.from(this.parts);
  }
}

const FLOAT = 1;
const INT64 = 7;

export type AttributeValue = number | number[] | { ints: number[] } | { float: number };

export interface NodeSpec {
  op: string;
  inputs: string[];
  outputs: string[];
  attributes?: Record<string, AttributeValue>;
}

export interface TensorSpec {
  name: string;
  dims: number[];
  /** float32 values, or int64 values given as numbers. */
  values: ArrayLike<number>;
  type?: 'float32' | 'int64';
}

export interface ValueSpec {
  name: string;
  /** A number is a fixed size, a string a symbolic (dynamic) one. */
  dims: (number | string)[];
  type?: 'float32' | 'int64';
}

export interface GraphSpec {
  inputs: ValueSpec[];
  outputs: ValueSpec[];
  initializers: TensorSpec[];
  nodes: NodeSpec[];
  opset?: number;
}

function writeTensor(w: ProtoWriter, tensor: TensorSpec): void {
  for (const d of tensor.dims) w.int(1, d);
  const int64 = tensor.type === 'int64';
  w.int(2, int64 ? INT64 : FLOAT);
  w.string(8, tensor.name);
  const raw = int64
    ? new Uint8Array(BigInt64Array.from(Array.from(tensor.values, (v) => BigInt(v))).buffer)
    : new Uint8Array(Float32Array.from(tensor.values).buffer);
  w.bytes(9, raw);
}

function writeValueInfo(w: ProtoWriter, value: ValueSpec): void {
  w.string(1, value.name);
  w.message(2, (type) =>
    type.message(1, (tensor) => {
      tensor.int(1, value.type === 'int64' ? INT64 : FLOAT);
      tensor.message(2, (shape) => {
        for (const d of value.dims) {
          shape.message(1, (dim) => (typeof d === 'number' ? dim.int(1, d) : dim.string(2, d)));
        }
      });
    }),
  );
}

function writeAttribute(w: ProtoWriter, name: string, value: AttributeValue): void {
  w.string(1, name);
  if (typeof value === 'number') {
    w.int(3, value).int(20, 2); // INT
  } else if (Array.isArray(value)) {
    for (const v of value) w.int(8, v);
    w.int(20, 7); // INTS
  } else if ('ints' in value) {
    for (const v of value.ints) w.int(8, v);
    w.int(20, 7);
  } else {
    w.float(2, value.float).int(20, 1); // FLOAT
  }
}

export function buildOnnxModel(graph: GraphSpec): Uint8Array {
  const model = new ProtoWriter();
  model.int(1, 8); // ir_version
  model.string(2, 'ditcache-metrics-tests');
  model.message(7, (g) => {
    graph.nodes.forEach((node, index) => {
      g.message(1, (n) => {
        for (const input of node.inputs) n.string(1, input);
        for (const output of node.outputs) n.string(2, output);
        n.string(3, `${node.op}_${index}`);
        n.string(4, node.op);
        for (const [name, value] of Object.entries(node.attributes ?? {})) n.message(5, (a) => writeAttribute(a, name, value));
      });
    });
    g.string(2, 'tiny');
    for (const tensor of graph.initializers) g.message(5, (t) => writeTensor(t, tensor));
    for (const input of graph.inputs) g.message(11, (v) => writeValueInfo(v, input));
    for (const output of graph.outputs) g.message(12, (v) => writeValueInfo(v, output));
  });
  model.message(8, (o) => o.string(1, '').int(2, graph.opset ?? 13));
  return model.finish();
}
