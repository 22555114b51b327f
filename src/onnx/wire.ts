// OnnxModel across a worker boundary: OIP tensors travel as TypedArrays, not as JSON number arrays.
// Structured clone copies a plain array of 256 numbers element by element (~15 µs, and the copy
// arrives in a form that is slow to read); a Float32Array is one memcpy, or a transfer.
import { ARRAY_OF, INT_RANGE, type OipDatatype } from './datatypes.js';
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

/** A packed body can be a row of the table: nothing but names, shapes (int32), datatypes and data. */
function tableLayout(body: object, inputs: readonly OipTensor[]): string[] | undefined {
  for (const key in body) if (key !== 'inputs') return undefined;
  const layout: string[] = [];
  for (const t of inputs) {
    if (Object.getPrototypeOf(t) !== Object.prototype || typeof t.name !== 'string' || !Array.isArray(t.shape)) return undefined;
    let keys = 0;
    for (const key in t) {
      if (key !== 'name' && key !== 'shape' && key !== 'datatype' && key !== 'data') return undefined;
      keys++;
    }
    if (keys !== 4) return undefined;
    for (const d of t.shape as unknown[]) if (!(Number.isInteger(d) && (d as number) >= 0 && (d as number) <= 0x7fffffff)) return undefined;
    layout.push(t.name, t.datatype);
  }
  return layout;
}

const sameLayout = (a: readonly string[], b: readonly string[]): boolean => a.length === b.length && a.every((v, i) => v === b[i]);

/**
 * Main side, before a batch of OnnxModel calls goes to a worker: each body whose inputs are all
 * flat number arrays of FP32, FP64 or a 8–32-bit integer datatype, with values the model would
 * accept, gets `data` that are TypedArrays of the datatype — views of one buffer for the whole
 * batch, which is transferred. The model takes such data as they are (docs/design.md §13), so outputs
 * and errors are those of the JSON body. Bodies of the batch's common layout become rows of
 * `table` (their element is the row number); other packed bodies are new body objects; any
 * other body is `undefined` at its index: it crosses as it is (and is checked, and fails if it
 * must, in the worker). The caller's bodies are not touched.
 */
/** `offset` rounded up to a multiple of `size`. */
const aligned = (offset: number, size: number): number => Math.ceil(offset / size) * size;

// eslint-disable-next-line @typescript-eslint/no-redundant-type-constituents -- `| undefined` says what an element means (send that body as it is), as WireCodec.pack does
export function packBatch(bodies: readonly unknown[]): { bodies: (unknown | undefined)[]; transfer: ArrayBuffer[]; table?: PackedTable } {
  const tensors = bodies.map(packable);
  // Each view starts at a multiple of its own element size (what a TypedArray view needs), so the
  // rows of one datatype lie end to end and OnnxModel concatenates them without a copy.
  let bytes = 0;
  for (const inputs of tensors) {
    if (inputs === undefined) continue;
    for (const t of inputs)
      bytes = aligned(bytes, PACKED.get(t.datatype)!.bytes) + (t.data as unknown[]).length * PACKED.get(t.datatype)!.bytes;
  }
  // Packed (by push): these elements go into the batch's wire list (see encodeBatch).
  const packed: unknown[] = [];
  for (let i = 0; i < bodies.length; i++) packed.push(undefined);
  if (bytes === 0) return { bodies: packed, transfer: [] };
  const buffer = new ArrayBuffer(bytes);
  let layout: string[] | undefined;
  const dims: number[] = [];
  let rows = 0;
  let offset = 0;
  tensors.forEach((inputs, i) => {
    if (inputs === undefined) return;
    const start = offset;
    const views: View[] = new Array<View>(inputs.length);
    for (let k = 0; k < inputs.length; k++) {
      const t = inputs[k];
      const data = t.data as unknown[];
      const { bytes: size, range } = PACKED.get(t.datatype)!;
      offset = aligned(offset, size);
      const view = new (ARRAY_OF[t.datatype] as unknown as ViewCtor)(buffer, offset, data.length);
      offset += data.length * size;
      if (copyNumbers(view, data, range) >= 0) {
        // A value the model refuses: the body goes as it is, so the worker reports it.
        offset = start;
        return;
      }
      views[k] = view;
    }
    const own = tableLayout(bodies[i] as object, inputs);
    layout ??= own;
    if (own !== undefined && sameLayout(own, layout!)) {
      inputs.forEach((t, k) => dims.push((views[k] as unknown as Uint8Array).byteOffset, views[k].length, t.shape.length, ...t.shape));
      packed[i] = rows++;
    } else packed[i] = { ...(bodies[i] as object), inputs: inputs.map((t, k) => ({ ...t, data: views[k] })) };
  });
  const table: PackedTable | undefined =
    rows > 0 ? { rxserveOnnxTable: 1, layout: layout!, dims: Int32Array.from(dims), buffer } : undefined;
  return { bodies: packed, transfer: [buffer], ...(table ? { table } : {}) };
}

/**
 * Worker side: a batch's input list as bodies again — the table (its last element, if any) read
 * back into `{ inputs: [{ name, shape, datatype, data }] }` bodies in place of their row numbers.
 */
export function unpackInputs(list: unknown[]): unknown[] {
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
 * One call's outputs in a batch's wire form after its first call: its rows, then each output's
 * data; names, datatypes and the other dimensions are those of the batch's first response.
 */
export type WireRows = [rows: number, ...data: unknown[]];

/**
 * Main side, after a worker answered a batch: output `data` that came back as TypedArrays (the
 * worker sends OnnxModel's outputs unconverted) become the plain flat JSON arrays of the
 * contract, and `[rows, ...data]` elements (`WireRows`) whole responses again, named after the
 * batch's first response. In place; `undefined` elements (calls that failed) are skipped.
 */
export function unpackBatch(values: unknown[]): void {
  let first: { model_name: string; outputs: OipTensor[] } | undefined;
  for (let i = 0; i < values.length; i++) {
    const value = values[i];
    if (Array.isArray(value)) {
      if (first === undefined) {
        values[i] = new TypeError('an OnnxModel batch answered rows before a whole response');
        continue;
      }
      const rows = value[0] as number;
      values[i] = {
        model_name: first.model_name,
        outputs: first.outputs.map((o, k) => ({
          name: o.name,
          shape: [rows, ...o.shape.slice(1)],
          datatype: o.datatype,
          data: plainData(o.datatype, value[k + 1]),
        })),
      };
    } else if (value !== undefined) {
      values[i] = unpackResponse(value);
      // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-assertion -- tsc needs it (`value` is `{}` here to tsc)
      const outputs = (value as { outputs?: unknown } | null)?.outputs;
      if (Array.isArray(outputs)) first = value as { model_name: string; outputs: OipTensor[] };
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
 * Worker side, after OnnxModel's wire method answered a batch: the buffers its outputs' views
 * cover whole (onnxruntime's output of the batch, split into one view per call), pushed to
 * `transfer`, so the answer moves them instead of copying them. A buffer the views cover only in
 * part may hold something else, and is copied as before.
 */
export function outputTransfer(values: readonly unknown[], transfer: ArrayBuffer[]): void {
  let covered: Map<ArrayBuffer, number> | undefined;
  const add = (data: unknown): void => {
    if (!ArrayBuffer.isView(data) || !(data.buffer instanceof ArrayBuffer)) return;
    covered ??= new Map();
    covered.set(data.buffer, (covered.get(data.buffer) ?? 0) + data.byteLength);
  };
  for (const value of values) {
    if (Array.isArray(value)) {
      for (let k = 1; k < value.length; k++) add(value[k]);
      continue;
    }
    const outputs = (value as { outputs?: unknown } | null | undefined)?.outputs;
    if (Array.isArray(outputs)) for (const output of outputs as ({ data?: unknown } | null)[]) add(output?.data);
  }
  if (covered) for (const [buffer, bytes] of covered) if (bytes === buffer.byteLength && !transfer.includes(buffer)) transfer.push(buffer);
}
