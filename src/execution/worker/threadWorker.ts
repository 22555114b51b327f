// The piscina worker entry for 'thread_pool': each task is a batch of model calls (or a preload).
import { BroadcastChannel, threadId } from 'node:worker_threads';
import { move, transferableSymbol, valueSymbol, workerData } from 'piscina';
import { cancelledReason, ModelHost } from './modelHost.js';
import { decodeBatch, flatten, serializeError, type FlatBatch, type WireResult } from '../wire/protocol.js';

/**
 * A piscina task of the thread_pool executor: a model to load, a batch in its one wire form, or the
 * pool's close request (one per thread: each waits on `barrier` until `threads` have arrived).
 */
export type ThreadTask =
  | { readonly kind: 'load'; readonly spec: string }
  | { readonly kind: 'close'; readonly barrier: SharedArrayBuffer; readonly threads: number; readonly waitMs: number }
  | FlatBatch;

/** What a pool made by rxserve gives its threads. */
export interface ThreadWorkerData {
  readonly rxserveSpecs: readonly string[];
  readonly rxserveCancel: SharedArrayBuffer;
  /** The channel partial results (`ctx.emit`) go to the main thread on. */
  readonly rxservePartials?: string;
}

/** How often a worker with calls in flight looks for cancellations. */
const CANCEL_POLL_MS = 5;

const data = workerData as Partial<ThreadWorkerData> | undefined;

// Partials go to the main thread on a channel of the pool; `emitted` counts them, so a batch that
// emitted any waits for the main thread to have routed them before it answers (see flushPartials).
let emitted = 0;
const flushes = new Map<string, () => void>();
let lastFlush = 0;
const partials = typeof data?.rxservePartials === 'string' ? new BroadcastChannel(data.rxservePartials) : undefined;
if (partials) {
  partials.unref();
  partials.onmessage = (message) => {
    const ack = ((message as MessageEvent).data as { ack?: string }).ack;
    if (ack !== undefined) flushes.get(ack)?.();
  };
}

const host = new ModelHost(
  'thread',
  partials &&
    ((id, partial) => {
      try {
        partials.postMessage({ type: 'partial', id, data: partial });
        emitted++;
      } catch {
        /* a partial that cannot be cloned is dropped; the call goes on */
      }
    }),
);
let flags: Int32Array | undefined;

/** Resolves once the main thread has routed every partial posted so far. */
function flushPartials(): Promise<void> {
  const token = `${threadId}:${++lastFlush}`;
  return new Promise<void>((resolve) => {
    flushes.set(token, () => {
      flushes.delete(token);
      resolve();
    });
    partials!.postMessage({ type: 'flush', token });
  });
}

// A pool made by rxserve names its models in workerData: each thread (a replacement too) loads
// them before piscina marks it ready, so no call pays for a load. Failures are reported per call
// (and by the pool's preload task); a pool of the user's own loads lazily.
const knownSpecs = data?.rxserveSpecs ?? [];
if (data?.rxserveCancel instanceof SharedArrayBuffer) flags = new Int32Array(data.rxserveCancel);
if (Array.isArray(data?.rxserveSpecs)) await Promise.all(data.rxserveSpecs.map((key: string) => host.get(key).catch(() => undefined)));

// A call is cancelled when the main thread wrote its id into its slot (ids, not booleans, so a
// reused slot cannot cancel the wrong call).
function pollCancellations(): void {
  if (!flags) return;
  for (const id of host.runningIds()) {
    if (Atomics.load(flags, id % flags.length) === id) host.cancel(id, cancelledReason());
  }
}

export default function runTask(task: ThreadTask): unknown {
  if (!Array.isArray(task)) {
    const request = task as Exclude<ThreadTask, FlatBatch>;
    return request.kind === 'close' ? close(request) : load(request.spec);
  }
  const { batch, board } = decodeBatch(task, knownSpecs);
  if (board) flags ??= new Int32Array(board);
  // Outputs holding whole ArrayBuffers travel by transfer, not by copy: the host collects them.
  const transfer: ArrayBuffer[] = [];
  const before = emitted;
  const started = host.start(batch, transfer);
  // Synchronous models answered already: nothing to wait for, nothing to cancel (piscina replies
  // to a plain value without a promise turn).
  if (started.every((r) => !(r instanceof Promise))) {
    const results = flatten(started as WireResult[]);
    return emitted === before ? reply(results, transfer) : flushPartials().then(() => reply(results, transfer));
  }
  return settleBatch(started, transfer, before);
}

/**
 * Before the pool is destroyed, every thread closes its models. This thread's close task waits
 * until every thread holds one (or `waitMs`), so that no thread takes two and another none.
 */
async function close({ barrier, threads, waitMs }: { barrier: SharedArrayBuffer; threads: number; waitMs: number }): Promise<unknown> {
  const arrived = new Int32Array(barrier);
  Atomics.add(arrived, 0, 1);
  const deadline = Date.now() + waitMs;
  while (Atomics.load(arrived, 0) < threads && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 1));
  await host.close();
  return { closed: true };
}

async function load(spec: string): Promise<unknown> {
  try {
    await host.get(spec);
    return { ok: true };
  } catch (error) {
    return { ok: false, error: serializeError(error) };
  }
}

/** Waits for a batch's asynchronous calls, looking for cancellations meanwhile. */
async function settleBatch(started: (WireResult | Promise<WireResult>)[], transfer: ArrayBuffer[], before: number): Promise<unknown> {
  const timer = setInterval(pollCancellations, CANCEL_POLL_MS);
  try {
    const results = flatten(await Promise.all(started));
    if (emitted !== before) await flushPartials();
    return reply(results, transfer);
  } finally {
    clearInterval(timer);
  }
}

function reply(results: unknown[], transfer: ArrayBuffer[]): unknown {
  if (transfer.length === 0) return results;
  // move() marks the wrapper so piscina sends `valueSymbol` with `transferableSymbol` transferred.
  return move({ [transferableSymbol]: transfer, [valueSymbol]: results });
}
