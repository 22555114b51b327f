// A shared model: one session and one lane for every proxy of the graph. Requests of all proxies
// arrive on one subject (the model's intake); each answer goes back to its caller by call id.
import { Observable, Subject, type Subscriber } from 'rxjs';
import { ConfigError, RxServeError, toError } from '../errors.js';
import { createDefaultExecutor } from '../execution/defaultExecutor.js';
import type { Executor, ExecutorSession } from '../execution/executor.js';
import type { LLMPromptArtifact, ModelArtifact } from '../model/artifact.js';
import { CallContext, listens } from '../model/callContext.js';
import type { ModelEntry } from '../model/entry.js';
import type { PredictContext } from '../model/model.js';
import { Lane, LaneCall, type LaneUnit } from '../execution/lane.js';
import { batches, runBatch } from '../execution/batch.js';
import { onResult } from '../execution/callResult.js';

/** A request to a shared model, as it travels on the intake subject. */
type SharedRequest = { readonly kind: 'call'; readonly call: SharedCall } | { readonly kind: 'cancel'; readonly id: number };

/** One proxy call inside the shared model's lane. */
class SharedCall extends LaneCall {
  readonly context: CallContext;
  constructor(
    readonly model: SharedModel,
    readonly id: number,
    readonly input: unknown,
    origin: string,
    caller: PredictContext,
  ) {
    super();
    // Partials go to this proxy call's own caller only.
    const emit = listens(caller) ? caller.emit!.bind(caller) : undefined;
    this.context = new CallContext(caller.eventId, origin, caller.path, emit, caller.operation);
  }

  abort(reason: unknown): void {
    this.context.abort(reason);
  }

  settled(value: unknown, error: Error | undefined): void {
    this.model.answer(this.id, value, error);
  }
}

/** Serves one shared model to every proxy of a graph (see `graph.addSharedModel`). */
export class SharedModel {
  /** Proxy endpoint name → its artifact (an LLModel picks the caller's prompt by `ctx.origin`). */
  readonly proxies = new Map<string, ModelArtifact | LLMPromptArtifact | undefined>();
  ready: PromiseLike<void> | undefined;
  readonly #requests = new Subject<SharedRequest>();
  /** Callers waiting for an answer, by call id. */
  readonly #callers = new Map<number, { call: SharedCall; subscriber: Subscriber<unknown> }>();
  readonly #lane: Lane<SharedCall>;
  #session: ExecutorSession | undefined;
  #opened = false;
  #closed = false;
  #nextId = 0;

  constructor(
    readonly entry: ModelEntry,
    maxInFlight: number,
    private readonly graphName: string,
  ) {
    this.#lane = new Lane<SharedCall>({
      name: `shared model '${entry.endpointName}'`,
      maxInFlight,
      // Calls of every proxy batch together in the shared model's lane.
      ...(entry.batching ? { batching: entry.batching } : {}),
      run: (calls, unit) => {
        // Only predict calls batch: another operation (explain, op_*) runs alone.
        const predicts = calls.length > 1 && batches(this.#session!) ? calls.filter((c) => c.context.operation === undefined) : [];
        if (predicts.length > 1) {
          this.#startBatch(predicts, unit);
          for (const call of calls) if (call.context.operation !== undefined) this.#start(call);
        } else for (const call of calls) this.#start(call);
      },
    });
    // Nothing runs before the session is open and its model loaded.
    this.#lane.pause();
    this.#requests.subscribe((request) => {
      if (request.kind === 'call') this.#lane.submit(request.call);
      else {
        const caller = this.#callers.get(request.id);
        if (caller === undefined) return;
        this.#callers.delete(request.id);
        this.#lane.cancel(caller.call, new DOMException('the proxy call was cancelled', 'AbortError'));
      }
    });
  }

  /** Opens the model's session once (one instance: worker mechanisms get one thread/process). */
  open(): PromiseLike<void> | undefined {
    if (this.#opened) return this.ready;
    this.#opened = true;
    const hooks = { step: `shared model '${this.entry.endpointName}'`, fail: (error: Error) => this.#lane.failAll(error) };
    const params = {
      ...this.entry.params,
      proxyArtifacts: Object.fromEntries([...this.proxies].map(([name, artifact]) => [name, artifact ?? null])),
    };
    const single = { maxThreads: 1, maxProcesses: 1, poolFactor: 1 };
    this.#session = createDefaultExecutor(single).open([{ ...this.entry, params }], hooks);
    this.ready = this.#session.ready;
    if (this.ready === undefined) this.#lane.resume();
    else
      this.ready.then(
        () => this.#lane.resume(),
        (error: unknown) => this.#lane.failAll(toError(error)),
      );
    return this.ready;
  }

  /** A proxy's call: the request goes on the intake; the answer comes back by its id. */
  call(origin: string, input: unknown, context: PredictContext): Observable<unknown> {
    return new Observable<unknown>((subscriber) => {
      if (this.#closed || !this.#opened) {
        subscriber.error(
          new RxServeError(
            `shared model '${this.entry.endpointName}' is ${this.#closed ? `closed (graph '${this.graphName}' was closed)` : `not open (graph '${this.graphName}' is not ready)`}`,
          ),
        );
        return undefined;
      }
      const id = ++this.#nextId;
      const call = new SharedCall(this, id, input, origin, context);
      this.#callers.set(id, { call, subscriber });
      this.#requests.next({ kind: 'call', call });
      return () => {
        if (this.#callers.has(id)) this.#requests.next({ kind: 'cancel', id });
      };
    });
  }

  /** @internal The lane settled a call: answer its caller. */
  answer(id: number, value: unknown, error: Error | undefined): void {
    const caller = this.#callers.get(id);
    if (caller === undefined) return;
    this.#callers.delete(id);
    if (error === undefined) {
      caller.subscriber.next(value);
      caller.subscriber.complete();
    } else caller.subscriber.error(error);
  }

  #start(call: SharedCall): void {
    const cancel = onResult(
      () => this.#session!.invoke(this.entry.endpointName, call.input, call.context),
      (value) => this.#lane.settle(call, value, undefined),
      (error) => this.#lane.settle(call, undefined, toError(error ?? new Error('failed'))),
    );
    if (!call.done) call.cancelWork = cancel;
  }

  #startBatch(calls: readonly SharedCall[], unit: LaneUnit): void {
    const name = this.entry.endpointName;
    runBatch(
      name,
      this.#lane,
      unit,
      calls,
      calls.map((c) => c.input),
      calls.map((c) => c.context),
      (inputs, contexts) => this.#session!.invokeBatch!(name, inputs, contexts),
    );
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#lane.failAll(new RxServeError(`graph '${this.graphName}' was closed`));
    try {
      await this.#session?.close();
    } finally {
      this.#requests.complete();
    }
  }
}

/** The executor of proxy entries ('shared_executor'): their calls go to their shared models. */
export function sharedModelExecutor(find: (name: string) => SharedModel): Executor {
  return {
    open: (models: readonly ModelEntry[]): ExecutorSession => {
      const servers = new Map(models.map((m) => [m.endpointName, find(m.sharedModelName!)]));
      for (const server of servers.values()) server.open();
      const pending = [...new Set(servers.values())].map((s) => s.ready).filter((r) => r !== undefined);
      return {
        ...(pending.length ? { ready: Promise.all(pending).then(() => undefined) } : {}),
        invoke: (endpointName, input, context) => servers.get(endpointName)!.call(endpointName, input, context),
        // the shared model belongs to the graph: a step ending does not close it
        close: () => undefined,
      };
    },
  };
}

/** The artifact URI a proxy or shared model is matched by: a prompt's parent model URI. */
function matchUri(artifact: ModelArtifact | LLMPromptArtifact | string | undefined): string | undefined {
  // A path given as an entry's artifact was read by decodeModelEntries: a string is never seen here.
  if (artifact === undefined || typeof artifact === 'string') return undefined;
  if ('model' in artifact && artifact.model !== undefined) return artifact.model.uri ?? artifact.model.key;
  return artifact.uri ?? artifact.key;
}

/** The shared models of a graph, for messages: `'llm' (uri 'store://...')`, or `none`. */
export function describeShared(shared: ReadonlyMap<string, SharedModel>): string {
  const list = [...shared.values()].map((s) => {
    const uri = matchUri(s.entry.modelArtifact);
    return `'${s.entry.endpointName}'${uri ? ` (uri '${uri}')` : ''}`;
  });
  return list.length ? list.join(', ') : 'none';
}

/**
 * The shared model a proxy reaches: by its artifact's URI (a prompt artifact: its parent model's),
 * else by `sharedModelName`. A `ConfigError` names the field when none matches or they disagree.
 */
export function findSharedModel(
  shared: ReadonlyMap<string, SharedModel>,
  artifact: ModelArtifact | LLMPromptArtifact | undefined,
  sharedModelName: string | undefined,
): SharedModel {
  const uri = matchUri(artifact);
  let server: SharedModel | undefined;
  if (uri !== undefined) {
    server = [...shared.values()].find((s) => matchUri(s.entry.modelArtifact) === uri);
    if (server === undefined) {
      throw new ConfigError([
        {
          path: 'sharedModelProxy.modelArtifact',
          expected: `the artifact of a shared model (shared: ${describeShared(shared)})`,
          actual: `uri '${uri}'`,
        },
      ]);
    }
    if (sharedModelName !== undefined && sharedModelName !== server.entry.endpointName) {
      throw new ConfigError([
        {
          path: 'sharedModelProxy.sharedModelName',
          expected: `'${server.entry.endpointName}', the shared model whose artifact is '${uri}'`,
          actual: `'${sharedModelName}'`,
        },
      ]);
    }
  } else if (sharedModelName !== undefined) {
    server = shared.get(sharedModelName);
    if (server === undefined) {
      throw new ConfigError([
        {
          path: 'sharedModelProxy.sharedModelName',
          expected: `the name of a shared model (shared: ${describeShared(shared)})`,
          actual: `'${sharedModelName}'`,
        },
      ]);
    }
  } else {
    throw new ConfigError([{ path: 'sharedModelProxy', expected: 'a modelArtifact or a sharedModelName to find the shared model by' }]);
  }
  return server;
}
