// Main-side machinery shared by the worker mechanisms: calls become Observables, are batched
// while the workers are busy, cancelled cooperatively, and their worker terminated only when a
// call ignores the cancel past a grace period.
import { Observable, type Subscriber } from 'rxjs';
import { WorkerCrashedError } from '../errors.js';
import type { PredictContext } from '../model/model.js';
import type { CallResult, ExecutorSession } from './executor.js';
import { deserializeError, type WireBatch, type WireCall, type WireResult } from './protocol.js';

/** A batch handed to a transport. */
export interface SentBatch {
  /** One result per call; rejects (with `WorkerCrashedError`) when its worker died or was terminated. */
  readonly done: Promise<readonly WireResult[]>;
  /** Asks the worker to abort one call's signal (cooperative). */
  cancel(callId: number): void;
  /** Stops whatever runs the batch (terminates the thread, kills the process). */
  terminate(reason: string): void;
}

/** How batches reach workers: piscina threads or child processes. */
export interface BatchTransport {
  /** Whether a batch can be sent now (a worker is ready and not saturated). */
  canSend(): boolean;
  /** How many batches the workers hold at once when all are up (threads or processes × 2). */
  readonly slots: number;
  send(batch: WireBatch, transfer: ArrayBuffer[]): SentBatch;
  /** Called by the transport when capacity frees up without a batch completing (a worker became ready). */
  onCapacity?: () => void;
  readonly ready?: PromiseLike<void>;
  /** Whether inputs should be copied and their buffers transferred (threads), or sent as they are. */
  readonly transfersInputs: boolean;
  /** What the workers are, for messages: 'thread' or 'process'. */
  readonly workerKind: 'thread' | 'process';
  close(): Promise<void>;
}

export interface PooledOptions {
  /** Calls per message at most; batches form only while the workers are busy. */
  readonly maxBatch: number;
  /** How long a cancelled call may keep running before its worker is terminated. */
  readonly cancelGraceMs: number;
}

let lastCallId = 0;
const nextCallId = (): number => (lastCallId = lastCallId >= 0x7fffffff ? 1 : lastCallId + 1);

interface PendingCall {
  readonly id: number;
  readonly endpoint: string;
  readonly specKey: string;
  readonly input: unknown;
  readonly context: PredictContext;
  readonly subscriber: Subscriber<unknown>;
  state: 'queued' | 'sent' | 'done';
  batch?: SentBatch;
  grace?: ReturnType<typeof setTimeout>;
}

/**
 * An executor session over a batch transport. While fewer batches are out than the workers can
 * take, each call leaves at once as a batch of one (low latency); once they are busy, calls wait
 * and leave together, up to `maxBatch` per message (throughput under load).
 */
export class PooledSession implements ExecutorSession {
  readonly ready?: PromiseLike<void>;
  private readonly queue: PendingCall[] = [];
  private pumping = false;
  private closed = false;

  constructor(
    private readonly specKeys: ReadonlyMap<string, string>,
    private readonly transport: BatchTransport,
    private readonly options: PooledOptions,
    /** Prepares an input for sending: what to send, what to transfer, and what cannot be sent. */
    private readonly collect: (input: unknown) => { input: unknown; transfer: ArrayBuffer[]; problem?: string },
  ) {
    if (transport.ready) this.ready = transport.ready;
    transport.onCapacity = () => this.pump();
  }

  copiesInput(): boolean {
    return true;
  }

  invoke(endpointName: string, input: unknown, context: PredictContext): CallResult {
    const specKey = this.specKeys.get(endpointName)!;
    return new Observable<unknown>((subscriber) => {
      if (this.closed) {
        subscriber.error(new WorkerCrashedError(`the pool of '${endpointName}' is closed`));
        return undefined;
      }
      const call: PendingCall = { id: nextCallId(), endpoint: endpointName, specKey, input, context, subscriber, state: 'queued' };
      this.queue.push(call);
      this.pump();
      return () => this.cancel(call);
    });
  }

  private cancel(call: PendingCall): void {
    if (call.state !== 'sent') {
      call.state = 'done'; // a queued call is skipped when its batch is formed
      return;
    }
    call.state = 'done';
    const batch = call.batch!;
    batch.cancel(call.id);
    call.grace = setTimeout(
      () => batch.terminate(`a call ignored cancellation for ${this.options.cancelGraceMs} ms`),
      this.options.cancelGraceMs,
    );
    call.grace.unref?.();
  }

  private pump(): void {
    if (this.pumping || this.closed) return;
    this.pumping = true;
    try {
      while (this.queue.length > 0 && this.transport.canSend()) {
        // Spread what waits over the batch slots rather than filling one batch: a worker runs a
        // batch's synchronous calls one after another, so one big batch would leave the other
        // workers idle (CPU-bound models would not scale).
        const size = Math.min(this.options.maxBatch, Math.ceil(this.queue.length / this.transport.slots));
        const calls: PendingCall[] = [];
        while (this.queue.length > 0 && calls.length < size) {
          const call = this.queue.shift()!;
          if (call.state === 'queued') calls.push(call);
        }
        if (calls.length > 0) this.sendBatch(calls);
      }
    } finally {
      this.pumping = false;
    }
  }

  private sendBatch(batchCalls: PendingCall[]): void {
    const specs: string[] = [];
    const specIndex = new Map<string, number>();
    const transfer: ArrayBuffer[] = [];
    const calls: PendingCall[] = [];
    const wire: WireCall[] = [];
    for (const call of batchCalls) {
      const prepared = this.collect(call.input);
      if (prepared.problem !== undefined) {
        // This input cannot cross to a worker: it fails alone, the rest of the batch goes.
        call.state = 'done';
        call.subscriber.error(
          new TypeError(
            `the input of model '${call.endpoint}' cannot be copied to a worker ${this.transport.workerKind}: ${prepared.problem}, which structured clone cannot copy`,
          ),
        );
        continue;
      }
      let index = specIndex.get(call.specKey);
      if (index === undefined) {
        index = specs.push(call.specKey) - 1;
        specIndex.set(call.specKey, index);
      }
      transfer.push(...prepared.transfer);
      const { context } = call;
      calls.push(call);
      wire.push({
        id: call.id,
        spec: index,
        input: prepared.input,
        eventId: context.eventId,
        origin: context.origin,
        ...(context.path !== undefined ? { path: context.path } : {}),
      });
    }
    if (calls.length === 0) return;
    let batch: SentBatch;
    try {
      batch = this.transport.send({ specs, calls: wire }, transfer);
    } catch (error) {
      for (const call of calls) call.subscriber.error(error);
      return;
    }
    for (const call of calls) {
      call.state = 'sent';
      call.batch = batch;
    }
    batch.done.then(
      (results) => {
        calls.forEach((call, i) => this.deliver(call, results[i]));
        this.pump();
      },
      (error: unknown) => {
        for (const call of calls) this.deliver(call, undefined, error);
        this.pump();
      },
    );
  }

  private deliver(call: PendingCall, result: WireResult | undefined, failure?: unknown): void {
    if (call.grace) clearTimeout(call.grace);
    if (call.state === 'done') return;
    call.state = 'done';
    if (result === undefined) {
      // Transports fail a batch with WorkerCrashedError (the worker died) or a TypeError (the batch
      // could not be sent); anything else is reported as a crash.
      call.subscriber.error(
        failure instanceof WorkerCrashedError || failure instanceof TypeError ? failure : new WorkerCrashedError(String(failure), { cause: failure }),
      );
    } else if (result.ok) {
      call.subscriber.next(result.value);
      call.subscriber.complete();
    } else {
      call.subscriber.error(deserializeError(result.error));
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const call of this.queue) {
      if (call.state === 'queued') {
        call.state = 'done';
        call.subscriber.error(new WorkerCrashedError('the pool was closed before the call started'));
      }
    }
    this.queue.length = 0;
    await this.transport.close();
  }
}
