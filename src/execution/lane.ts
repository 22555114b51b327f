// The one lane (docs/design.md §6): a bounded FIFO of calls with its own concurrency limit, per-call
// timeouts, batches, cancellation, failAll and stats. Model lanes in modelRunner, the calls waiting
// for a worker pool, and shared models all queue here.
// Over 300 lines on purpose: one state machine (queued → running → settled, units and holds) whose
// invariants are easier to check in one place than across files.
import { asyncScheduler, config, type Subscription } from 'rxjs';
import { QueueFullError } from '../errors.js';
import { RingQueue } from './ringQueue.js';

const QUEUED = 0;
const RUNNING = 1;
const SETTLED = 2;

/**
 * One call in a lane. Owners extend it to keep the call's own data and results on the call
 * object; the lane only uses the fields below and the two hooks.
 */
export abstract class LaneCall<T = unknown> {
  /** @internal */ laneState = QUEUED;
  /** @internal */ laneTimer: Subscription | undefined = undefined;
  /** @internal */ laneUnit: LaneUnit | undefined = undefined;
  /** Cancels the work of a running call (set by the lane's `run`); called at most once. */
  cancelWork: (() => void) | undefined = undefined;

  /** Aborts the call's signal: on cancel, timeout or `failAll`, before `cancelWork`. */
  abstract abort(reason: unknown): void;
  /** The outcome, exactly once, unless the submitter cancelled the call first. */
  abstract settled(value: T | undefined, error: Error | undefined): void;

  /** Still waiting in the queue. */
  get queued(): boolean {
    return this.laneState === QUEUED;
  }
  /** Has an outcome, or was cancelled. */
  get done(): boolean {
    return this.laneState === SETTLED;
  }
}

/**
 * What one lane slot runs: one call, or a batch. Its slot frees once every call in it has
 * settled and every `hold()` was released (a worker batch keeps its slot until the worker
 * answers, even when its calls were cancelled).
 */
export class LaneUnit {
  /** @internal */ open: number;
  /** @internal */ holds = 0;
  /** @internal Its place in its lane's list of running units; -1 once it left. */
  index = -1;
  constructor(
    private readonly lane: Lane<LaneCall>,
    /** Its calls; emptied once the unit is done (see `Lane.unitMaybeDone`). */
    readonly calls: readonly LaneCall[],
  ) {
    this.open = calls.length;
  }

  /** Keeps the slot taken until the returned function is called. */
  hold(): () => void {
    this.holds++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.holds--;
      this.lane.unitMaybeDone(this);
    };
  }
}

/** Collect calls into one unit: up to `maxBatchSize`, waiting at most `maxWaitMs` from the first. */
export interface LaneBatching {
  readonly maxBatchSize: number;
  /** 0: never wait; batches then form only from calls queued while every slot was busy. */
  readonly maxWaitMs: number;
}

export interface LaneOptions<C extends LaneCall> {
  /** For errors: the step or model the lane belongs to. */
  readonly name: string;
  /** Units (calls, or batches when batching) running at once; default unlimited. */
  readonly maxInFlight?: number;
  /** Calls waiting beyond that; default unlimited. More → the call settles with `QueueFullError`. */
  readonly maxQueue?: number;
  /** Per call, from its start; expiry aborts the call and settles it with `timeoutError(call)`. */
  readonly timeoutMs?: number;
  readonly timeoutError?: (call: C) => Error;
  readonly batching?: LaneBatching;
  /**
   * Spread waiting calls over the slots instead of filling one batch (worker pools: a worker runs
   * a batch's synchronous calls one after another, so one big batch would leave the others idle).
   */
  readonly spread?: boolean;
  /**
   * Whether a unit may start now. A promise says "not yet": the lane tries again when it settles
   * (a worker process restarting). Default: always.
   */
  readonly canRun?: () => true | PromiseLike<unknown>;
  /** Starts a unit. It reports each call with `lane.settle()` and may set `call.cancelWork`. */
  readonly run: (calls: readonly C[], unit: LaneUnit) => void;
}

/** Occupancy of a lane: calls running, and calls waiting for a slot or a batch. */
export interface LaneCounts {
  readonly inFlight: number;
  readonly queued: number;
}

/**
 * A bounded FIFO with its own concurrency ("per-model scheduler"). State per instance; every call
 * submitted leaves exactly once through `settled` (result, error, timeout, `QueueFullError`,
 * `failAll`) unless its submitter cancels it.
 */
export class Lane<C extends LaneCall> {
  private readonly queue = new RingQueue<C>();
  /** Calls in the queue not cancelled (the queue drops cancelled ones lazily). */
  private waiting = 0;
  /** Calls started and not settled. */
  private running = 0;
  /**
   * Units started and not done: their count is what `maxInFlight` bounds. An array with each
   * unit's index (removal swaps the last one in), not a Set: a Set that takes and drops an entry
   * per unit rehashes every few operations, and V8 leaves each replaced table pointing at the
   * next one with the entries it held then; once one of those tables is in old space, scavenges
   * keep the chain and what its entries reach (calls, events, outputs) and promote it (a churned
   * Map with two live entries of 2 KB: everything promoted, against nothing for an array).
   */
  private readonly units: LaneUnit[] = [];
  private pumping = false;
  private paused = false;
  private blocked = false;
  /**
   * The batch wait's timer. Not cancelled when a batch leaves: it stays armed, and when it fires
   * early for the wait that is running then (`waitSince`), it is set again for the rest. Under
   * load a batch leaves every few hundred µs, and an rxjs timer scheduled and unsubscribed per
   * batch (an action, a node Timeout, the timer list's insert and removal) cost more than the
   * lane's own bookkeeping for the batch's calls (issue 26 goal 3). It goes once the lane is idle
   * (`idleTimer`).
   */
  private batchTimer: Subscription | undefined;
  /** When the running batch wait began (`asyncScheduler.now()`), or -1: no wait is running. */
  private waitSince = -1;
  /** The oldest waiting call has waited `maxWaitMs`: the next batch goes as it is. */
  private due = false;
  private readonly maxInFlight: number;
  private readonly maxQueue: number;
  private readonly maxBatch: number;
  /** Batches wait up to `maxWaitMs` for more calls (a call never starts alone at once). */
  private readonly collects: boolean;

  constructor(private readonly options: LaneOptions<C>) {
    this.maxInFlight = options.maxInFlight ?? Infinity;
    this.maxQueue = options.maxQueue ?? Infinity;
    this.maxBatch = options.batching?.maxBatchSize ?? 1;
    this.collects = this.maxBatch > 1 && (options.batching?.maxWaitMs ?? 0) > 0;
  }

  /** Queues `call`, or starts it at once when a slot is free. Returns the call (its handle). */
  submit(call: C): C {
    if (this.units.length < this.maxInFlight && this.waiting === 0 && !this.paused && !this.collects && this.canRunNow()) {
      this.start([call]);
      return call;
    }
    if (this.waiting >= this.maxQueue) {
      call.laneState = SETTLED;
      call.settled(undefined, new QueueFullError(this.options.name, this.maxInFlight, this.maxQueue));
      return call;
    }
    this.queue.push(call);
    this.waiting++;
    this.armBatchTimer();
    this.pump();
    return call;
  }

  /** Reports a call's outcome (first report wins). */
  settle(call: C, value: unknown, error: Error | undefined): void {
    if (call.laneState === SETTLED) return;
    const wasRunning = call.laneState === RUNNING;
    call.laneState = SETTLED;
    call.cancelWork = undefined;
    if (call.laneTimer) {
      call.laneTimer.unsubscribe();
      call.laneTimer = undefined;
    }
    if (wasRunning) this.running--;
    else if (--this.waiting === 0) this.waitSince = -1;
    this.idleTimer();
    try {
      call.settled(value, error);
    } finally {
      // The owner's hook may throw (a subscriber's error): the slot is freed all the same.
      if (wasRunning) this.callLeft(call);
    }
  }

  /** The submitter gives up on `call` (unsubscribed, event cancelled): abort it, report nothing. */
  cancel(call: C, reason: unknown): void {
    if (call.laneState === SETTLED) return;
    const wasRunning = call.laneState === RUNNING;
    call.laneState = SETTLED;
    if (call.laneTimer) {
      call.laneTimer.unsubscribe();
      call.laneTimer = undefined;
    }
    if (!wasRunning) {
      // The last waiting call gone: no batch wait runs (a call queued later starts its own).
      if (--this.waiting === 0) this.waitSince = -1;
      this.idleTimer();
      return;
    }
    this.running--;
    this.idleTimer();
    try {
      stopWork(call, reason);
    } finally {
      this.callLeft(call);
    }
  }

  /** Settles every waiting call with `error`; running calls go on. */
  failWaiting(error: Error): void {
    this.failCalls(error, false);
  }

  /** Settles every waiting and running call with `error` (a graph closing, a model that failed). */
  failAll(error: Error): void {
    this.failCalls(error, true);
  }

  /** Every call is failed even when an owner's hook throws; the first throw is rethrown after. */
  private failCalls(error: Error, running: boolean): void {
    let thrown: { error: unknown } | undefined;
    const attempt = (fn: () => void): void => {
      try {
        fn();
      } catch (e) {
        thrown ??= { error: e };
      }
    };
    for (const call of this.queue.drain()) {
      if (call.laneState === QUEUED) attempt(() => this.settle(call, undefined, error));
    }
    if (running) {
      for (const unit of [...this.units]) {
        for (const call of unit.calls as C[]) {
          if (call.laneState !== RUNNING) continue;
          attempt(() => stopWork(call, error));
          attempt(() => this.settle(call, undefined, error));
        }
      }
    }
    if (thrown) throw thrown.error;
  }

  /** Stops starting calls (they keep queueing, bounded by `maxQueue`) until `resume()`. */
  pause(): void {
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
    this.pump();
  }

  /** Calls running, and calls waiting (for a slot, or for their batch to fill). */
  counts(): LaneCounts {
    return { inFlight: this.running, queued: this.waiting };
  }

  /** @internal A unit's call settled or a hold was released. */
  unitMaybeDone(unit: LaneUnit): void {
    if (unit.open > 0 || unit.holds > 0 || unit.index < 0) return;
    const last = this.units.pop()!;
    if (last !== unit) {
      this.units[unit.index] = last;
      last.index = unit.index;
    }
    unit.index = -1;
    // The list of a finished unit is emptied (the one `run` got: the lane made it). V8 may
    // allocate such per-batch arrays in old space from birth (allocation-site pretenuring, once
    // most of them outlived a scavenge, e.g. while a pool was loading): an old array, even dead,
    // keeps every young object it points to alive through scavenges until the next full GC, so a
    // filled one promoted its calls and all they reach (events, outputs: ~3 KB a request on a
    // thread_pool step with batching), and their own arrays stayed pretenured in turn.
    // Popped, not `length = 0`: setting the length is a runtime call, a pop of a short list inline.
    const calls = unit.calls as LaneCall[];
    while (calls.length > 0) calls.pop();
    if (this.waiting > 0) this.pump();
  }

  private callLeft(call: C): void {
    const unit = call.laneUnit!;
    call.laneUnit = undefined;
    unit.open--;
    this.unitMaybeDone(unit);
  }

  private canRunNow(): boolean {
    if (this.blocked) return false;
    const verdict = this.options.canRun?.() ?? true;
    if (verdict === true) return true;
    this.blocked = true;
    verdict.then(
      () => this.unblock(),
      () => this.unblock(),
    );
    return false;
  }

  private unblock(): void {
    this.blocked = false;
    this.pump();
  }

  private pump(): void {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (this.waiting > 0 && this.units.length < this.maxInFlight && !this.paused) {
        // A batch smaller than maxBatchSize waits until its first call has waited maxWaitMs.
        if (this.collects && this.waiting < this.maxBatch && !this.due) break;
        if (!this.canRunNow()) break;
        this.startNext();
      }
    } finally {
      this.pumping = false;
    }
  }

  /** Starts the wait of the oldest waiting call, when batches collect and none is running. */
  private armBatchTimer(): void {
    if (!this.collects || this.waitSince >= 0 || this.waiting === 0) return;
    this.waitSince = asyncScheduler.now();
    // A timer still armed for an earlier wait fires before this one is over, and sets itself again.
    if (this.batchTimer === undefined)
      this.batchTimer = asyncScheduler.schedule(() => this.batchWaitOver(), this.options.batching!.maxWaitMs);
  }

  /**
   * Nothing waits or runs: the batch timer left armed by the last batch (see `batchTimer`) goes
   * too. Under load the lane is never idle, so this costs two reads a call there; left armed, the
   * timer would keep an idle process alive up to `maxWaitMs` after its last call.
   */
  private idleTimer(): void {
    if (this.batchTimer === undefined || this.waiting > 0 || this.running > 0) return;
    this.batchTimer.unsubscribe();
    this.batchTimer = undefined;
    this.waitSince = -1;
  }

  /** The batch timer fired: the running wait is over (the batch is due), or it began later than the timer and goes on. */
  private batchWaitOver(): void {
    this.batchTimer = undefined;
    if (this.waitSince < 0 || this.waiting === 0) {
      this.waitSince = -1;
      return;
    }
    const left = this.waitSince + this.options.batching!.maxWaitMs - asyncScheduler.now();
    if (left > 0) {
      this.batchTimer = asyncScheduler.schedule(() => this.batchWaitOver(), left);
      return;
    }
    this.due = true;
    inTimer(() => this.pump());
  }

  private startNext(): void {
    let size = this.maxBatch;
    if (this.options.spread && this.maxInFlight !== Infinity) size = Math.min(size, Math.ceil(this.waiting / this.maxInFlight));
    const calls: C[] = [];
    while (calls.length < size && this.queue.length > 0) {
      const call = this.queue.shift()!;
      if (call.laneState !== QUEUED) continue; // cancelled while waiting
      this.waiting--;
      calls.push(call);
    }
    // The calls still waiting start a new wait of their own (the timer, if armed, stays: see batchTimer).
    this.due = false;
    this.waitSince = -1;
    this.armBatchTimer();
    if (calls.length > 0) this.start(calls);
  }

  private start(calls: C[]): void {
    const unit = new LaneUnit(this as unknown as Lane<LaneCall>, calls);
    unit.index = this.units.push(unit) - 1;
    const { timeoutMs } = this.options;
    for (let i = 0; i < calls.length; i++) {
      const call = calls[i];
      call.laneState = RUNNING;
      call.laneUnit = unit;
      this.running++;
      if (timeoutMs !== undefined) call.laneTimer = asyncScheduler.schedule(() => this.timeOut(call), timeoutMs);
    }
    try {
      this.options.run(calls, unit);
    } catch (thrown) {
      // An owner's `run` that throws (a value it could not send, a bug) fails the unit's calls it
      // had not settled, so the slot is freed: no throw may keep a slot for good (docs/design.md §11).
      const error = thrown instanceof Error ? thrown : new Error(`'${this.options.name}' could not start a call: ${String(thrown)}`);
      for (const call of calls) {
        if (call.laneState !== RUNNING) continue;
        try {
          stopWork(call, error);
        } catch {
          // The call is failed below all the same; its own cancel failing changes nothing.
        }
        this.settle(call, undefined, error);
      }
    }
    // A unit whose calls all settled synchronously (naive models) frees its slot at once.
    this.unitMaybeDone(unit);
  }

  private timeOut(call: C): void {
    if (call.laneState !== RUNNING) return;
    call.laneTimer = undefined;
    let error: Error;
    try {
      error = this.options.timeoutError?.(call) ?? new Error(`a call in '${this.options.name}' timed out`);
    } catch (thrown) {
      error = thrown instanceof Error ? thrown : new Error(String(thrown));
    }
    inTimer(() => stopWork(call, error));
    inTimer(() => this.settle(call, undefined, error));
  }
}

/**
 * Runs lane work from a timer. An owner's hook that throws there has no caller to tell: the
 * error goes where RxJS sends errors nobody can catch (`config.onUnhandledError`, else thrown
 * asynchronously), never out of the timer, which would stop the scheduler's other timers.
 */
function inTimer(work: () => void): void {
  try {
    work();
  } catch (error) {
    reportUncaught(error);
  }
}

/**
 * Reports an error nobody can catch where RxJS reports its own (`config.onUnhandledError`, else
 * thrown asynchronously), as a SafeSubscriber does with an observer's throw.
 */
export function reportUncaught(error: unknown): void {
  const report = config.onUnhandledError;
  if (report) report(error);
  else
    setTimeout(() => {
      throw error;
    });
}

/** Aborts a running call's signal, then its work (each at most once); a throw still runs both. */
function stopWork(call: LaneCall, reason: unknown): void {
  const cancel = call.cancelWork;
  call.cancelWork = undefined;
  try {
    call.abort(reason);
  } finally {
    cancel?.();
  }
}
