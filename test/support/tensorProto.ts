// A small reader of ONNX TensorProto files (the backend test data's input_N.pb / output_N.pb), as
// OIP tensors with flat JSON data. Only the fields those files use.
import { readFileSync } from 'node:fs';
import type { OipDatatype, OipTensor } from '../../src/index.js';

const DATATYPES: Record<number, OipDatatype> = {
  1: 'FP32',
  2: 'UINT8',
  3: 'INT8',
  4: 'UINT16',
  5: 'INT16',
  6: 'INT32',
  7: 'INT64',
  8: 'BYTES',
  9: 'BOOL',
  10: 'FP16',
  11: 'FP64',
  12: 'UINT32',
  13: 'UINT64',
};

class Reader {
  pos = 0;
  constructor(
    readonly buf: Buffer,
    readonly end = buf.length,
  ) {}
  varint(): bigint {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      const b = this.buf[this.pos++];
      result |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return result;
      shift += 7n;
    }
  }
  bytes(): Buffer {
    const len = Number(this.varint());
    const out = this.buf.subarray(this.pos, this.pos + len);
    this.pos += len;
    return out;
  }
}

const signed64 = (v: bigint): number => Number(BigInt.asIntN(64, v));

export function readTensorProto(path: string): OipTensor {
  const r = new Reader(readFileSync(path));
  const dims: number[] = [];
  let type = 0;
  let name = '';
  let raw: Buffer | undefined;
  const values: (number | string)[] = [];
  const packedVarints = (wire: number, push: (v: bigint) => void) => {
    if (wire === 2) {
      const sub = r.bytes();
      const inner = new Reader(sub);
      while (inner.pos < sub.length) push(inner.varint());
    } else push(r.varint());
  };
  while (r.pos < r.end) {
    const key = Number(r.varint());
    const field = key >> 3;
    const wire = key & 7;
    if (field === 1) packedVarints(wire, (v) => dims.push(signed64(v)));
    else if (field === 2) type = Number(r.varint());
    else if (field === 4) {
      const b = r.bytes();
      for (let i = 0; i < b.length; i += 4) values.push(b.readFloatLE(i));
    } else if (field === 5 || field === 7) packedVarints(wire, (v) => values.push(signed64(v)));
    else if (field === 11) packedVarints(wire, (v) => values.push(Number(v)));
    else if (field === 6) values.push(r.bytes().toString('utf8'));
    else if (field === 8) name = r.bytes().toString('utf8');
    else if (field === 9) raw = r.bytes();
    else if (field === 10) {
      const b = r.bytes();
      for (let i = 0; i < b.length; i += 8) values.push(b.readDoubleLE(i));
    } else if (wire === 0) r.varint();
    else if (wire === 2) r.bytes();
    else if (wire === 5) r.pos += 4;
    else if (wire === 1) r.pos += 8;
    else throw new Error(`${path}: unsupported wire type ${wire}`);
  }
  const datatype = DATATYPES[type];
  if (datatype === undefined) throw new Error(`${path}: TensorProto data_type ${type} is not read here`);
  let data: unknown[] = values;
  if (raw !== undefined) data = fromRaw(raw, datatype);
  else if (datatype === 'BOOL') data = values.map((v) => v !== 0);
  else if (datatype === 'FP16') data = values.map((v) => halfToNumber(v as number));
  return { name, shape: dims, datatype, data };
}

function fromRaw(raw: Buffer, datatype: OipDatatype): unknown[] {
  const b = Buffer.from(raw); // aligned copy
  const view = (ctor: {
    new (buffer: ArrayBuffer, offset: number, length: number): ArrayLike<number | bigint>;
    BYTES_PER_ELEMENT: number;
  }) => Array.from(new ctor(b.buffer, b.byteOffset, b.length / ctor.BYTES_PER_ELEMENT), (v) => (typeof v === 'bigint' ? Number(v) : v));
  switch (datatype) {
    case 'FP32':
      return view(Float32Array);
    case 'FP64':
      return view(Float64Array);
    case 'INT8':
      return view(Int8Array);
    case 'UINT8':
      return view(Uint8Array);
    case 'INT16':
      return view(Int16Array);
    case 'UINT16':
      return view(Uint16Array);
    case 'INT32':
      return view(Int32Array);
    case 'UINT32':
      return view(Uint32Array);
    case 'INT64':
      return view(BigInt64Array);
    case 'UINT64':
      return view(BigUint64Array);
    case 'BOOL':
      return view(Uint8Array).map((v) => v !== 0);
    case 'FP16':
      return view(Uint16Array).map((v) => halfToNumber(v as number));
    default:
      throw new Error(`raw ${datatype} data is not read here`);
  }
}

function halfToNumber(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exp = (bits >>> 10) & 0x1f;
  const mant = bits & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}
