// OIP tensors in and out: checking a request's inputs against the model, and flat outputs back.
import { ARRAY_OF, INT_RANGE, OIP_DATATYPE, fromHalf, toHalf, type OipDatatype } from './datatypes.js';

/** One tensor of an Open Inference Protocol request or response. */
export interface OipTensor {
  readonly name: string;
  readonly shape: readonly number[];
  readonly datatype: OipDatatype;
  /** Flat or nested (row-major); a TypedArray of the datatype's kind is taken as it is. */
  readonly data: unknown;
}

/** What the model expects of one input (from the session's metadata). */
export interface ExpectedInput {
  readonly name: string;
  readonly datatype: OipDatatype;
  /** `-1` for symbolic or unknown dimensions. */
  readonly shape: readonly number[];
}

/** An input checked and converted: the datatype's typed array (or strings) and its dims. */
export interface CheckedInput {
  readonly name: string;
  readonly datatype: OipDatatype;
  readonly dims: number[];
  readonly data: ArrayLike<unknown> & { readonly length: number };
}

export function describeInputs(inputs: readonly ExpectedInput[]): string {
  return inputs.map((i) => `'${i.name}' (${i.datatype} [${i.shape.join(', ')}])`).join(', ');
}

/**
 * Checks an OIP request body against the model's inputs and converts each tensor. A problem is a
 * `TypeError` naming the input as given and listing what the model expects.
 */
export function checkRequest(model: string, body: unknown, expected: readonly ExpectedInput[]): CheckedInput[] {
  // Plain loops, no Map, no callbacks: this runs once per call in the worker (~0.7 µs a call
  // with them for one input, issue 26 goal 3); the errors are the same.
  const fail = (what: string): never => {
    throw new TypeError(`${what}; model '${model}' expects inputs ${describeInputs(expected)}`);
  };
  if (body === null || typeof body !== 'object' || !Array.isArray((body as { inputs?: unknown }).inputs)) {
    fail(`the body is not an Open Inference Protocol request ({ inputs: [{ name, shape, datatype, data }] })`);
  }
  const given = (body as { inputs: unknown[] }).inputs;
  // In the model's order; filled by push so that the list stays packed.
  const checked: (CheckedInput | undefined)[] = [];
  for (let k = 0; k < expected.length; k++) checked.push(undefined);
  for (let i = 0; i < given.length; i++) {
    const raw = given[i];
    if (raw === null || typeof raw !== 'object') fail(`inputs[${i}] is not a tensor ({ name, shape, datatype, data })`);
    const tensor = raw as Partial<OipTensor>;
    const label = typeof tensor.name === 'string' ? `input '${tensor.name}'` : `inputs[${i}]`;
    let k = 0;
    while (k < expected.length && expected[k].name !== tensor.name) k++;
    if (k === expected.length) fail(`${label} is not an input of the model`);
    if (checked[k] !== undefined) fail(`${label} is given twice`);
    checked[k] = checkTensor(label, tensor, expected[k], fail);
  }
  if (given.length !== expected.length || checked.includes(undefined)) {
    const missing = expected.filter((_, k) => checked[k] === undefined);
    fail(`input${missing.length > 1 ? 's' : ''} ${missing.map((m) => `'${m.name}'`).join(', ')} missing`);
  }
  return checked as CheckedInput[];
}

function checkTensor(label: string, tensor: Partial<OipTensor>, want: ExpectedInput, fail: (what: string) => never): CheckedInput {
  if (tensor.datatype !== want.datatype) fail(`${label} has datatype ${JSON.stringify(tensor.datatype)}, the model takes ${want.datatype}`);
  const shape = tensor.shape;
  if (!Array.isArray(shape)) fail(`${label} has shape ${JSON.stringify(shape)}, not a list of non-negative integers`);
  const dims = shape as number[];
  let size = 1;
  for (let k = 0; k < dims.length; k++) {
    const d = dims[k];
    if (!(Number.isInteger(d) && d >= 0)) fail(`${label} has shape ${JSON.stringify(shape)}, not a list of non-negative integers`);
    size *= d;
  }
  if (want.shape.length > 0) {
    let fits = dims.length === want.shape.length;
    for (let k = 0; fits && k < dims.length; k++) fits = want.shape[k] === -1 || want.shape[k] === dims[k];
    if (!fits) fail(`${label} has shape [${dims.join(', ')}], the model takes [${want.shape.join(', ')}]`);
  }
  const datatype = want.datatype;
  const data = toData(label, tensor.data, datatype, fail);
  if (data.length !== size) fail(`${label} has ${data.length} values, its shape [${dims.join(', ')}] needs ${size}`);
  return { name: want.name, datatype, dims, data };
}

/** Flat data of the datatype's array type; nested arrays are flattened row-major. */
function toData(
  label: string,
  data: unknown,
  datatype: OipDatatype,
  fail: (what: string) => never,
): ArrayLike<unknown> & { length: number } {
  const ctor = ARRAY_OF[datatype];
  if (ArrayBuffer.isView(data)) {
    // A typed array of the datatype's own kind goes to onnxruntime as it is (no copy).
    if (ctor && data instanceof (ctor as unknown as new () => object) && datatype !== 'FP16' && datatype !== 'BOOL')
      return data as unknown as ArrayLike<unknown> & { length: number };
    fail(`${label} has data of type ${data.constructor.name}, which is not ${datatype} data`);
  }
  if (!Array.isArray(data)) fail(`${label} has no data array`);
  // Array.prototype.flat(Infinity) costs ~50 µs for 256 numbers; flat data (the common case) is taken as it is.
  const flat = (data as unknown[]).some(Array.isArray) ? flatten(data as unknown[], []) : (data as unknown[]);
  if (datatype === 'BYTES') {
    flat.forEach((v, k) => typeof v !== 'string' && fail(`${label} data[${k}] is ${JSON.stringify(v)}, BYTES data are strings`));
    return flat;
  }
  const out = new ctor!(flat.length);
  if (datatype === 'BOOL') {
    flat.forEach((v, k) =>
      typeof v === 'boolean' ? (out[k] = v ? 1 : 0) : fail(`${label} data[${k}] is ${JSON.stringify(v)}, BOOL data are true or false`),
    );
    return out;
  }
  const range = INT_RANGE[datatype];
  const big = datatype === 'INT64' || datatype === 'UINT64';
  if (!big && datatype !== 'FP16') {
    const refused = copyNumbers(out as unknown as { [k: number]: number }, flat, range);
    if (refused < 0) return out;
    const v = flat[refused];
    if (typeof v !== 'number') fail(`${label} data[${refused}] is ${JSON.stringify(v)}, ${datatype} data are numbers`);
    fail(`${label} data[${refused}] is ${v}, not a ${datatype} (an integer from ${range![0]} to ${range![1]})`);
  }
  for (let k = 0; k < flat.length; k++) {
    const v = flat[k];
    if (big && typeof v === 'bigint') {
      out[k] = v;
      continue;
    }
    if (typeof v !== 'number') fail(`${label} data[${k}] is ${JSON.stringify(v)}, ${datatype} data are numbers`);
    const n = v;
    if (range && !(Number.isInteger(n) && n >= range[0] && n <= range[1])) {
      fail(`${label} data[${k}] is ${n}, not a ${datatype} (an integer from ${range[0]} to ${range[1]})`);
    }
    out[k] = big ? BigInt(n) : datatype === 'FP16' ? toHalf(n) : n;
  }
  return out;
}

/**
 * Copies plain numbers into a TypedArray of a datatype that takes them as they are (FP32, FP64,
 * 8–32-bit integers), checking each as the model does: a number, and an integer in `range` when
 * given, into `out` from index `at`. Returns the index of the first value refused, or -1. The one check for JSON data: the
 * worker's (`toData`) and the main side's packing for the wire (`wire.ts`).
 */
export function copyNumbers(
  out: { [k: number]: number },
  data: readonly unknown[],
  range: readonly [number, number] | undefined,
  at = 0,
): number {
  // `at`: where in `out` the values go (a batch's rows go into one view of its buffer).
  for (let k = 0; k < data.length; k++) {
    const v = data[k];
    if (typeof v !== 'number' || (range !== undefined && !(Number.isInteger(v) && v >= range[0] && v <= range[1]))) return k;
    out[at + k] = v;
  }
  return -1;
}

function flatten(nested: readonly unknown[], into: unknown[]): unknown[] {
  // An explicit stack of (array, next index) instead of recursion: data nested thousands deep
  // must not exhaust the call stack (docs/design.md §11).
  const arrays: (readonly unknown[])[] = [nested];
  const next: number[] = [0];
  while (arrays.length > 0) {
    const top = arrays.length - 1;
    const array = arrays[top];
    const i = next[top];
    if (i >= array.length) {
      arrays.pop();
      next.pop();
      continue;
    }
    next[top] = i + 1;
    const v = array[i];
    if (Array.isArray(v)) {
      arrays.push(v);
      next.push(0);
    } else into.push(v);
  }
  return into;
}

/** An output tensor as OIP: flat JSON data (64-bit integers as numbers, BOOL as booleans). */
export function toOipOutput(name: string, type: string, dims: readonly number[], data: ArrayLike<unknown>): OipTensor {
  const datatype = OIP_DATATYPE[type];
  if (datatype === undefined) throw new TypeError(`output '${name}' has type '${type}', which the Open Inference Protocol cannot carry`);
  return { name, shape: [...dims], datatype, data: oipData(datatype, data) };
}

/**
 * An output's values (those from `from` to `to`) as a plain flat array: numbers (64-bit integers
 * as numbers, FP16 bits decoded), booleans for BOOL, strings for BYTES. One loop per kind, so the common case (a
 * Float32Array) is a plain copy.
 */
export function oipData(datatype: OipDatatype, data: ArrayLike<unknown>, from = 0, to = data.length): unknown[] {
  // `from`/`to`: one call's rows of a batch's output, read in place (no view per call).
  const n = to - from;
  const values: unknown[] = new Array(n);
  if (datatype === 'BOOL') for (let k = 0; k < n; k++) values[k] = Boolean(data[from + k]);
  else if (datatype === 'FP16') for (let k = 0; k < n; k++) values[k] = fromHalf(data[from + k] as number);
  else if (datatype === 'INT64' || datatype === 'UINT64') for (let k = 0; k < n; k++) values[k] = Number(data[from + k]);
  else for (let k = 0; k < n; k++) values[k] = data[from + k];
  return values;
}
