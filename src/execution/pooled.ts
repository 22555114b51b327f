// Main-side machinery shared by the worker mechanisms: calls wait in one lane whose slots are the
// workers' batch slots; while workers are busy, waiting calls leave together as one batch. Calls
// are cancelled cooperatively, and their worker terminated only when a call ignores the cancel
// past a grace period.
import { Observable, Subscriber } from 'rxjs';
import { WorkerCrashedError } from '../errors.js';
import { listens } from '../model/callContext.js';
import type { PredictContext } from '../model/model.js';
import type { CallResult, ExecutorSession } from './executor.js';
import { wireCodec, type WireCodec } from './wire/builtinCodecs.js';
import { Lane, LaneCall, type LaneUnit } from './lane.js';
import {
  CONTEXT_FIELDS,
  deserializeError,
  inspectForWorker,
  type SerializedError,
  type WireBatch,
  type WireCall,
} from './wire/protocol.js';

/**
 * Where a transport reports a batch's outcome, exactly once and never from within `send`. An
 * object the session passes in, not a promise it chains on: a `.then` of the session's own after
 * the transport's was one more microtask, promise and two closures per call, all on the latency
 * of a call at low load (issue 26 goal 4).
 */
export interface BatchReceiver {
  /** The worker's reply: flat `[ok, value | SerializedError, ...]`, one pair per call (`flatten`). */
  answered(reply: unknown[]): void;
  /** The batch failed whole: `WorkerCrashedError` (its worker died or was terminated) or a TypeError (it could not be sent). */
  failed(error: unknown): void;
}

/** A batch handed to a transport. */
export interface SentBatch {
  /** Asks the worker to abort one call's signal (cooperative). */
  cancel(callId: number): void;
  /** Stops whatever runs the batch (terminates the thread, kills the process). */
  terminate(reason: string): void;
}

/** How batches reach workers: piscina threads or child processes. */
export interface BatchTransport {
  /**
   * Whether a batch can be sent now (a worker is ready and not saturated): `true`, or a promise
   * that settles when it may be worth asking again (a worker became ready).
   */
  canSend(): true | PromiseLike<unknown>;
  /** How many batches the workers hold at once when all are up (threads or processes × 2). */
  readonly slots: number;
  /** Sends `batch`; its outcome goes to `receiver`. A throw means it was not sent. */
  send(batch: WireBatch, transfer: ArrayBuffer[], receiver: BatchReceiver): SentBatch;
  readonly ready?: PromiseLike<void>;
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

/**
 * The calls inside workers whose partials someone listens to, by call id: where their partial
 * results go. Only those: a Map that takes and drops an entry per batch rehashes every few
 * operations, and each replaced table keeps pointing at the next one and at the calls it held,
 * which scavenges then keep alive and promote (see `Lane.units`).
 */
const sentCalls = new Map<number, PooledCall>();

/** A worker sent a partial result of call `callId`: to that call's `ctx.emit` (dropped once it settled). */
export function routePartial(callId: number, partial: unknown): void {
  sentCalls.get(callId)?.emitPartial(partial);
}

/** The subscriber of a released call: it never hears from the call again (see `PooledCall.release`). */
const DELIVERED = new Subscriber<unknown>();

let lastCallId = 0;
const nextCallId = (): number => (lastCallId = lastCallId >= 0x7fffffff ? 1 : lastCallId + 1);

/** One call waiting for, or inside, a worker batch. */
class PooledCall extends LaneCall {
  readonly id = nextCallId();
  batch: SentBatch | undefined = undefined;
  grace: ReturnType<typeof setTimeout> | undefined = undefined;
  /** What to send and transfer, when the input was prepared before the call was queued (batch calls). */
  prepared: { input: unknown; transfer: ArrayBuffer[]; problem?: string } | undefined = undefined;
  /** Someone listens to its partials: it is in `sentCalls` while in a worker. */
  partials = false;
  /** Its session's `cancelGraceMs`, set when it is sent. */
  graceMs = 0;
  /** A batch call whose model's wire method reads no context: its contexts stay here (`WireCall.batch`). */
  contextsUnread = false;
  constructor(
    readonly endpoint: string,
    readonly specKey: string,
    public input: unknown,
    readonly context: PredictContext,
    public subscriber: Subscriber<unknown>,
    /** The contexts of a batch call (its input is then the list of inputs). */
    readonly batchContexts?: readonly PredictContext[],
  ) {
    super();
  }

  /**
   * Once its worker answered (delivered or cancelled): drops its input, its batch (which holds the
   * whole reply) and where its result went. Something in old space keeps delivered calls reachable
   * through scavenges (as the lane's lists, see `Lane.unitMaybeDone`), and a full one promoted
   * what it held: ~0.7 KB a request more for single OnnxModel calls on a thread_pool (onnx bench (c)).
   */
  release(): void {
    this.batch = undefined;
    this.prepared = undefined;
    this.input = undefined;
    this.subscriber = DELIVERED;
  }

  /**
   * Cancelled, timed out or failed while running (the lane calls this only then): once sent, its
   * worker is asked to stop it, and terminated if it ignores that (see `cancelSent`). Here, not in
   * a `cancelWork` closure: one closure less per call. The runner aborts the model's context itself.
   */
  abort(): void {
    if (this.batch !== undefined) cancelSent(this);
  }

  /** A partial from the worker: a batch call's come as `[element, partial]` (see ModelHost). */
  emitPartial(partial: unknown): void {
    if (this.batchContexts === undefined) return void this.context.emit?.(partial);
    const [element, data] = partial as [number, unknown];
    this.batchContexts[element]?.emit?.(data);
  }

  settled(value: unknown, error: Error | undefined): void {
    if (error === undefined) {
      this.subscriber.next(value);
      this.subscriber.complete();
    } else this.subscriber.error(error);
  }
}

/**
 * An executor session over a batch transport. While fewer batches are out than the workers can
 * take, each call leaves at once as a batch of one (low latency); once they are busy, calls wait
 * in the lane and leave together, up to `maxBatch` per message, spread over the free slots
 * (throughput under load).
 */
export class PooledSession implements ExecutorSession {
  readonly ready?: PromiseLike<void>;
  private readonly lane: Lane<PooledCall>;
  private closed = false;

  constructor(
    private readonly specKeys: ReadonlyMap<string, string>,
    private readonly transport: BatchTransport,
    private readonly options: PooledOptions,
    /** Prepares an input for sending: what to send, what to transfer, and what cannot be sent. */
    private readonly collect: (input: unknown) => { input: unknown; transfer: ArrayBuffer[]; problem?: string },
  ) {
    if (transport.ready) this.ready = transport.ready;
    this.lane = new Lane<PooledCall>({
      name: `${transport.workerKind} pool`,
      maxInFlight: transport.slots,
      batching: { maxBatchSize: options.maxBatch, maxWaitMs: 0 },
      spread: true,
      canRun: () => transport.canSend(),
      run: (calls, unit) => this.sendBatch(calls, unit),
    });
  }

  invoke(endpointName: string, input: unknown, context: PredictContext): CallResult {
    const specKey = this.specKeys.get(endpointName)!;
    // A built-in class with a wire form (OnnxModel) takes a single call in it too: a batch of one.
    const codec = context.operation === undefined ? wireCodec(specKey) : undefined;
    return new Observable<unknown>((subscriber) => {
      if (this.closed) {
        subscriber.error(new WorkerCrashedError(`the pool of '${endpointName}' is closed`));
        return undefined;
      }
      if (codec !== undefined) {
        return this.submitBatch(
          endpointName,
          specKey,
          codec,
          [input],
          [context],
          (results) => {
            const [result] = results;
            if (result instanceof Error) subscriber.error(result);
            else {
              subscriber.next(result);
              subscriber.complete();
            }
          },
          subscriber,
        );
      }
      const call = this.lane.submit(new PooledCall(endpointName, specKey, input, context, subscriber));
      return () => this.lane.cancel(call, undefined);
    });
  }

  /**
   * One wire call for a batch of model calls: the worker makes one `predictBatch` call. An input
   * that cannot cross to a worker fails alone; the others go.
   */
  invokeBatch(endpointName: string, inputs: readonly unknown[], contexts: readonly PredictContext[]): CallResult {
    const specKey = this.specKeys.get(endpointName)!;
    const codec = wireCodec(specKey);
    return new Observable<unknown>((subscriber) => {
      if (this.closed) {
        subscriber.error(new WorkerCrashedError(`the pool of '${endpointName}' is closed`));
        return undefined;
      }
      return this.submitBatch(
        endpointName,
        specKey,
        codec,
        inputs,
        contexts,
        (results) => {
          subscriber.next(results);
          subscriber.complete();
        },
        subscriber,
      );
    });
  }

  /**
   * Sends a batch call: `done` gets one value or Error per input, `subscriber` a crash. Inputs go
   * in the codec's wire form when it has one for them, else as they are. Returns the teardown.
   */
  private submitBatch(
    endpointName: string,
    specKey: string,
    codec: WireCodec | undefined,
    inputs: readonly unknown[],
    contexts: readonly PredictContext[],
    done: (results: unknown[]) => void,
    subscriber: Subscriber<unknown>,
  ): (() => void) | undefined {
    const results: unknown[] = new Array(inputs.length);
    const sent: number[] = [];
    const list: unknown[] = [];
    const transfer: ArrayBuffer[] = [];
    const packed = codec?.pack(inputs);
    let packedSent = false;
    let rowsSent = false;
    for (let i = 0; i < inputs.length; i++) {
      const body = packed?.bodies[i];
      // A row of the packed table, or a packed body (TypedArray data in a buffer transferred
      // whole), which needs only a look for what cannot cross.
      if (typeof body === 'number' || (body !== undefined && inspectForWorker(body, 'input').problem === undefined)) {
        sent.push(i);
        list.push(body);
        packedSent = true;
        rowsSent ||= typeof body === 'number';
        continue;
      }
      const prepared = this.collect(inputs[i]);
      if (prepared.problem === undefined) {
        sent.push(i);
        list.push(prepared.input);
        for (const buffer of prepared.transfer) transfer.push(buffer);
      } else results[i] = this.refused(endpointName, prepared.problem);
    }
    if (packedSent) for (const buffer of packed!.transfer) transfer.push(buffer);
    if (rowsSent) list.push(packed!.table);
    if (sent.length === 0) {
      done(results);
      return undefined;
    }
    const inner = new Subscriber<unknown>({
      next: (reply) => {
        // The flat `[ok, value | error, ...]` read in place (no result object per element).
        const flat = reply as unknown[];
        const size = flat.length / 2;
        if (size !== sent.length) {
          const error = new TypeError(`a batch of ${sent.length} call(s) of '${endpointName}' got ${size} result(s) from its worker`);
          for (const i of sent) results[i] = error;
          done(results);
          return;
        }
        const values: unknown[] = new Array(size);
        for (let k = 0; k < size; k++) values[k] = flat[2 * k] === 1 ? flat[2 * k + 1] : undefined;
        codec?.unpackBatch(values);
        for (let k = 0; k < size; k++) {
          results[sent[k]] = flat[2 * k] === 1 ? values[k] : deserializeError(flat[2 * k + 1] as SerializedError);
        }
        done(results);
        // The worker's reply list (our own copy) is emptied once its answers went out: something
        // in old space keeps these lists reachable through scavenges (as the lane's lists, see
        // `Lane.unitMaybeDone`), and a filled one promoted every answer it held — ~2.3 KB a
        // request of the ~4.5 promoted for single OnnxModel calls on a thread_pool (onnx bench (c), --trace-gc-nvp).
        flat.length = 0;
      },
      error: (error: unknown) => subscriber.error(error),
      complete: () => undefined,
    });
    const batchCall = new PooledCall(
      endpointName,
      specKey,
      list,
      contexts[sent[0]],
      inner,
      sent.length === inputs.length ? contexts : sent.map((i) => contexts[i]),
    );
    batchCall.prepared = { input: list, transfer };
    batchCall.contextsUnread = codec?.readsContexts === false;
    const call = this.lane.submit(batchCall);
    return () => this.lane.cancel(call, undefined);
  }

  private refused(endpointName: string, problem: string): TypeError {
    return new TypeError(
      `the input of model '${endpointName}' cannot be copied to a worker ${this.transport.workerKind}: ${problem}, which structured clone cannot copy`,
    );
  }

  private sendBatch(batchCalls: readonly PooledCall[], unit: LaneUnit): void {
    if (batchCalls.length === 1) return this.sendOne(batchCalls, unit);
    const specs: string[] = [];
    const specIndex = new Map<string, number>();
    const transfer: ArrayBuffer[] = [];
    /** The calls sent: the unit's own list when none was refused (no list of our own to make). */
    let calls: PooledCall[] | undefined;
    const wire: WireCall[] = [];
    for (let i = 0; i < batchCalls.length; i++) {
      const call = batchCalls[i];
      const prepared: { input: unknown; transfer: ArrayBuffer[]; problem?: string } = call.prepared ?? this.collect(call.input);
      if (prepared.problem !== undefined) {
        // This input cannot cross to a worker: it fails alone, the rest of the batch goes.
        calls ??= batchCalls.slice(0, i);
        this.lane.settle(call, undefined, this.refused(call.endpoint, prepared.problem));
        continue;
      }
      let index = specIndex.get(call.specKey);
      if (index === undefined) {
        index = specs.push(call.specKey) - 1;
        specIndex.set(call.specKey, index);
      }
      for (const buffer of prepared.transfer) transfer.push(buffer);
      calls?.push(call);
      wire.push(wireCall(call, index, prepared.input));
    }
    if (wire.length === 0) return;
    this.dispatch({ specs, calls: wire }, transfer, calls ?? batchCalls, unit);
  }

  /**
   * A unit of one call (every call at low load): its one spec named without a lookup table, its
   * input's own transfer list, and the unit's list as the calls sent.
   */
  private sendOne(batchCalls: readonly PooledCall[], unit: LaneUnit): void {
    const call = batchCalls[0];
    const prepared = call.prepared ?? this.collect(call.input);
    if (prepared.problem !== undefined) {
      this.lane.settle(call, undefined, this.refused(call.endpoint, prepared.problem));
      return;
    }
    this.dispatch({ specs: [call.specKey], calls: [wireCall(call, 0, prepared.input)] }, prepared.transfer, batchCalls, unit);
  }

  /** Sends the wire batch of `calls` (in its order) and has their answers delivered. */
  private dispatch(batch: WireBatch, transfer: ArrayBuffer[], calls: readonly PooledCall[], unit: LaneUnit): void {
    const receiver = new SentCalls(this, calls);
    let sent: SentBatch;
    try {
      sent = this.transport.send(batch, transfer, receiver);
    } catch (error) {
      for (const call of calls) this.lane.settle(call, undefined, asCrash(error));
      return;
    }
    // The slot stays taken until the worker answers, even if every call in it was cancelled.
    receiver.release = unit.hold();
    for (const call of calls) {
      if (call.partials) sentCalls.set(call.id, call);
      call.batch = sent;
      call.graceMs = this.options.cancelGraceMs;
    }
  }

  /** @internal One call's answer: `status` 1 a value, 0 a serialized error, else a crash (`payload` the failure). */
  deliver(call: PooledCall, status: unknown, payload: unknown): void {
    if (call.partials && sentCalls.get(call.id) === call) sentCalls.delete(call.id);
    if (call.grace) clearTimeout(call.grace);
    if (!call.done) {
      if (status === 1) this.lane.settle(call, payload, undefined);
      else if (status === 0) this.lane.settle(call, undefined, deserializeError(payload as SerializedError));
      else this.lane.settle(call, undefined, asCrash(payload));
    }
    call.release();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.lane.failWaiting(new WorkerCrashedError('the pool was closed before the call started'));
    await this.transport.close();
  }
}

/** The calls of one batch out at a worker: where its answer goes; its unit's slot is held until then. */
class SentCalls implements BatchReceiver {
  release: () => void = noop;
  constructor(
    private readonly session: PooledSession,
    private readonly calls: readonly PooledCall[],
  ) {}

  // Released whatever delivering throws (a subscriber's error): a throw must not keep the slot.
  answered(reply: unknown[]): void {
    const { calls, session } = this;
    try {
      // A reply short of a pair per call fails the calls it has no answer for.
      for (let i = 0; i < calls.length; i++) {
        if (2 * i + 1 < reply.length) session.deliver(calls[i], reply[2 * i], reply[2 * i + 1]);
        else
          session.deliver(calls[i], undefined, new WorkerCrashedError(`a worker answered ${reply.length / 2} of ${calls.length} call(s)`));
      }
    } finally {
      this.release();
    }
  }

  failed(error: unknown): void {
    try {
      for (const call of this.calls) this.session.deliver(call, undefined, error);
    } finally {
      this.release();
    }
  }
}

const noop = (): void => undefined;

/** Asks the worker to stop a sent call; terminates the worker if the call ignores it. */
function cancelSent(call: PooledCall): void {
  const batch = call.batch!;
  batch.cancel(call.id);
  call.grace = setTimeout(() => batch.terminate(`a call ignored cancellation for ${call.graceMs} ms`), call.graceMs);
  call.grace.unref?.();
}

/** A call's wire form; marks the call when someone listens to its partials (see `sentCalls`). */
function wireCall(call: PooledCall, spec: number, input: unknown): WireCall {
  const { context, batchContexts } = call;
  // A count instead of the contexts when the model reads none: then it cannot emit partials either.
  const batch = batchContexts && (call.contextsUnread ? batchContexts.length : flatContexts(batchContexts));
  const listen = batchContexts === undefined && listens(context);
  call.partials = listen || (typeof batch === 'object' && batchListens(batch));
  // One object shape for every wire call (absent fields undefined).
  return {
    id: call.id,
    spec,
    input,
    eventId: context.eventId,
    origin: context.origin,
    path: context.path,
    op: context.operation,
    batch,
    listen,
  };
}

/** A batch call's contexts in their wire form, made directly (no object per context on the way). */
function flatContexts(contexts: readonly PredictContext[]): unknown[] {
  // Packed (by push), as the batch it goes into (see encodeBatch).
  const flat: unknown[] = [];
  for (const c of contexts) flat.push(c.eventId, c.origin, c.path, listens(c) ? 1 : 0);
  return flat;
}

/** Whether someone listens to the partials of any element of flat contexts. */
function batchListens(flat: readonly unknown[]): boolean {
  for (let i = CONTEXT_FIELDS - 1; i < flat.length; i += CONTEXT_FIELDS) if (flat[i] === 1) return true;
  return false;
}

// Transports fail a batch with WorkerCrashedError (the worker died) or a TypeError (the batch could
// not be sent); anything else is reported as a crash.
function asCrash(failure: unknown): Error {
  return failure instanceof WorkerCrashedError || failure instanceof TypeError
    ? failure
    : new WorkerCrashedError(String(failure), { cause: failure });
}
