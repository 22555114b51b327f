// The piscina worker entry for 'thread_pool': each task is a batch of model calls (or a preload).
import { BroadcastChannel } from 'node:worker_threads';
import { move, transferableSymbol, valueSymbol, workerData } from 'piscina';
import { cancelledReason, ModelHost } from './host.js';
import { collectTransferables, serializeError, type WireBatch, type WireResult } from './protocol.js';

/** A piscina task of the thread_pool executor. */
export type ThreadTask =
  | { readonly kind: 'load'; readonly spec: string }
  | { readonly kind: 'run'; readonly batch: WireBatch; readonly cancelFlags: SharedArrayBuffer };

/** How often a worker with calls in flight looks for cancellations. */
const CANCEL_POLL_MS = 5;

const host = new ModelHost();
let flags: Int32Array | undefined;

// A pool made by rxserve names its models in workerData: each thread (a replacement too) loads
// them before piscina marks it ready, so no call pays for a load. Failures are reported per call
// (and by the pool's preload task); a pool of the user's own loads lazily.
const data = workerData as { rxserveSpecs?: string[]; rxserveClose?: string } | undefined;
if (Array.isArray(data?.rxserveSpecs)) await Promise.all(data.rxserveSpecs.map((key) => host.get(key).catch(() => undefined)));

// Before the pool is destroyed, the main thread asks every thread to close its models.
if (typeof data?.rxserveClose === 'string') {
  const channel = new BroadcastChannel(data.rxserveClose);
  channel.unref();
  channel.onmessage = () => {
    void host.close().finally(() => channel.postMessage('closed'));
  };
}

// A call is cancelled when the main thread wrote its id into its slot (ids, not booleans, so a
// reused slot cannot cancel the wrong call).
function pollCancellations(): void {
  if (!flags) return;
  for (const id of host.runningIds()) {
    if (Atomics.load(flags, id % flags.length) === id) host.cancel(id, cancelledReason());
  }
}

export default async function runTask(task: ThreadTask): Promise<unknown> {
  if (task.kind === 'load') {
    try {
      await host.get(task.spec);
      return { ok: true };
    } catch (error) {
      return { ok: false, error: serializeError(error) };
    }
  }
  flags ??= new Int32Array(task.cancelFlags);
  const timer = setInterval(pollCancellations, CANCEL_POLL_MS);
  let results: WireResult[];
  try {
    results = await host.run(task.batch);
  } finally {
    clearInterval(timer);
  }
  // Outputs holding whole ArrayBuffers travel by transfer, not by copy.
  const transfer = collectTransferables(results);
  if (transfer.length === 0) return results;
  // move() marks the wrapper so piscina sends `valueSymbol` with `transferableSymbol` transferred.
  return move({ [transferableSymbol]: transfer, [valueSymbol]: results } as never);
}
