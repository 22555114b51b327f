// What crosses the boundary to worker threads and child processes: model specs, batches of
// calls, results, and errors serialized by hand so their class, stack and cause survive.
import { ERROR_CLASSES, safeString } from '../../errors.js';

/** How a worker finds and builds one model. `module: null` names a built-in class ('Model'). */
export interface WorkerModelSpec {
  readonly endpointName: string;
  readonly module: string | null;
  readonly export: string;
  readonly params: Readonly<Record<string, unknown>>;
  readonly artifact?: unknown;
}

/** One call inside a batch. `spec` indexes the batch's `specs`. */
export interface WireCall {
  readonly id: number;
  readonly spec: number;
  readonly input: unknown;
  readonly eventId: string;
  readonly origin: string;
  readonly path?: string;
  /** The V2 operation of the call (`PredictContext.operation`); absent: `predict`. Never set on a batch call. */
  readonly op?: string;
  /**
   * Set when this wire call is a batch of model calls (an entry with `batching`): `input` is the
   * list of inputs and these are their contexts, flat (`FlatContexts`). The worker makes one
   * `predictBatch` call and the value is a flat `[ok, valueOrSerializedError, ...]` per input (see
   * `flatten`). Flat on both sides: no object per input is made to send them or to read them, and
   * the worker builds the models' contexts only when a model's method takes them (`ModelHost`).
   * A number instead: how many inputs there are, their contexts not sent, because the model's
   * wire method reads none (a built-in class whose `WireCodec.readsContexts` is false: OnnxModel).
   */
  readonly batch?: FlatContexts | number;
  /**
   * Someone receives this call's partials (`ctx.emit`): only then does the worker give the model a
   * context that sends them back. A batch call says it per element, in `batch`.
   */
  readonly listen?: boolean;
}

/**
 * The contexts of a batch wire call's inputs, `CONTEXT_FIELDS` values per input: event id,
 * origin, path (or undefined), listen (1 when someone receives that input's partials).
 */
export type FlatContexts = readonly unknown[];
export const CONTEXT_FIELDS = 4;

/**
 * How many inputs flat contexts describe (or a count sent instead of them); a TypeError naming
 * what is wrong when they are not `CONTEXT_FIELDS` values per input of the kinds above (a
 * malformed message fails its call, clearly, instead of giving a model a context of the wrong kind).
 */
export function contextCount(flat: unknown): number {
  if (typeof flat === 'number') {
    // Contexts not sent (see WireCall.batch): the count alone.
    if (!Number.isSafeInteger(flat) || flat < 0) throw new TypeError(`a malformed batch call: its input count is ${flat}`);
    return flat;
  }
  if (!Array.isArray(flat) || flat.length % CONTEXT_FIELDS !== 0) {
    throw new TypeError(
      `a malformed batch call: its contexts are ${Array.isArray(flat) ? `${flat.length} values, not ${CONTEXT_FIELDS} per input` : safeString(flat)}`,
    );
  }
  for (let i = 0; i < flat.length; i += CONTEXT_FIELDS) {
    const path: unknown = flat[i + 2];
    if (typeof flat[i] !== 'string' || typeof flat[i + 1] !== 'string' || (path != null && typeof path !== 'string')) {
      throw new TypeError(
        `a malformed batch call: the context of input ${i / CONTEXT_FIELDS} is not [eventId, origin, path, listen] (strings; the path may be absent)`,
      );
    }
  }
  return flat.length / CONTEXT_FIELDS;
}

/** Several calls sent as one message (one piscina task, one IPC message). */
export interface WireBatch {
  /** Spec keys (JSON of a `WorkerModelSpec`), so a worker builds each model once and caches it. */
  readonly specs: readonly string[];
  readonly calls: readonly WireCall[];
}

export type WireResult = { readonly ok: true; readonly value: unknown } | { readonly ok: false; readonly error: SerializedError };

export interface SerializedError {
  readonly name: string;
  readonly message: string;
  readonly stack?: string;
  readonly cause?: SerializedError | { readonly value: unknown };
  /** Own enumerable fields (`status`, `retryable`, `modelsErrors`, ...), when they can be cloned. */
  readonly props?: Readonly<Record<string, unknown>>;
}

// rxserve's classes (the one list in errors.ts) and the built-in ones.
const KNOWN: Record<string, new (...args: never[]) => Error> = {
  ...ERROR_CLASSES,
  Error,
  TypeError,
  RangeError,
  SyntaxError,
  ReferenceError,
  EvalError,
  URIError,
};

/** Turns anything thrown into plain data that structured clone and JSON both carry. */
export function serializeError(thrown: unknown, depth = 0): SerializedError {
  if (!(thrown instanceof Error)) {
    return { name: 'Error', message: typeof thrown === 'string' ? thrown : safeString(thrown), cause: { value: cloneable(thrown) } };
  }
  const props: Record<string, unknown> = {};
  for (const key of Object.keys(thrown)) {
    if (key === 'name' || key === 'message' || key === 'stack' || key === 'cause') continue;
    const value = cloneable((thrown as unknown as Record<string, unknown>)[key]);
    if (value !== undefined) props[key] = value;
  }
  const cause = (thrown as { cause?: unknown }).cause;
  return {
    name: thrown.name,
    message: thrown.message,
    ...(thrown.stack ? { stack: thrown.stack } : {}),
    ...(cause !== undefined && depth < 8
      ? { cause: cause instanceof Error ? serializeError(cause, depth + 1) : { value: cloneable(cause) } }
      : {}),
    ...(Object.keys(props).length ? { props } : {}),
  };
}

/**
 * Rebuilds an error: the same class when it is one of rxserve's or a built-in one (else an
 * `Error` whose `name` is the original's), with message, stack, fields and cause.
 */
export function deserializeError(data: SerializedError): Error {
  const cls = KNOWN[data.name];
  const error: Error = cls ? (Object.create(cls.prototype as Error) as Error) : new Error();
  Object.defineProperty(error, 'message', { value: data.message, writable: true, configurable: true });
  Object.defineProperty(error, 'name', { value: data.name, writable: true, configurable: true });
  Object.defineProperty(error, 'stack', { value: data.stack ?? `${data.name}: ${data.message}`, writable: true, configurable: true });
  if (data.props) Object.assign(error, data.props);
  if (data.cause !== undefined) {
    const cause = 'name' in data.cause && 'message' in data.cause ? deserializeError(data.cause) : (data.cause as { value: unknown }).value;
    Object.defineProperty(error, 'cause', { value: cause, writable: true, configurable: true });
  }
  return error;
}

function cloneable(value: unknown): unknown {
  if (value === undefined || typeof value === 'function' || typeof value === 'symbol') return undefined;
  if (value === null || typeof value !== 'object') return value;
  try {
    return structuredClone(value);
  } catch {
    return safeString(value);
  }
}

/** What a worker boundary needs to know of a value before sending it. */
export interface Inspection {
  /** Whole ArrayBuffers inside it (sent by transfer). */
  readonly transfer: ArrayBuffer[];
  /** Where the first value structured clone cannot copy is, and what it is; undefined if none. */
  problem?: string;
}

/**
 * One walk over a value about to cross to or from a worker: collects whole ArrayBuffers for
 * transfer, and finds the first value structured clone would refuse (a function, a symbol, a
 * Promise, a WeakMap/WeakSet/WeakRef), named by its path from `root` — so a bad value fails its
 * own call with a clear message instead of its whole batch. Cycles and shared references are
 * walked once (structured clone keeps them).
 */
export function inspectForWorker(value: unknown, root: string): Inspection {
  const inspection: Inspection = { transfer: [] };
  // A primitive (a string, a number) has nothing to walk.
  if (value === null || (typeof value !== 'object' && typeof value !== 'function' && typeof value !== 'symbol')) return inspection;
  // Depth-first with an explicit stack, not recursion: a body nested thousands deep (docs/design.md §11)
  // must not exhaust the call stack here, whatever the edges let through.
  const values: unknown[] = [value];
  const paths: string[] = [root];
  let seen: Set<object> | undefined;
  while (values.length > 0) {
    const problem = visit(values.pop(), paths.pop()!, inspection.transfer, values, paths, (seen ??= new Set()));
    if (problem !== undefined) {
      inspection.problem = problem;
      break;
    }
  }
  return inspection;
}

/** The ArrayBuffers to transfer with a value (see inspectForWorker). */
export function collectTransferables(value: unknown): ArrayBuffer[] {
  return inspectForWorker(value, 'value').transfer;
}

/** Inspects one value; pushes its children (last first, so they pop in order). Returns a problem. */
function visit(
  value: unknown,
  path: string,
  transfer: ArrayBuffer[],
  values: unknown[],
  paths: string[],
  seen: Set<object>,
): string | undefined {
  if (value === null) return undefined;
  const type = typeof value;
  if (type === 'function') return `${path} is a function`;
  if (type === 'symbol') return `${path} is a symbol`;
  if (type !== 'object') return undefined;
  const object = value as object;
  if (ArrayBuffer.isView(object)) {
    const buffer = object.buffer;
    // Only whole-buffer views: a Node Buffer from the pool shares its ArrayBuffer with others,
    // and transferring that would detach unrelated data.
    if (buffer instanceof ArrayBuffer && object.byteOffset === 0 && object.byteLength === buffer.byteLength && !transfer.includes(buffer)) {
      transfer.push(buffer);
    }
    return undefined;
  }
  if (object instanceof ArrayBuffer) {
    if (!transfer.includes(object)) transfer.push(object);
    return undefined;
  }
  const refused = refusedKind(object);
  if (refused !== undefined) return `${path} is a ${refused}`;
  // Cycles and shared references: each object is walked once.
  if (seen.has(object)) return undefined;
  seen.add(object);
  if (Array.isArray(object)) {
    // Numbers and strings need no walk: building a path for each (a tensor's data) cost more than the copy.
    for (let i = object.length - 1; i >= 0; i--) {
      const item: unknown = object[i];
      if (item === null || (typeof item !== 'object' && typeof item !== 'function' && typeof item !== 'symbol')) continue;
      values.push(item);
      paths.push(`${path}[${i}]`);
    }
  } else if (object instanceof Map) {
    const entries = [...(object as Map<unknown, unknown>)];
    for (let i = entries.length - 1; i >= 0; i--) {
      const [k, v] = entries[i];
      values.push(v, k);
      paths.push(`${path}.get(${typeof k === 'string' ? JSON.stringify(k) : '…'})`, `${path}.<key>`);
    }
  } else if (object instanceof Set) {
    const items = [...object];
    for (let i = items.length - 1; i >= 0; i--) {
      values.push(items[i]);
      paths.push(`${path}.<item>`);
    }
  } else if (!(object instanceof Date || object instanceof RegExp || object instanceof Error)) {
    const keys = Object.keys(object);
    for (let i = keys.length - 1; i >= 0; i--) {
      // As for arrays: a field that is a number, string or boolean needs no walk and no path.
      const item = (object as Record<string, unknown>)[keys[i]];
      if (item === null || (typeof item !== 'object' && typeof item !== 'function' && typeof item !== 'symbol')) continue;
      values.push(item);
      paths.push(`${path}.${keys[i]}`);
    }
  }
  return undefined;
}

function refusedKind(object: object): string | undefined {
  if (object instanceof Promise) return 'Promise';
  if (object instanceof WeakMap) return 'WeakMap';
  if (object instanceof WeakSet) return 'WeakSet';
  if (object instanceof WeakRef) return 'WeakRef';
  return undefined;
}

/**
 * The one wire form of a batch for worker threads (pools rxserve made and pools of the user's own):
 * a flat array, `FLAT_FIELDS` values per call — spec, call id, event id, origin, path, input,
 * batch contexts (undefined for a single call), operation (undefined for predict), listen (1: its
 * partials are wanted) — where `spec` is an index into the specs the threads got in `workerData`
 * (a pool rxserve made) or the spec key itself (a pool of the user's own, which also gets the
 * cancel board as the first element). A batch call's contexts are flat already (`FlatContexts`)
 * and cross as they are. Its reply is flat: `[ok, valueOrSerializedError, ...]`.
 * Structured clone copies a flat array of primitives faster than nested objects (a few µs on a
 * ~50 µs path; 32 context objects per batch cost more than the batch's tensors).
 */
export type FlatBatch = readonly unknown[];
export const FLAT_FIELDS = 9;

/** Encodes a batch; `specRef` turns a spec key into what the threads know it by. */
export function encodeBatch(batch: WireBatch, specRef: (key: string) => number | string, board?: SharedArrayBuffer): unknown[] {
  // Built by push, not `new Array(n)`: a holey array (what `new Array(n)` makes, filled or not)
  // goes through V8's serializer and deserializer element by element as a sparse array, a lookup
  // per element on both threads; a packed one is written and read densely.
  const flat: unknown[] = [];
  if (board) flat.push(board);
  for (const call of batch.calls) {
    flat.push(
      specRef(batch.specs[call.spec]),
      call.id,
      call.eventId,
      call.origin,
      call.path,
      call.input,
      call.batch,
      call.op,
      call.listen ? 1 : 0,
    );
  }
  return flat;
}

/**
 * Decodes a flat batch in the worker; indices resolve against `knownSpecs`. A message that is not
 * a batch of this form is a TypeError saying what is wrong (its task fails with it, the thread goes
 * on). A batch call's contexts are checked where they are read (`contextCount`).
 */
export function decodeBatch(flat: FlatBatch, knownSpecs: readonly string[]): { batch: WireBatch; board?: SharedArrayBuffer } {
  const board = flat[0] instanceof SharedArrayBuffer ? flat[0] : undefined;
  const first = board ? 1 : 0;
  if (flat.length === first || (flat.length - first) % FLAT_FIELDS !== 0) {
    throw new TypeError(`a malformed batch: ${flat.length - first} values, not ${FLAT_FIELDS} per call`);
  }
  const calls = new Array<WireCall>((flat.length - first) / FLAT_FIELDS);
  const specs: string[] = [];
  const index = calls.length === 1 ? undefined : new Map<string, number>();
  for (let n = 0, i = first; n < calls.length; n++, i += FLAT_FIELDS) {
    const ref: unknown = flat[i];
    const key = typeof ref === 'number' ? knownSpecs[ref] : ref;
    if (typeof key !== 'string')
      throw new TypeError(`a malformed batch: call ${n} names model ${safeString(ref)}, which this worker does not know`);
    if (typeof flat[i + 1] !== 'number')
      throw new TypeError(`a malformed batch: call ${n} has id ${safeString(flat[i + 1])}, not a number`);
    let spec = 0;
    if (index === undefined) specs.push(key);
    else {
      let found = index.get(key);
      if (found === undefined) {
        found = specs.push(key) - 1;
        index.set(key, found);
      }
      spec = found;
    }
    // One object shape for every call (absent fields undefined), so the host's reads stay monomorphic.
    calls[n] = {
      spec,
      id: flat[i + 1] as number,
      eventId: flat[i + 2] as string,
      origin: flat[i + 3] as string,
      path: flat[i + 4] as string | undefined,
      input: flat[i + 5],
      batch: flat[i + 6] as FlatContexts | undefined,
      op: flat[i + 7] as string | undefined,
      listen: flat[i + 8] === 1,
    };
  }
  return board ? { batch: { specs, calls }, board } : { batch: { specs, calls } };
}

/** `[ok, value | error, ...]`: the reply to a flat batch (packed, as `encodeBatch`'s, for the serializer). */
export function flatten(results: readonly WireResult[]): unknown[] {
  const out: unknown[] = [];
  for (const r of results) out.push(r.ok ? 1 : 0, r.ok ? r.value : r.error);
  return out;
}
