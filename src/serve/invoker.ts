// invoker(): request/response over a pipeline — one long-lived subscription, answers matched by event id.
import { Observable, Subject, type OperatorFunction, type Subscription } from 'rxjs';
import { bodyProblem, DEFAULT_MAX_BODY_DEPTH } from '../body.js';
import { NonNegativeMs, decodeOrThrow, positiveInt, strict } from '../decode.js';
import { ModelTimeoutError, RxServeError, toError } from '../errors.js';
import { EventCancel, makeEvent, withError, type PartialSink, type ServingEvent } from '../event.js';
import { DEFAULT_CLOSE_TIMEOUT_MS, flowRuntimeOf } from '../flow/runtime.js';
import type { Graph } from '../graph/graph.js';
import { GraphCodec } from './graphCodec.js';
import { newRequestId } from './requestId.js';

/** What `client.stream()` emits: partial results as they come, then the answer. */
export type StreamMessage<B = unknown> =
  | { readonly type: 'partial'; readonly endpoint: string; readonly data: unknown }
  | { readonly type: 'result'; readonly event: ServingEvent<B> };

/** Options of `invoker()`. */
export interface InvokerOptions {
  /** The graph the pipeline's steps belong to: `close()` closes it once every answer is in. */
  readonly graph?: Graph;
  /**
   * How long `invoke` waits for the event's answer; past it, the answer is the event errored with
   * `ModelTimeoutError`, and the event's work is aborted. Default 30,000 ms.
   */
  readonly timeoutMs?: number;
  /**
   * Deepest nesting of a body accepted (`{ a: 1 }` is 1); a deeper one is answered at once with
   * the event errored with a `TypeError` and never reaches the pipeline. Default 256.
   */
  readonly maxBodyDepth?: number;
  /**
   * How long `close()` waits, once every answer is in, for the background branches of flows
   * (docs/design.md §17) — the pipeline's own when it is a built flow, and the graph's — before it ends
   * the subscription (aborting what still runs). Default 30,000 ms.
   */
  readonly closeTimeoutMs?: number;
}

/** What a request carries besides its body (the event's other fields). */
export interface InvokeInit {
  /** The event id; default a new UUID-shaped id (a random prefix per process and a counter). Two requests in flight cannot share one. */
  readonly id?: string;
  /** e.g. `'/v2/models/m1/infer'` (a router's key may read it: `v2ModelName`). */
  readonly path?: string;
  readonly headers?: Readonly<Record<string, string>>;
  /** The request's HTTP method (`ServingEvent.method`); `serve()` sets it. */
  readonly method?: string;
  readonly metadata?: Readonly<Record<string, unknown>>;
  /** Aborting it cancels the event's work, as a client disconnect does; `invoke` rejects with its reason. */
  readonly signal?: AbortSignal;
}

/** Request/response over a pipeline (see `invoker`). */
export interface Invoker {
  /**
   * Sends `body` through the pipeline as one event and resolves with its answer: the first output
   * event with the same id, errored ones included (`QueueFullError` when the pipeline is full,
   * `ModelTimeoutError` when no answer came within `timeoutMs`). Rejects after `close()`, when
   * `init.signal` aborts (with its reason), and when `init.id` is already in flight.
   */
  invoke<B = unknown>(body: unknown, init?: InvokeInit): Promise<ServingEvent<B>>;
  /** MLRun's `server.test()`: the answer's body, or throws the answer's error. */
  test<B = unknown>(body: unknown, init?: InvokeInit): Promise<B>;
  /**
   * Like `invoke`, with the event's partial results as they come (docs/design.md §15): each model's
   * `ctx.emit(data)` is a `{ type: 'partial', endpoint, data }`, then the answer is one
   * `{ type: 'result', event }` (errored events too) and the observable completes. Each
   * subscription sends one request; unsubscribing before the result cancels its work. Errors
   * (not results) when `invoke` would reject.
   */
  stream<B = unknown>(body: unknown, init?: Omit<InvokeInit, 'signal'>): Observable<StreamMessage<B>>;
  /**
   * Stops intake (later `invoke`s reject), waits for the answers still awaited and (up to
   * `closeTimeoutMs`) for flows' background branches, then ends the subscription (aborting work
   * whose answer nobody awaits any more) and closes the graph.
   */
  close(): Promise<void>;
  /** Requests awaiting their answer. */
  readonly inFlight: number;
  /** `close()` was called. */
  readonly closed: boolean;
}

const InvokerOptionsCodec = strict(
  'InvokerOptions',
  {},
  { graph: GraphCodec, timeoutMs: positiveInt(true), maxBodyDepth: positiveInt(false), closeTimeoutMs: NonNegativeMs },
);

const DEFAULT_TIMEOUT_MS = 30_000;

/**
 * Where a request's outcome goes (internal: no entry exports it, and it stays in the typings
 * because other modules' declarations name it), once: its answer (`event`, errored ones included), or
 * `undefined` and why it was refused or cancelled (`refused`). Called synchronously from the
 * pipeline's emission (or from `begin` itself when refused or answered at once), so it must not
 * throw.
 */
export type AnswerTo = (event: ServingEvent | undefined, refused?: unknown) => void;

/** One request awaiting its answer. */
interface Pending {
  readonly event: ServingEvent;
  readonly cancel: EventCancel;
  /** `performance.now()` past which it is answered with ModelTimeoutError (set once it outlives its dispatch). */
  deadline: number;
  readonly answer: AnswerTo;
  unlisten: (() => void) | undefined;
  /** Answered, refused, cancelled or timed out: nothing more happens to it. */
  settled: boolean;
  /** In the `pending` map (it outlived its synchronous dispatch). */
  held: boolean;
  /** While it is being dispatched: the request whose dispatch was under way when it began (a pipeline that calls the invoker). */
  outer: Pending | undefined;
}

/** A request as the promise entries hold it: its answer, and a way to cancel it. */
export interface Started<B = unknown> {
  readonly promise: Promise<ServingEvent<B>>;
  /** Aborts the event's work; the promise rejects with `reason`. Nothing once answered. */
  cancel(reason: unknown): void;
}

/** Cancels a request begun with `begin` (internal: no entry exports it) (its answer is `(undefined, reason)`); nothing once answered. */
export type CancelRequest = (reason: unknown) => void;

/**
 * @internal The invoker as serve()'s routes drive it: `begin` takes a callback instead of making a
 * promise, and no AbortSignal, per request (a promise, its `await` and fastify's wait on an async
 * handler cost ~2 µs of a request's CPU). Bodies are not depth-checked (the routes checked them at
 * parse).
 */
export interface RouteInvoker {
  readonly client: Invoker;
  readonly begin: (body: unknown, init: InvokeInit, answer: AnswerTo, partials?: PartialSink) => CancelRequest;
}

/** The pipeline's current subscription and the subject its events come from. */
interface Connection {
  readonly intake: Subject<ServingEvent>;
  subscription: Subscription | undefined;
  /** Set when the pipeline errored or completed: the next request subscribes again. */
  ended: Error | undefined;
}

/**
 * Request/response over a pipeline: push a body in, get the answer for that event out.
 *
 * The pipeline runs under one long-lived subscription: each request becomes an event pushed into
 * it, and its answer is the first output event with the same id. Nothing is buffered in front of
 * the pipeline, so its own limits bound the work: a full step answers at once with
 * `QueueFullError`. An event the pipeline drops (filtered out) is answered with
 * `ModelTimeoutError` after `timeoutMs`, and forgotten. Each event carries an `AbortSignal` that
 * aborts on timeout and on `init.signal`, so the work of a request nobody waits for is cancelled.
 * If the pipeline itself errors or completes, the requests awaiting answers get that error and the
 * next request subscribes again.
 *
 * ## Example
 * ```ts
 * import { createGraph, invoker } from 'rxserve';
 * const graph = createGraph();
 * const client = invoker(graph.modelRunner({ models: [echo] }), { graph, timeoutMs: 5_000 });
 * await client.test({ text: 'hi' });          // the answer's body, or throws its error
 * const event = await client.invoke({ text: 'hi' }, { id: 'r1' }); // the output ServingEvent
 * await client.close();                       // answers in flight first, then graph.close()
 * ```
 * @see serve
 * @param pipeline One step, or a `pipe()` of several, from serving events to serving events.
 * @param options The graph to close with it and the answer timeout; validated now.
 */
export function invoker(pipeline: OperatorFunction<ServingEvent, ServingEvent>, options: InvokerOptions = {}): Invoker {
  return routeInvoker(pipeline, options).client;
}

/** @internal `invoker()` with the callback entry serve()'s routes use. */
export function routeInvoker(pipeline: OperatorFunction<ServingEvent, ServingEvent>, options: InvokerOptions = {}): RouteInvoker {
  if (typeof pipeline !== 'function') {
    throw new TypeError(`invoker(pipeline): expected an operator (event$) => event$, got ${pipeline === null ? 'null' : typeof pipeline}`);
  }
  const {
    graph,
    timeoutMs = DEFAULT_TIMEOUT_MS,
    maxBodyDepth = DEFAULT_MAX_BODY_DEPTH,
    closeTimeoutMs = DEFAULT_CLOSE_TIMEOUT_MS,
  } = decodeOrThrow(InvokerOptionsCodec, options, 'invoker');
  const pipelineFlow = flowRuntimeOf(pipeline);
  // Requests whose answer did not come during their synchronous dispatch. Insertion order is
  // deadline order (one timeoutMs for all, give or take a nested dispatch's microseconds), so one
  // timer, armed for the oldest request, serves them all: no timer per request.
  const pending = new Map<string, Pending>();
  // The request being pushed into the pipeline now (innermost first, linked by `outer`). A
  // synchronous pipeline (a naive model) answers it before `next()` returns: it is matched here
  // and never enters the map. A map that fills and empties once per request is shrunk by V8 on
  // each delete (a runtime call and a new table per request).
  let dispatching: Pending | undefined;
  // Requests awaiting their answer: the map's and those being dispatched.
  let inFlight = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  // Whether the timer holds the process open: ref()/unref() reach into libuv, so they are called
  // only when this flips (a pipeline that answers each request before the next arrives would
  // otherwise pay both on every request).
  let timerHeld = false;
  let connection: Connection | undefined;
  let closing: Promise<void> | undefined;
  let drained: (() => void) | undefined;

  // The timer stays between requests (unref'd while none is pending, so it holds no process open);
  // firing early for a request already answered, it finds nothing due and re-arms.
  const arm = (): void => {
    if (timeoutMs === Infinity) return;
    if (timer !== undefined) {
      if (!timerHeld) timer.ref();
      timerHeld = true;
      return;
    }
    const oldest = pending.values().next();
    if (oldest.done) return;
    timer = setTimeout(expire, Math.max(0, oldest.value.deadline - performance.now()));
    timerHeld = true;
  };

  const expire = (): void => {
    timer = undefined;
    const now = performance.now();
    for (const p of pending.values()) {
      if (p.deadline > now) break;
      const error = new ModelTimeoutError('pipeline', timeoutMs);
      error.message = `no answer for event '${p.event.id}' within ${timeoutMs} ms; its work was aborted`;
      settle(p);
      p.cancel.abort(error);
      p.answer(withError(p.event, error, 'invoker'));
    }
    arm();
  };

  /** The request awaiting the answer with this id, if any. */
  const awaiting = (id: string): Pending | undefined => {
    for (let p = dispatching; p !== undefined; p = p.outer) if (p.event.id === id && !p.settled) return p;
    return pending.get(id);
  };

  const settle = (p: Pending): void => {
    p.settled = true;
    if (p.held) pending.delete(p.event.id);
    p.unlisten?.();
    if (--inFlight === 0) {
      if (timerHeld) timer?.unref();
      timerHeld = false;
      drained?.();
    }
  };

  const connect = (): Connection => {
    const conn: Connection = { intake: new Subject<ServingEvent>(), subscription: undefined, ended: undefined };
    const end = (error: Error): void => {
      conn.ended = error;
      if (connection === conn) connection = undefined;
      const all: Pending[] = [];
      for (let p = dispatching; p !== undefined; p = p.outer) if (!p.settled) all.push(p);
      for (const p of [...all, ...pending.values()]) {
        settle(p);
        p.answer(withError(p.event, error, 'pipeline'));
      }
    };
    connection = conn;
    conn.subscription = conn.intake.pipe(pipeline).subscribe({
      next: (out) => {
        const p = awaiting(out.id);
        // An id nobody awaits: a late answer (timed out, aborted) or a second output of one event.
        if (p === undefined) return;
        settle(p);
        p.answer(out);
      },
      error: (error: unknown) => end(toError(error)),
      complete: () => end(new RxServeError('the pipeline completed; a request arriving now subscribes it again')),
    });
    return conn;
  };

  const nothing = (): void => undefined;

  const begin = (body: unknown, init: InvokeInit, answer: AnswerTo, partials?: PartialSink): CancelRequest => {
    if (closing !== undefined) {
      answer(undefined, new RxServeError('the invoker is closed; no new requests are taken'));
      return nothing;
    }
    const id = init.id ?? newRequestId();
    if (awaiting(id) !== undefined) {
      answer(undefined, new RxServeError(`request id '${id}' is already in flight; ids of concurrent requests must differ`));
      return nothing;
    }
    // The event's cancel: steps listen to it (see CANCEL in event.ts); no AbortController is made
    // unless something asks the token for a signal.
    const token = new EventCancel();
    const event = makeEvent(
      body,
      { id, path: init.path, headers: init.headers, method: init.method, metadata: init.metadata, partials },
      token,
    );
    const p: Pending = {
      event,
      cancel: token,
      deadline: 0,
      answer,
      unlisten: undefined,
      settled: false,
      held: false,
      outer: dispatching,
    };
    inFlight++;
    const cancel = (reason: unknown): void => {
      if (p.settled) return;
      settle(p);
      token.abort(reason);
      answer(undefined, reason);
    };
    const signal = init.signal;
    if (signal !== undefined) {
      const onAbort = (): void => cancel(signal.reason);
      signal.addEventListener('abort', onAbort, { once: true });
      p.unlisten = () => signal.removeEventListener('abort', onAbort);
    }
    dispatching = p;
    try {
      const conn = connection ?? connect();
      // The pipeline failed while being subscribed (a ConfigError at subscription): this request
      // has had that error as its answer; the next one subscribes again.
      if (conn.ended === undefined) conn.intake.next(event);
    } finally {
      dispatching = p.outer;
    }
    // A synchronous pipeline has answered already: no map entry, no timer, and no clock read
    // (performance.now() is a call into node, ~50 ns). The deadline counts from the end of the
    // synchronous dispatch: the timer could not have fired during it anyway.
    if (!p.settled) {
      p.deadline = performance.now() + timeoutMs;
      pending.set(id, p);
      p.held = true;
      arm();
    }
    return cancel;
  };

  const start = <B>(body: unknown, init: InvokeInit = {}, partials?: PartialSink): Started<B> => {
    let cancel!: CancelRequest;
    const promise = new Promise<ServingEvent<B>>((resolve, reject) => {
      cancel = begin(body, init, (event, refused) => (event !== undefined ? resolve(event as ServingEvent<B>) : reject(refused)), partials);
    });
    return { promise, cancel };
  };

  // The public entries check a body's depth; serve()'s routes (which call `start`) checked it at parse.
  const checkedStart = <B>(body: unknown, init: InvokeInit = {}, partials?: PartialSink): Started<B> => {
    const problem = closing === undefined ? bodyProblem(body, { maxDepth: maxBodyDepth }) : undefined;
    if (problem === undefined) return start<B>(body, init, partials);
    const refusedEvent = withError(
      makeEvent(body, { ...init, signal: undefined }, undefined),
      new TypeError(`${problem}; the limit is maxBodyDepth`),
      'invoker',
    );
    return { promise: Promise.resolve(refusedEvent as ServingEvent<B>), cancel: () => undefined };
  };

  const invoke = <B>(body: unknown, init: InvokeInit = {}): Promise<ServingEvent<B>> =>
    init.signal?.aborted && closing === undefined ? Promise.reject(init.signal.reason) : checkedStart<B>(body, init).promise;

  const client: Invoker = {
    invoke,
    async test<B>(body: unknown, init?: InvokeInit): Promise<B> {
      const out = await invoke<B>(body, init);
      if (out.error !== undefined) throw out.error;
      return out.body;
    },
    stream<B>(body: unknown, init: Omit<InvokeInit, 'signal'> = {}): Observable<StreamMessage<B>> {
      return new Observable<StreamMessage<B>>((subscriber) => {
        let done = false;
        const started = checkedStart<B>(body, init, ({ endpoint, data }) => {
          if (!done) subscriber.next({ type: 'partial', endpoint, data });
        });
        started.promise.then(
          (event) => {
            done = true;
            subscriber.next({ type: 'result', event });
            subscriber.complete();
          },
          (error: unknown) => {
            done = true;
            subscriber.error(error);
          },
        );
        return () => {
          if (!done) {
            done = true;
            started.cancel(new DOMException('the stream was unsubscribed before its result', 'AbortError'));
          }
        };
      });
    },
    close(): Promise<void> {
      closing ??= (async () => {
        if (inFlight > 0) await new Promise<void>((resolve) => (drained = resolve));
        // A flow's side branches run on after its answers: give them closeTimeoutMs to finish
        // before the unsubscription below aborts them.
        if (connection !== undefined) {
          await Promise.all([pipelineFlow?.whenIdle(closeTimeoutMs), graph?.flowsIdle(closeTimeoutMs)]);
        }
        if (timer !== undefined) clearTimeout(timer);
        timer = undefined;
        const conn = connection;
        connection = undefined;
        // Unsubscribing aborts the work of events whose request already ended (timed out, aborted).
        conn?.subscription?.unsubscribe();
        await graph?.close();
      })();
      return closing;
    },
    get inFlight() {
      return inFlight;
    },
    get closed() {
      return closing !== undefined;
    },
  };
  return { client, begin };
}
