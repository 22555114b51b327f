// What crosses the boundary to worker threads and child processes: model specs, batches of
// calls, results, and errors serialized by hand so their class, stack and cause survive.
import {
  ConfigError,
  ModelLoadError,
  ModelRunnerError,
  ModelTimeoutError,
  ProviderError,
  QueueFullError,
  RouteNotFoundError,
  RxServeError,
  SelectorError,
  WorkerCrashedError,
} from '../errors.js';

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

const KNOWN: Record<string, new (...args: never[]) => Error> = {
  RxServeError,
  ConfigError,
  ModelLoadError,
  ModelRunnerError,
  SelectorError,
  RouteNotFoundError,
  ModelTimeoutError,
  QueueFullError,
  WorkerCrashedError,
  ProviderError,
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
  const error: Error = cls ? Object.create(cls.prototype) : new Error();
  Object.defineProperty(error, 'message', { value: data.message, writable: true, configurable: true });
  Object.defineProperty(error, 'name', { value: data.name, writable: true, configurable: true });
  Object.defineProperty(error, 'stack', { value: data.stack ?? `${data.name}: ${data.message}`, writable: true, configurable: true });
  if (data.props) Object.assign(error, data.props);
  if (data.cause !== undefined) {
    const cause = 'name' in data.cause && 'message' in data.cause ? deserializeError(data.cause as SerializedError) : (data.cause as { value: unknown }).value;
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

function safeString(value: unknown): string {
  try {
    return typeof value === 'object' ? JSON.stringify(value) : String(value);
  } catch {
    return Object.prototype.toString.call(value);
  }
}

/**
 * The ArrayBuffers under TypedArrays / DataViews / ArrayBuffers in `value` (walking plain objects
 * and arrays), so they can be transferred instead of copied. Views over part of a buffer are left
 * to be copied; SharedArrayBuffers are shared anyway.
 */
export function collectTransferables(value: unknown, out: ArrayBuffer[] = [], depth = 0): ArrayBuffer[] {
  if (value === null || typeof value !== 'object' || depth > 32) return out;
  if (ArrayBuffer.isView(value)) {
    const buffer = value.buffer;
    // Only whole-buffer views: a Node Buffer from the pool shares its ArrayBuffer with others,
    // and transferring that would detach unrelated data.
    if (buffer instanceof ArrayBuffer && value.byteOffset === 0 && value.byteLength === buffer.byteLength && !out.includes(buffer)) {
      out.push(buffer);
    }
    return out;
  }
  if (value instanceof ArrayBuffer) {
    if (!out.includes(value)) out.push(value);
    return out;
  }
  if (Array.isArray(value)) {
    for (const item of value) collectTransferables(item, out, depth + 1);
    return out;
  }
  const proto = Object.getPrototypeOf(value);
  if (proto === Object.prototype || proto === null) {
    for (const key in value) collectTransferables((value as Record<string, unknown>)[key], out, depth + 1);
  }
  return out;
}
