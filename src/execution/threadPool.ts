// 'thread_pool': models run on piscina worker threads, several calls per task when busy.
import { randomUUID } from 'node:crypto';
import { BroadcastChannel } from 'node:worker_threads';
import { pathToFileURL } from 'node:url';
import { Piscina } from 'piscina';
import { cloneBody } from './clone.js';
import { ModelLoadError, WorkerCrashedError, toError } from '../errors.js';
import type { ModelEntry } from '../model/entry.js';
import { workerEntry } from './workerEntry.js';
import type { Executor, ExecutorHooks, ExecutorSession } from './executor.js';
import { PooledSession, routePartial, type BatchReceiver, type BatchTransport, type SentBatch } from './pooled.js';
import { deserializeError, encodeBatch, inspectForWorker, type SerializedError, type WireBatch } from './wire/protocol.js';
import { resolvePoolOptions, type PoolOptions } from './poolOptions.js';
import { workerSpecKey } from './specs.js';
import type { ThreadTask, ThreadWorkerData } from './worker/threadWorker.js';

// One cancel board for the whole process: a call is cancelled by writing its id into its slot.
const CANCEL_SLOTS = 1 << 16;
const cancelFlags = new SharedArrayBuffer(4 * CANCEL_SLOTS);
const cancelBoard = new Int32Array(cancelFlags);

/**
 * The 'thread_pool' executor: one piscina pool per session (or the user's own `pool.piscina`,
 * which is then not destroyed), sized `min(models × poolFactor, maxThreads)`.
 */
export function threadPoolExecutor(options: PoolOptions = {}): Executor {
  return {
    open(models: readonly ModelEntry[], hooks: ExecutorHooks): ExecutorSession {
      const resolved = resolvePoolOptions(options);
      const specKeys = new Map(models.map((m) => [m.endpointName, workerSpecKey(m, hooks.step)]));
      const threads = Math.max(1, Math.min(models.length * resolved.poolFactor, resolved.maxThreads));
      const own = options.piscina === undefined;
      const partialsChannel = own ? `rxserve-partials-${randomUUID()}` : undefined;
      const specList = [...new Set(specKeys.values())];
      let transport: ThreadTransport | undefined;
      const pool: Piscina =
        options.piscina ??
        new Piscina({
          filename: pathToFileURL(workerEntry('threadWorker')).href,
          minThreads: threads,
          maxThreads: threads,
          // An idle thread waits in Atomics.wait and wakes on a futex when a task comes: ~8–12 µs
          // less per call at low load than 'async' (an event-loop wake-up; issue 26 goal 4). Its
          // event loop is parked meanwhile, so the close request comes as a task too (close()).
          atomics: 'sync',
          // rxserve keeps its own lane figures; piscina's histograms would cost each task a record.
          recordTiming: false,
          ...(specList.length === 1 ? { loadBalancer: nextBatchOnThread(() => transport?.cancelling === 0) } : {}),
          // Threads of a pool of our own know the specs and the cancel board from the start, so a
          // task names its models by index and carries no SharedArrayBuffer.
          workerData: {
            rxserveSpecs: specList,
            rxserveCancel: cancelFlags,
            rxservePartials: partialsChannel,
          } satisfies ThreadWorkerData,
        });
      transport = new ThreadTransport(
        pool,
        own,
        own ? threads : pool.options.maxThreads,
        models,
        specKeys,
        hooks,
        own ? specList : undefined,
      );
      if (partialsChannel !== undefined) transport.partials = listenForPartials(partialsChannel);
      return new PooledSession(specKeys, transport, resolved, prepareForThread);
    },
  };
}

/** The transfer list of a body with no buffer in it: one shared list, read only, not one per call. */
const NOTHING_TO_TRANSFER = Object.freeze([]) as unknown as ArrayBuffer[];

// Inputs holding whole ArrayBuffers are copied once here and transferred; other inputs are
// copied by postMessage itself, so copying them here too would be wasted work. The same walk
// finds what postMessage would refuse, so that input fails alone.
function prepareForThread(input: unknown): { input: unknown; transfer: ArrayBuffer[]; problem?: string } {
  if (smallPlainData(input)) return { input, transfer: NOTHING_TO_TRANSFER };
  const inspection = inspectForWorker(input, 'input');
  if (inspection.problem !== undefined) return { input, transfer: [], problem: inspection.problem };
  if (inspection.transfer.length === 0) return { input, transfer: [] };
  const copy = cloneBody(input);
  return { input: copy, transfer: inspectForWorker(copy, 'input').transfer };
}

/** Values the quick look reads at most before it leaves a body to the full inspection. */
const QUICK_LOOK = 256;
let quickLookLeft = 0;

/**
 * Whether `value` is small plain data: primitives, plain objects and arrays, at most `QUICK_LOOK`
 * values in all. Such a body has nothing to transfer and nothing structured clone refuses, which
 * `inspectForWorker` would also find, with a Set, a stack and a path string per object (~0.3 µs of
 * a ~3 µs main-thread path per call at low load; issue 26 goal 4). Anything else — a class instance,
 * a typed array, a Map, a cycle, a big body — gets the full inspection.
 */
function smallPlainData(value: unknown): boolean {
  quickLookLeft = QUICK_LOOK;
  return plainValue(value);
}

function plainValue(value: unknown): boolean {
  if (--quickLookLeft < 0) return false;
  if (value === null) return true;
  const type = typeof value;
  if (type !== 'object') return type !== 'function' && type !== 'symbol';
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) if (!plainValue(value[i])) return false;
    return true;
  }
  const proto: unknown = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) return false;
  // Own enumerable string keys, as inspectForWorker and structured clone read them.
  const keys = Object.keys(value as object);
  for (let i = 0; i < keys.length; i++) if (!plainValue((value as Record<string, unknown>)[keys[i]])) return false;
  return true;
}

/**
 * The main side of a pool's partials channel: threads post `{ type: 'partial', id, data }` (to the
 * call's `ctx.emit`) and, before a batch that emitted answers, `{ type: 'flush', token }`; the
 * answer `{ ack: token }` tells the thread that every partial before it has been routed, so no
 * partial arrives after its call's result (piscina's results travel on another port).
 */
function listenForPartials(name: string): BroadcastChannel {
  const channel = new BroadcastChannel(name);
  channel.unref();
  channel.onmessage = (message) => {
    const data = (message as MessageEvent).data as
      { type: 'partial'; id: number; data: unknown } | { type: 'flush'; token: string } | { ack: string };
    if (!('type' in data)) return;
    if (data.type === 'partial') routePartial(data.id, data.data);
    else channel.postMessage({ ack: data.token });
  };
  return channel;
}

class ThreadTransport implements BatchTransport {
  /** The partials channel of a pool of our own. */
  partials: BroadcastChannel | undefined = undefined;
  readonly ready: Promise<void>;
  readonly workerKind = 'thread';
  readonly slots: number;
  /**
   * How a batch names a spec: its index in the threads' workerData (a pool of our own) or its key
   * (made once, not per batch); a pool of the user's own also gets the cancel board with each batch.
   */
  private readonly specRef: (key: string) => number | string;
  private readonly board: SharedArrayBuffer | undefined;
  /** Batches sent with a call asked to cancel, not answered yet: their thread may be terminated (see nextBatchOnThread). */
  cancelling = 0;

  constructor(
    private readonly pool: Piscina,
    /** rxserve made the pool: close() closes its threads' models and destroys it. */
    private readonly own: boolean,
    threads: number,
    models: readonly ModelEntry[],
    specKeys: ReadonlyMap<string, string>,
    hooks: ExecutorHooks,
    knownSpecs: readonly string[] | undefined,
  ) {
    const specIndex = knownSpecs && new Map(knownSpecs.map((key, i) => [key, i]));
    this.specRef = specIndex ? (key) => specIndex.get(key)! : (key) => key;
    this.board = specIndex ? undefined : cancelFlags;
    // Two batches per thread: the next one is queued when the current one ends.
    this.slots = threads * 2;
    // Load every model once up front, so a model that cannot load fails the pipeline at start.
    this.ready = Promise.all(
      models.map(async (m) => {
        const result = (await pool.run({ kind: 'load', spec: specKeys.get(m.endpointName)! } satisfies ThreadTask)) as
          { ok: true } | { ok: false; error: SerializedError };
        if (!result.ok) {
          const error = deserializeError(result.error);
          throw error instanceof ModelLoadError ? error : new ModelLoadError(m.endpointName, error.message, { cause: error });
        }
      }),
    ).then(
      () => undefined,
      (error: unknown) => {
        const failure =
          error instanceof ModelLoadError ? error : new ModelLoadError(models[0].endpointName, toError(error).message, { cause: error });
        hooks.fail(failure);
        throw failure;
      },
    );
    this.ready.catch(() => undefined);
  }

  /** piscina queues what its threads cannot take yet; the lane keeps at most `slots` batches out. */
  canSend(): true {
    return true;
  }

  send(batch: WireBatch, transfer: ArrayBuffer[], receiver: BatchReceiver): SentBatch {
    // One wire form for both kinds of pool (see specRef).
    const task: ThreadTask = encodeBatch(batch, this.specRef, this.board);
    return new ThreadBatch(this.pool, task, transfer, batch.calls.length, receiver, this);
  }

  /**
   * Asks every thread to close its models (model.close()), waits for them (at most
   * CLOSE_TIMEOUT_MS), then destroys the pool. A pool of the user's own is left running.
   * The request is one task per thread: piscina gives a busy thread no second task, and each
   * close task holds its thread until every thread has one (a shared counter), so each thread
   * gets exactly one.
   */
  async close(): Promise<void> {
    this.partials?.close();
    if (!this.own) return;
    const threads = this.pool.threads.length;
    if (threads > 0) {
      const barrier = new SharedArrayBuffer(4);
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        Promise.all(
          Array.from({ length: threads }, () =>
            this.pool.run({ kind: 'close', barrier, threads, waitMs: CLOSE_TIMEOUT_MS } satisfies ThreadTask).catch(() => undefined),
          ),
        ),
        new Promise<void>((resolve) => (timer = setTimeout(resolve, CLOSE_TIMEOUT_MS))),
      ]);
      clearTimeout(timer);
    }
    await this.pool.destroy();
  }
}

const CLOSE_TIMEOUT_MS = 2_000;

/**
 * piscina's own balancer, except that a batch may also go to a thread that runs one batch (the
 * lane keeps two per thread): the thread then starts it as soon as the first one ends. piscina
 * gives a thread running an abortable task (every batch: see ThreadBatch) nothing more, so the
 * second batch waited on the main side until the first one's answer was read, and each batch paid
 * the answer's trip to the main thread and the thread's wake-up from Atomics.wait with both sides
 * idle (issue 26 goal 3: batched ONNX at ~0.5-0.7× a hand-written server that posts both batches).
 * A thread terminated for a call that ignored its cancel fails the batch behind it too, so: only
 * in a pool of one model's threads (that batch is never another model's), and not while a batch
 * with a cancelled call is out (`shareable`: a batch sent then waits for a thread that is not
 * about to be terminated, as before). Load and close tasks (not abortable) go to idle threads only.
 */
function nextBatchOnThread(shareable: () => boolean): NonNullable<NonNullable<ConstructorParameters<typeof Piscina>[0]>['loadBalancer']> {
  return (task, workers) => {
    let second = null;
    for (const worker of workers) {
      if (worker.currentUsage === 0) return worker;
      if (second === null && task.isAbortable && worker.isRunningAbortableTask) second = worker;
    }
    return second !== null && shareable() ? second : null;
  };
}

/**
 * A batch sent to a piscina thread. It is also the task's signal, in the EventEmitter form piscina
 * accepts (`aborted`, `once('abort')`, `removeListener`), which piscina aborts by terminating the
 * thread: one object per batch, no closures, where an AbortController and the SentBatch's own
 * functions cost an EventTarget, its listener bookkeeping and three closures on every task (and a
 * batch is almost never terminated).
 */
class ThreadBatch implements SentBatch {
  aborted = false;
  /** Read by piscina for its AbortError; none given (the crash error names the reason). */
  readonly reason: unknown = undefined;
  private listener: (() => void) | undefined = undefined;
  /** Why `terminate` was called, for the error its calls fail with. */
  private terminated: string | undefined = undefined;
  /** A call of this batch was asked to cancel (counted once in the transport's `cancelling`). */
  private cancelled = false;

  constructor(
    pool: Piscina,
    task: ThreadTask,
    transfer: ArrayBuffer[],
    private readonly size: number,
    receiver: BatchReceiver,
    private readonly transport: { cancelling: number },
  ) {
    // The flat reply goes to the receiver as it came (no result object per call).
    void pool.run(task, { signal: this as never, transferList: transfer }).then(
      (reply: unknown[]) => {
        this.settled();
        receiver.answered(reply);
      },
      (error: unknown) => {
        this.settled();
        receiver.failed(this.failure(error));
      },
    );
  }

  cancel(id: number): void {
    if (!this.cancelled) {
      this.cancelled = true;
      this.transport.cancelling++;
    }
    Atomics.store(cancelBoard, id % CANCEL_SLOTS, id);
  }

  /** Answered or failed: its thread is no longer at risk of termination on its account. */
  private settled(): void {
    if (this.cancelled) this.transport.cancelling--;
    this.cancelled = false;
  }

  terminate(reason: string): void {
    this.terminated = reason;
    if (this.aborted) return;
    this.aborted = true;
    const listener = this.listener;
    this.listener = undefined;
    listener?.();
  }

  once(_event: 'abort', listener: () => void): void {
    this.listener = listener;
  }

  removeListener(): void {
    this.listener = undefined;
  }

  private failure(error: unknown): Error {
    // postMessage refused the batch (something the inspection did not foresee): the thread is fine.
    if (error instanceof Error && error.name === 'DataCloneError') {
      return new TypeError(`a batch of ${this.size} call(s) could not be copied to a worker thread: ${error.message}`, { cause: error });
    }
    return new WorkerCrashedError(
      this.terminated !== undefined
        ? `worker thread terminated: ${this.terminated}`
        : `worker thread died while running ${this.size} call(s): ${toError(error).message}`,
      { cause: error },
    );
  }
}
