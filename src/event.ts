// ServingEvent, how events are made and changed (never in place), and dot paths.
import { map, type OperatorFunction } from 'rxjs';
import type { ServingError } from './errors.js';

/** One request flowing through a serving pipeline. Immutable: steps emit new events. */
export interface ServingEvent<B = unknown> {
  /** Unique; `toEvent()` generates one when absent. */
  readonly id: string;
  readonly body: B;
  /** e.g. `'/v2/models/m1/infer'`. */
  readonly path?: string;
  readonly headers?: Readonly<Record<string, string>>;
  /**
   * The HTTP method of the request the event came from (`'POST'`, `'GET'`...), as MLRun's event
   * has it: `serve()` sets it; `remoteStep` sends with it when its own `method` is not set.
   */
  readonly method?: string;
  readonly metadata: Readonly<Record<string, unknown>>;
  /** Set once a step failed the event; later steps pass it on untouched. */
  readonly error?: ServingError;
  /** Name of the step that set `error`. */
  readonly origin?: string;
  /**
   * Cancels this event alone: when it aborts, every step stops the event's work (a model's
   * `ctx.signal` fires, a worker call is cancelled) and the event leaves that step at once,
   * errored with the signal's reason. For events you make yourself: `invoker()` and `serve()`
   * cancel their requests' events with an internal token that steps listen to the same way
   * (an `AbortController` per request cost ~15 µs), so their events have no `signal`.
   */
  readonly signal?: AbortSignal;
  /**
   * Receives this event's partial results as models publish them (`ctx.emit`, e.g. an LLModel's
   * token deltas), each with the endpoint that emitted it. Partials travel beside the event, never
   * in the stream: the event still leaves each step once. `client.stream()` and `serve()`'s
   * Server-Sent Events set it per request.
   */
  readonly partials?: PartialSink;
}

/** A partial result of a model call: the endpoint that emitted it and its data. */
export interface PartialResult<D = unknown> {
  readonly endpoint: string;
  readonly data: D;
}

/** Where an event's partial results go (see `ServingEvent.partials`). */
export type PartialSink = (partial: PartialResult) => void;

// CANCEL, CancelToken, EventCancel, cancelOf and makeEvent are for rxserve's own modules: no entry
// exports them. Not marked internal (the tag): the published typings drop what carries it
// (tsconfig stripInternal), and these are imported across modules, so their declarations must stay.

/**
 * The per-event cancel `invoker()` and `serve()` attach to their events (a symbol key,
 * copied by spreads like any field): the same contract as `signal`, without an AbortController
 * and an EventTarget listener per request per step, which cost ~15 µs a request on Node 20.
 */
export const CANCEL: unique symbol = Symbol.for('rxserve.cancel');

/**
 * Told once when an event's cancel aborts. An object (EventTarget's listener-object shape), so a
 * step listens with its per-event record itself: no closure to listen and none to stop, per event.
 */
export interface CancelListener {
  handleEvent(): void;
}

/** What steps listen to for one event's cancellation. */
export interface CancelToken {
  readonly aborted: boolean;
  readonly reason: unknown;
  /** Tells `listener` once when it aborts. */
  listen(listener: CancelListener): void;
  /** Stops telling `listener` (nothing when it was not listening). */
  unlisten(listener: CancelListener): void;
}

/**
 * A cancel token for one event (no AbortController, no EventTarget). It also has the
 * part of an AbortSignal that undici and `sleep` use (`addEventListener('abort', fn)`), so one
 * class serves events and the requests made for them.
 */
export class EventCancel implements CancelToken {
  aborted = false;
  reason: unknown = undefined;
  #listeners: (CancelListener | (() => void))[] | undefined;

  listen(listener: CancelListener): void {
    (this.#listeners ??= []).push(listener);
  }

  unlisten(listener: CancelListener): void {
    this.removeEventListener('abort', listener);
  }

  addEventListener(_type: 'abort', listener: CancelListener | (() => void)): void {
    (this.#listeners ??= []).push(listener);
  }

  removeEventListener(_type: 'abort', listener: CancelListener | (() => void)): void {
    const list = this.#listeners;
    if (list === undefined) return;
    // Steps stop listening in the reverse order they started (the usual case: the last one): a
    // pop, not indexOf + splice (~350 instructions per event and step).
    const last = list.length - 1;
    if (last >= 0 && list[last] === listener) list.pop();
    else {
      const at = list.indexOf(listener);
      if (at >= 0) list.splice(at, 1);
    }
  }

  abort(reason: unknown): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason;
    const list = this.#listeners;
    this.#listeners = undefined;
    if (list === undefined) return;
    for (const listener of list) {
      if (typeof listener === 'function') listener();
      else listener.handleEvent();
    }
  }
}

/** The cancel of an event: its token, or one over its `signal`, or none. */
export function cancelOf(event: ServingEvent): CancelToken | undefined {
  const token = (event as { [CANCEL]?: CancelToken })[CANCEL];
  if (token !== undefined) return token;
  const { signal } = event;
  if (signal === undefined) return undefined;
  return {
    get aborted() {
      return signal.aborted;
    },
    get reason() {
      return signal.reason as unknown;
    },
    listen(listener) {
      signal.addEventListener('abort', listener, { once: true });
    },
    unlisten(listener) {
      signal.removeEventListener('abort', listener);
    },
  };
}

/** A `ServingEvent` that a step has failed. */
export type ErroredEvent<B = unknown> = ServingEvent<B> & { readonly error: ServingError };

/** The metadata of events made without any (one frozen object, so a step can tell it apart without looking inside). */
export const EMPTY_METADATA: Readonly<Record<string, unknown>> = Object.freeze({});

/**
 * Makes a serving event from a body.
 *
 * The event is frozen (shallowly); every step that changes it emits a new one.
 *
 * ## Example
 * ```ts
 * import { toEvent } from 'rxserve';
 * const event = toEvent({ text: 'hi' }, { id: 'e1' });
 * // { id: 'e1', body: { text: 'hi' }, metadata: {} }
 * ```
 * @param body The request body.
 * @param init Any other field; `id` is generated with `crypto.randomUUID()` when absent.
 * @returns A new, frozen event.
 */
export function toEvent<B>(body: B, init?: Partial<Omit<ServingEvent<B>, 'body'>>): ServingEvent<B> {
  return makeEvent(body, init, undefined);
}

/**
 * A frozen copy of string-keyed headers, built key by key: V8 freezes a spread copy of an object
 * built key by key (as node:http builds request headers) on a slow path, ~2 µs against ~0.1 µs
 * (Node 20). Symbol keys are not copied (headers have none).
 */
function frozenCopy<T extends object>(source: T): Readonly<T> {
  const copy = {} as T;
  for (const key in source) if (Object.hasOwn(source, key)) copy[key] = source[key];
  return Object.freeze(copy);
}

/** A constructor that returns its argument: a subclass's private field then lands on that object. */
class Stamp {
  constructor(target: object) {
    return target;
  }
}

/**
 * The mark of an event built here field by field (`makeEvent`, `withBody`): its own keys are
 * ServingEvent's fields whose value is not undefined, in the order `makeEvent` writes them, and
 * `CANCEL`. A private field: spreads, `Object.keys` and JSON never see it, and a copy made
 * elsewhere (a spread, which may add fields) does not carry it.
 */
class KnownShape extends Stamp {
  #known = true;
  static has(event: object): boolean {
    return #known in event;
  }
}

/** `toEvent` with a cancel token under `CANCEL` (the invoker's): one object, frozen once. */
export function makeEvent<B>(
  body: B,
  init: Partial<Omit<ServingEvent<B>, 'body'>> | undefined,
  cancel: CancelToken | undefined,
): ServingEvent<B> {
  const event: { -readonly [K in keyof ServingEvent<B>]: ServingEvent<B>[K] } & { [CANCEL]?: CancelToken } = {
    id: init?.id ?? globalThis.crypto.randomUUID(),
    body,
    metadata: init?.metadata ? Object.freeze({ ...init.metadata }) : EMPTY_METADATA,
  };
  if (init?.path !== undefined) event.path = init.path;
  if (init?.headers !== undefined) event.headers = frozenCopy(init.headers);
  if (init?.method !== undefined) event.method = init.method;
  if (init?.error !== undefined) event.error = init.error;
  if (init?.origin !== undefined) event.origin = init.origin;
  if (init?.signal !== undefined) event.signal = init.signal;
  if (init?.partials !== undefined) event.partials = init.partials;
  if (cancel !== undefined) event[CANCEL] = cancel;
  new KnownShape(event);
  return Object.freeze(event);
}

/**
 * Wraps plain values into serving events; values that already are events pass as they are.
 *
 * ## Example
 * ```ts
 * import { of } from 'rxjs';
 * import { asEvents } from 'rxserve';
 * of({ n: 1 }, { n: 2 }).pipe(asEvents()); // two ServingEvents with generated ids
 * ```
 */
export function asEvents<B>(): OperatorFunction<B | ServingEvent<B>, ServingEvent<B>> {
  return map((value) => (isServingEvent<B>(value) ? value : toEvent(value)));
}

/** True for objects shaped like a `ServingEvent` (string `id`, a `body` key, `metadata` object). */
export function isServingEvent<B = unknown>(value: unknown): value is ServingEvent<B> {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as ServingEvent).id === 'string' &&
    'body' in value &&
    typeof (value as ServingEvent).metadata === 'object' &&
    (value as ServingEvent).metadata !== null
  );
}

/** True when a step has failed the event. */
export function isErrored<B>(event: ServingEvent<B>): event is ErroredEvent<B> {
  return event.error !== undefined;
}

/** A copy of `event` with another body (and any other fields in `changes`). */
export function withBody<B>(
  event: ServingEvent<unknown>,
  body: B,
  changes?: { metadata?: Readonly<Record<string, unknown>> },
): ServingEvent<B> {
  const metadata = changes?.metadata ? Object.freeze(changes.metadata) : event.metadata;
  // V8 spreads a frozen object on its slow path (~2× a copy by fields); an event whose fields are
  // known (see KnownShape) is copied field by field into the same keys, in the same order.
  if (!KnownShape.has(event)) return Object.freeze({ ...event, body, metadata });
  const copy: { -readonly [K in keyof ServingEvent<B>]: ServingEvent<B>[K] } & { [CANCEL]?: CancelToken } = {
    id: event.id,
    body,
    metadata,
  };
  if (event.path !== undefined) copy.path = event.path;
  if (event.headers !== undefined) copy.headers = event.headers;
  if (event.method !== undefined) copy.method = event.method;
  if (event.error !== undefined) copy.error = event.error;
  if (event.origin !== undefined) copy.origin = event.origin;
  if (event.signal !== undefined) copy.signal = event.signal;
  if (event.partials !== undefined) copy.partials = event.partials;
  const cancel = (event as { [CANCEL]?: CancelToken })[CANCEL];
  if (cancel !== undefined) copy[CANCEL] = cancel;
  new KnownShape(copy);
  return Object.freeze(copy);
}

/** A copy of `event` failed with `error` by step `origin`. */
export function withError<B>(event: ServingEvent<B>, error: ServingError, origin: string): ErroredEvent<B> {
  return Object.freeze({ ...event, error, origin });
}

/** A copy of `event` with `error` and `origin` removed (what `onError` emits on recovery). */
export function withoutError<B>(event: ServingEvent<B>, body?: B): ServingEvent<B> {
  const { error: _error, origin: _origin, ...rest } = event;
  return Object.freeze(body === undefined ? rest : { ...rest, body });
}

// ---- dot paths -------------------------------------------------------------------------------

const pathCache = new Map<string, readonly string[]>();

function splitPath(path: string): readonly string[] {
  let parts = pathCache.get(path);
  if (parts === undefined) {
    parts = Object.freeze(path.split('.'));
    if (parts.some((p) => p === '')) throw new TypeError(`invalid dot path '${path}'`);
    if (pathCache.size < 1024) pathCache.set(path, parts);
  }
  return parts;
}

/**
 * Reads `path` (`'a.b.c'`) from `value`; the whole value for an empty or absent path.
 * Returns `undefined` when a segment is missing.
 */
export function getPath(value: unknown, path: string | undefined): unknown {
  if (!path) return value;
  let current = value;
  for (const key of splitPath(path)) {
    if (current === null || typeof current !== 'object') return undefined;
    current = (current as Record<string, unknown>)[key];
  }
  return current;
}

/** True when every segment of `path` exists in `value`. */
export function hasPath(value: unknown, path: string | undefined): boolean {
  if (!path) return true;
  let current = value;
  for (const key of splitPath(path)) {
    if (current === null || typeof current !== 'object' || !(key in current)) return false;
    current = (current as Record<string, unknown>)[key];
  }
  return true;
}

/**
 * Returns a copy of `value` with `newValue` written at `path`, copying only the objects along the
 * path (the rest is shared, as it is immutable). Missing or non-object segments become objects.
 * An empty path returns `newValue` itself.
 */
export function setPath<T>(value: T, path: string | undefined, newValue: unknown): T {
  if (!path) return newValue as T;
  return setIn(value, splitPath(path), 0, newValue) as T;
}

function setIn(container: unknown, keys: readonly string[], i: number, newValue: unknown): unknown {
  const key = keys[i];
  const copy: Record<string, unknown> = Array.isArray(container)
    ? ([...(container as unknown[])] as unknown as Record<string, unknown>)
    : container !== null && typeof container === 'object'
      ? { ...(container as Record<string, unknown>) }
      : {};
  copy[key] = i === keys.length - 1 ? newValue : setIn(copy[key], keys, i + 1, newValue);
  return copy;
}
