// OnnxModel across a worker boundary: OIP tensors travel as TypedArrays, not as JSON number arrays.
// Structured clone copies a plain array of 256 numbers element by element (~15 µs, and the copy
// arrives in a form that is slow to read); a Float32Array is one memcpy, or a transfer.
import { Buffer } from 'node:buffer';
import { ARRAY_OF, INT_RANGE, ORT_TYPE, type OipDatatype } from './datatypes.js';
import { copyNumbers, oipData, type OipTensor } from './tensor.js';

/**
 * Datatypes whose flat JSON data the main side converts before sending: each has a TypedArray the
 * model takes as it is, and a check that is the worker's own (numbers; integers in range). The
 * others (BOOL, FP16, 64-bit integers, BYTES) cross as they are and are checked in the worker.
 */
const PACKED: ReadonlyMap<string, { readonly bytes: number; readonly range?: readonly [number, number] }> = new Map([
  ['FP32', { bytes: 4 }],
  ['FP64', { bytes: 8 }],
  ['INT8', { bytes: 1, range: INT_RANGE.INT8 }],
  ['INT16', { bytes: 2, range: INT_RANGE.INT16 }],
  ['INT32', { bytes: 4, range: INT_RANGE.INT32 }],
  ['UINT8', { bytes: 1, range: INT_RANGE.UINT8 }],
  ['UINT16', { bytes: 2, range: INT_RANGE.UINT16 }],
  ['UINT32', { bytes: 4, range: INT_RANGE.UINT32 }],
]);

/**
 * The method of OnnxModel a pool worker calls instead of `predictBatch`: the same outputs, with
 * `data` left as TypedArrays for the trip back (see `unpackResponse`).
 */
export const WIRE_BATCH: unique symbol = Symbol('rxserve.onnx.wireBatch');

type View = ArrayLike<number> & { [i: number]: number };
type ViewCtor = new (buffer: ArrayBuffer, byteOffset: number, length: number) => View;

/** An OIP body, when every input is flat numeric data of a packed datatype: its tensors. */
function packable(body: unknown): readonly OipTensor[] | undefined {
  if (body === null || typeof body !== 'object' || Object.getPrototypeOf(body) !== Object.prototype) return undefined;
  const inputs = (body as { inputs?: unknown }).inputs;
  if (!Array.isArray(inputs) || inputs.length === 0) return undefined;
  for (const tensor of inputs as unknown[]) {
    if (tensor === null || typeof tensor !== 'object') return undefined;
    const { datatype, data } = tensor as Partial<OipTensor>;
    if (typeof datatype !== 'string' || !PACKED.has(datatype) || !Array.isArray(data)) return undefined;
  }
  return inputs as OipTensor[];
}

/**
 * The bodies of a batch that have one layout (the same input names and datatypes, nothing but
 * `{ inputs: [{ name, shape, datatype, data }] }`), in one piece: structured clone then copies a
 * handful of objects per batch instead of five per body. It travels as the last element of the
 * batch's input list, and each of those bodies as its row number.
 */
export interface PackedTable {
  readonly rxserveOnnxTable: 1;
  /** Each input's name and datatype, in order: `[name, datatype, name, datatype, ...]`. */
  readonly layout: readonly string[];
  /** Per body, per input: byte offset of its data in `buffer`, value count, rank, dimensions. */
  readonly dims: Int32Array;
  readonly buffer: ArrayBuffer;
}

/**
 * A packed body can be a row of the table: nothing but names, shapes (int32), datatypes and
 * data, with the names and datatypes of `layout` (`[name, datatype, ...]`) when one is given.
 * Allocates nothing: it runs once per call on the main thread.
 */
function isRow(body: object, inputs: readonly OipTensor[], layout: readonly string[] | undefined): boolean {
  for (const key in body) if (key !== 'inputs') return false;
  if (layout !== undefined && layout.length !== 2 * inputs.length) return false;
  for (let k = 0; k < inputs.length; k++) {
    const t = inputs[k];
    if (Object.getPrototypeOf(t) !== Object.prototype || typeof t.name !== 'string' || !Array.isArray(t.shape)) return false;
    if (layout !== undefined && (layout[2 * k] !== t.name || layout[2 * k + 1] !== t.datatype)) return false;
    let keys = 0;
    for (const key in t) {
      if (key !== 'name' && key !== 'shape' && key !== 'datatype' && key !== 'data') return false;
      keys++;
    }
    if (keys !== 4) return false;
    for (const d of t.shape as unknown[]) if (!(Number.isInteger(d) && (d as number) >= 0 && (d as number) <= 0x7fffffff)) return false;
  }
  return true;
}

/**
 * A batch's buffer, its bytes not zeroed first: every byte a view covers is written right after,
 * and `packBatch` zeroes the others (alignment gaps, what a refused body left), so no old memory
 * crosses. Zero-filling 8 KB a batch of 32 rows of 256 FP32 was ~0.3 µs a request of the main
 * thread (issue 26 goal 3). A dedicated buffer (never Buffer's pool), so it can be transferred.
 */
function uninitialized(bytes: number): ArrayBuffer {
  const memory = Buffer.allocUnsafeSlow(bytes);
  return memory.byteOffset === 0 && memory.buffer.byteLength === bytes ? memory.buffer : new ArrayBuffer(bytes);
}

const zero = (buffer: ArrayBuffer, from: number, to: number): void => void new Uint8Array(buffer, from, to - from).fill(0);

/**
 * `copyNumbers` for a datatype without a range (FP32, FP64): a number is all it checks. A loop of
 * its own, which V8 inlines into `packBatch`: packing 32 rows of 256 FP32 took 1.57× the time of a
 * bare checking copy loop through `copyNumbers` (not inlined: it also serves the worker's checks),
 * 1.04× through this (CPU profile of a microbenchmark; issue 26 goal 3).
 */
function copyFloats(out: View, data: readonly unknown[], at: number): number {
  for (let k = 0; k < data.length; k++) {
    const v = data[k];
    if (typeof v !== 'number') return k;
    out[at + k] = v;
  }
  return -1;
}

/** `offset` rounded up to a multiple of `size`. */
const aligned = (offset: number, size: number): number => Math.ceil(offset / size) * size;

/**
 * Main side, before a batch of OnnxModel calls goes to a worker: each body whose inputs are all
 * flat number arrays of FP32, FP64 or a 8–32-bit integer datatype, with values the model would
 * accept, gets `data` that are TypedArrays of the datatype — in one buffer for the whole batch,
 * which is transferred. The model takes such data as they are (docs/design.md §13), so outputs
 * and errors are those of the JSON body. Bodies of the batch's common layout become rows of
 * `table` (their element is the row number; their data are written into the buffer through one
 * view per datatype, no view per body); other packed bodies are new body objects; any other
 * body is `undefined` at its index: it crosses as it is (and is checked, and fails if it must, in
 * the worker). The caller's bodies are not touched.
 */
// eslint-disable-next-line @typescript-eslint/no-redundant-type-constituents -- `| undefined` says what an element means (send that body as it is), as WireCodec.pack does
export function packBatch(bodies: readonly unknown[]): { bodies: (unknown | undefined)[]; transfer: ArrayBuffer[]; table?: PackedTable } {
  const n = bodies.length;
  // Each body's tensors, sized once (it stays here); its elements, a packed list (by push): the
  // caller may put it in the batch's wire list, which crosses densely only when packed (see encodeBatch).
  const tensors: (readonly OipTensor[] | undefined)[] = new Array<readonly OipTensor[] | undefined>(n);
  const packed: unknown[] = [];
  // Each datatype's data start at a multiple of its element size (what a TypedArray view needs),
  // so the rows of one datatype lie end to end and OnnxModel takes them as one view.
  let bytes = 0;
  /** Int32s of the table's `dims` if every packed body is a row (an upper bound otherwise). */
  let dimsLength = 0;
  for (let i = 0; i < n; i++) {
    const inputs = packable(bodies[i]);
    tensors[i] = inputs;
    packed.push(undefined);
    if (inputs === undefined) continue;
    for (let k = 0; k < inputs.length; k++) {
      const t = inputs[k];
      const size = PACKED.get(t.datatype)!.bytes;
      bytes = aligned(bytes, size) + (t.data as unknown[]).length * size;
      dimsLength += 3 + (Array.isArray(t.shape) ? t.shape.length : 0);
    }
  }
  if (bytes === 0) return { bodies: packed, transfer: [] };
  const buffer = uninitialized(bytes);
  // One view of the whole buffer per datatype, through which the rows' data are written: the
  // last one made is kept at hand (a batch is almost always of one datatype), others in a Map.
  let lastType: string | undefined;
  let lastView: View | undefined;
  let views: Map<string, View> | undefined;
  let layout: string[] | undefined;
  // Written in place (no list of numbers grown by push, then copied into an Int32Array).
  const dims = new Int32Array(dimsLength);
  let p = 0;
  /** The current body's data offsets, per input. */
  const offsets: number[] = [];
  let rows = 0;
  let offset = 0;
  for (let i = 0; i < n; i++) {
    const inputs = tensors[i];
    if (inputs === undefined) continue;
    const start = offset;
    let refused = false;
    offsets.length = 0;
    for (let k = 0; k < inputs.length && !refused; k++) {
      const t = inputs[k];
      const data = t.data as unknown[];
      const { bytes: size, range } = PACKED.get(t.datatype)!;
      const at = aligned(offset, size);
      if (at > offset) zero(buffer, offset, at);
      offset = at;
      let view: View;
      if (t.datatype === lastType) view = lastView!;
      else {
        views ??= new Map();
        let made = views.get(t.datatype);
        if (made === undefined) {
          made = new (ARRAY_OF[t.datatype] as unknown as ViewCtor)(buffer, 0, Math.floor(bytes / size));
          views.set(t.datatype, made);
        }
        lastType = t.datatype;
        view = lastView = made;
      }
      // A value the model refuses: the body goes as it is, so the worker reports it.
      refused = (range === undefined ? copyFloats(view, data, offset / size) : copyNumbers(view, data, range, offset / size)) >= 0;
      offsets.push(offset);
      offset += data.length * size;
    }
    if (refused) {
      offset = start;
      continue;
    }
    const body = bodies[i] as object;
    if (isRow(body, inputs, layout)) {
      if (layout === undefined) {
        layout = [];
        for (const t of inputs) layout.push(t.name, t.datatype);
      }
      for (let k = 0; k < inputs.length; k++) {
        const shape = inputs[k].shape;
        dims[p++] = offsets[k];
        dims[p++] = (inputs[k].data as unknown[]).length;
        dims[p++] = shape.length;
        for (let d = 0; d < shape.length; d++) dims[p++] = shape[d];
      }
      packed[i] = rows++;
    } else {
      packed[i] = {
        ...body,
        inputs: inputs.map((t, k) => ({
          ...t,
          data: new (ARRAY_OF[t.datatype] as unknown as ViewCtor)(buffer, offsets[k], (t.data as unknown[]).length),
        })),
      };
    }
  }
  // What refused bodies left at the end is not sent as it was (see uninitialized).
  if (offset < bytes) zero(buffer, offset, bytes);
  const table: PackedTable | undefined =
    rows > 0 ? { rxserveOnnxTable: 1, layout: layout!, dims: p === dimsLength ? dims : dims.slice(0, p), buffer } : undefined;
  return { bodies: packed, transfer: [buffer], ...(table ? { table } : {}) };
}

/**
 * Worker side: a batch's input list as bodies again — the table (its last element, if any) read
 * back into `{ inputs: [{ name, shape, datatype, data }] }` bodies in place of their row numbers.
 */
export function unpackInputs(list: readonly unknown[]): readonly unknown[] {
  const table = list.at(-1) as PackedTable | undefined;
  if (table === null || typeof table !== 'object' || table.rxserveOnnxTable !== 1) return list;
  const { layout, dims, buffer } = table;
  const bodies: { inputs: OipTensor[] }[] = [];
  let p = 0;
  while (p < dims.length) {
    const inputs: OipTensor[] = new Array<OipTensor>(layout.length / 2);
    for (let k = 0; k < inputs.length; k++) {
      const byteOffset = dims[p++];
      const length = dims[p++];
      const rank = dims[p++];
      const shape: number[] = new Array<number>(rank);
      for (let d = 0; d < rank; d++) shape[d] = dims[p++];
      const datatype = layout[2 * k + 1] as OipDatatype;
      inputs[k] = {
        name: layout[2 * k],
        shape,
        datatype,
        data: new (ARRAY_OF[datatype] as unknown as ViewCtor)(buffer, byteOffset, length),
      };
    }
    bodies.push({ inputs });
  }
  const out: unknown[] = new Array(list.length - 1);
  for (let i = 0; i < out.length; i++) out[i] = typeof list[i] === 'number' ? bodies[list[i] as number] : list[i];
  return out;
}

/**
 * Worker side, the fast way in: a batch's input list that is nothing but the rows of its table,
 * in order, for a model of one input whose first dimension is free, as one merged input — one view
 * over the rows (they lie end to end in the buffer) and each call's row count — when every row
 * passes the checks `checkRequest` makes (name and datatype from the layout; rank, dimensions
 * and value count from the table). Anything else (another list, a row that fails, rows not end to
 * end, a table of the wrong form) is `undefined`: the bodies are then rebuilt (`unpackInputs`) and
 * checked one by one, which gives a failing row its own error.
 */
export function tableInput(
  list: readonly unknown[],
  expected: readonly { readonly name: string; readonly datatype: OipDatatype; readonly shape: readonly number[] }[],
):
  | { input: { name: string; datatype: OipDatatype; dims: number[]; data: ArrayLike<unknown> & { length: number } }; rows: number[] }
  | undefined {
  const n = list.length - 1;
  const table = list[n] as PackedTable | undefined;
  if (n < 1 || expected.length !== 1 || table === null || typeof table !== 'object' || table.rxserveOnnxTable !== 1) return undefined;
  const { layout, dims, buffer } = table;
  const want = expected[0];
  const ctor = ARRAY_OF[want.datatype] as unknown as ViewCtor | undefined;
  const size = PACKED.get(want.datatype)?.bytes;
  if (
    ctor === undefined ||
    size === undefined ||
    !Array.isArray(layout) ||
    layout.length !== 2 ||
    layout[0] !== want.name ||
    layout[1] !== want.datatype ||
    !(dims instanceof Int32Array) ||
    !(buffer instanceof ArrayBuffer)
  ) {
    return undefined;
  }
  const rank = want.shape.length;
  const rows: number[] = [];
  let start = 0;
  let end = 0;
  let p = 0;
  for (let i = 0; i < n; i++) {
    // Row i of the table, whose fields are: byte offset, value count, rank, dimensions.
    if (list[i] !== i || p + 3 + rank > dims.length || dims[p + 2] !== rank) return undefined;
    const byteOffset = dims[p];
    const length = dims[p + 1];
    let count = 1;
    for (let d = 0; d < rank; d++) {
      const v = dims[p + 3 + d];
      // The model's dimension (or any, for -1), and after the first the same as the first row's.
      if (v < 0 || (want.shape[d] !== -1 && want.shape[d] !== v) || (d > 0 && i > 0 && v !== dims[3 + d])) return undefined;
      count *= v;
    }
    if (count !== length) return undefined;
    if (i === 0) start = end = byteOffset;
    if (byteOffset !== end) return undefined;
    end += length * size;
    rows.push(dims[p + 3]);
    p += 3 + rank;
  }
  if (p !== dims.length || end > buffer.byteLength || start % size !== 0) return undefined;
  const total = rows.reduce((a, r) => a + r, 0);
  const tail: number[] = [];
  for (let d = 1; d < rank; d++) tail.push(dims[3 + d]);
  const data = new ctor(buffer, start, (end - start) / size);
  return { input: { name: want.name, datatype: want.datatype, dims: [total, ...tail], data }, rows };
}

/**
 * The outputs of one merged `session.run` in a batch's wire form: sent once, as the value of the
 * batch's first call that ran in it; each later call of that run answers with its row count
 * alone (a number), and the main side reads every call's rows out of these outputs in order
 * (`unpackBatch`). No view, array or response per call is made in the worker or cloned.
 */
export interface WireHead {
  readonly rxserveOnnxHead: 1;
  readonly model_name: string;
  /** The first call's rows. */
  readonly rows: number;
  /** Rows of the whole run (every output's first dimension). */
  readonly total: number;
  /** Per output: name, datatype, the dimensions after the first, and the run's whole data. */
  readonly outputs: readonly {
    readonly name: string;
    readonly datatype: OipDatatype;
    readonly tail: readonly number[];
    readonly data: unknown;
  }[];
}

/** One call's value in the wire form: a head, a row count of the head's run, or a whole response. */
export type WireValue = WireHead | number;

const isHead = (value: unknown): value is WireHead =>
  value !== null && typeof value === 'object' && (value as { rxserveOnnxHead?: unknown }).rxserveOnnxHead === 1;

/** What is wrong with a head from a worker, or undefined: it is read without trust (see unpackBatch). */
function headProblem(head: WireHead): string | undefined {
  const { rows, total, outputs } = head;
  if (!isCount(total) || !isCount(rows) || rows > total) return `rows ${safe(rows)} of ${safe(total)}`;
  if (typeof head.model_name !== 'string' || !Array.isArray(outputs)) return 'no model name or output list';
  for (const o of outputs as unknown[]) {
    const { name, datatype, tail, data } = (o ?? {}) as Partial<WireHead['outputs'][number]>;
    if (typeof name !== 'string' || typeof datatype !== 'string' || !(datatype in ORT_TYPE))
      return `an output ${safe(name)} of datatype ${safe(datatype)}`;
    if (!Array.isArray(tail) || !tail.every(isCount)) return `output '${name}' has dimensions ${safe(tail)}`;
    const length = (data as { length?: unknown } | null | undefined)?.length;
    if (
      !(ArrayBuffer.isView(data) || Array.isArray(data)) ||
      typeof length !== 'number' ||
      length !== total * tail.reduce((a, d) => a * d, 1)
    ) {
      return `output '${name}' has ${safe(length)} values for ${total} rows of [${tail.join(', ')}]`;
    }
  }
  return undefined;
}

const isCount = (n: unknown): n is number => Number.isInteger(n) && (n as number) >= 0;
const safe = (v: unknown): string => {
  try {
    return JSON.stringify(v) ?? String(v);
  } catch {
    return String(v);
  }
};

/**
 * Call rows `from`..`from + rows` of a head's run as the response of the contract (plain data).
 * Its lists are made at their size (no output list grown by push, no spread of the shape): this
 * runs once per call on the main thread.
 */
function responseOf(head: WireHead, from: number, rows: number): { model_name: string; outputs: OipTensor[] } {
  const list = head.outputs;
  const outputs: OipTensor[] = list.length === 1 ? [tensorOf(list[0], from, rows)] : list.map((o) => tensorOf(o, from, rows));
  return { model_name: head.model_name, outputs };
}

function tensorOf(o: WireHead['outputs'][number], from: number, rows: number): OipTensor {
  const { tail } = o;
  let perRow = 1;
  for (let d = 0; d < tail.length; d++) perRow *= tail[d];
  return {
    name: o.name,
    shape: shapeOf(rows, tail),
    datatype: o.datatype,
    data: oipData(o.datatype, o.data as ArrayLike<unknown>, from * perRow, (from + rows) * perRow),
  };
}

/** `[rows, ...tail]`, as an array literal for the usual ranks. */
function shapeOf(rows: number, tail: readonly number[]): number[] {
  switch (tail.length) {
    case 0:
      return [rows];
    case 1:
      return [rows, tail[0]];
    case 2:
      return [rows, tail[0], tail[1]];
    default:
      return [rows, ...tail];
  }
}

/**
 * Main side, after a worker answered a batch: each call's value made the response of the
 * contract, in place — a `WireHead` and the row counts after it (`WireValue`) read out of the
 * head's outputs in order, output `data` that came back as TypedArrays (a call run alone) made
 * plain flat JSON arrays. `undefined` elements (calls that failed) are skipped. What a worker
 * sent that does not fit (a count without a head before it, more rows than the run had, a head
 * of the wrong form) fails that call with a TypeError saying so; the others are answered.
 */
export function unpackBatch(values: unknown[]): void {
  let head: WireHead | undefined;
  let next = 0;
  for (let i = 0; i < values.length; i++) {
    const value = values[i];
    if (isHead(value)) {
      const problem = headProblem(value);
      if (problem !== undefined) {
        head = undefined;
        values[i] = new TypeError(`an OnnxModel batch answered a malformed head: ${problem}`);
        continue;
      }
      head = value;
      values[i] = responseOf(value, 0, value.rows);
      next = value.rows;
    } else if (typeof value === 'number') {
      if (head === undefined || !isCount(value) || next + value > head.total) {
        values[i] =
          head === undefined
            ? new TypeError('an OnnxModel batch answered rows before the outputs of their run')
            : new TypeError(`an OnnxModel batch answered ${value} rows where its run had ${head.total - next} left`);
        continue;
      }
      values[i] = responseOf(head, next, value);
      next += value;
    } else if (value !== undefined) {
      values[i] = unpackResponse(value);
    }
  }
}

const plainData = (datatype: OipDatatype, data: unknown): unknown =>
  ArrayBuffer.isView(data) ? oipData(datatype, data as unknown as ArrayLike<unknown>) : data;

/** `unpackBatch` of one response: TypedArray output data become plain arrays. */
export function unpackResponse(value: unknown): unknown {
  const outputs = (value as { outputs?: unknown } | null | undefined)?.outputs;
  if (!Array.isArray(outputs)) return value;
  for (const output of outputs as { datatype: OipDatatype; data: unknown }[]) {
    if (output !== null && typeof output === 'object') output.data = plainData(output.datatype, output.data);
  }
  return value;
}

/**
 * Worker side, after OnnxModel's wire method answered a batch: the buffers its outputs' data
 * cover whole (onnxruntime's outputs), pushed to `transfer`, so the answer moves them instead of
 * copying them. A buffer the data cover only in part may hold something else, and is copied.
 */
export function outputTransfer(values: readonly unknown[], transfer: ArrayBuffer[]): void {
  const add = (data: unknown): void => {
    if (!ArrayBuffer.isView(data) || !(data.buffer instanceof ArrayBuffer)) return;
    if (data.byteOffset === 0 && data.byteLength === data.buffer.byteLength && !transfer.includes(data.buffer)) transfer.push(data.buffer);
  };
  for (const value of values) {
    if (typeof value === 'number' || value === null || typeof value !== 'object') continue;
    const outputs = (value as { outputs?: unknown }).outputs;
    if (Array.isArray(outputs)) for (const output of outputs as ({ data?: unknown } | null)[]) add(output?.data);
  }
}
