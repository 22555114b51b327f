// Intake and ordering under modelRunner, step and onError: every event that enters is checked,
// admitted (bounded, with an explicit overflow outcome) and emitted exactly once, in arrival
// order when asked; per-event cancellation (`cancelOf(event)`: its `signal`, or the invoker's
// token) and teardown reach the work.
import type { Observable, Subscriber, Subscription } from 'rxjs';
import { QueueFullError, toError } from '../../errors.js';
import { cancelOf, isServingEvent, withError, type CancelListener, type CancelToken, type ServingEvent } from '../../event.js';
import { reportUncaught } from '../../execution/lane.js';
import { RingQueue } from '../../execution/ringQueue.js';

/** Limits of one step; every admitted event is held by it until emitted. */
export interface DispatchLimits {
  /** Step name, for `QueueFullError` and `origin`. */
  readonly step: string;
  /** Events being worked on (or waiting to be emitted in order) at once. */
  readonly maxInFlight: number;
  /** Events waiting beyond `maxInFlight`; one more is emitted at once, failed with `QueueFullError`. */
  readonly maxQueue: number;
  /** Emit in arrival order (true) or as soon as done (false). */
  readonly ordered: boolean;
}

/**
 * Works on one event; calls `done` exactly once (synchronously or later) with the event to emit.
 * Returns a function that cancels the work, called only if the event is cancelled (its signal,
 * or the subscription ending) before `done`.
 */
export type Work = (event: ServingEvent, done: (out: ServingEvent) => void) => ((reason?: unknown) => void) | void;

export const DEFAULT_MAX_IN_FLIGHT = 64;
export const DEFAULT_MAX_QUEUE = 10_000;

/** Controls a running dispatcher (modelRunner pauses it until its models are loaded). */
export interface DispatchControl {
  pause(): void;
  resume(): void;
  /** Events started and not yet emitted, and events admitted but not started. */
  counts(this: void): { inFlight: number; queued: number };
}

/** Counters a step keeps about its intake (for metrics). */
export interface DispatchStats {
  rejected: number;
}

const WAITING = 0;
const STARTED = 1;
const DONE = 2;

/** One admitted event; it listens to the event's cancel itself (no closure per event). */
class Slot implements CancelListener {
  state = WAITING;
  out: ServingEvent | undefined = undefined;
  cancel: ((reason?: unknown) => void) | void = undefined;
  /** Listening to `cancelToken`. */
  listening = false;
  /** Neighbours in the list of started, not yet emitted slots. */
  prev: Slot | undefined = undefined;
  next: Slot | undefined = undefined;
  constructor(
    readonly event: ServingEvent,
    readonly cancelToken: CancelToken | undefined,
    /** The dispatcher's handler of a cancelled event (one function per dispatcher). */
    private readonly onCancel: (slot: Slot) => void,
  ) {}

  /** The event's cancel aborted. */
  handleEvent(): void {
    this.listening = false;
    this.onCancel(this);
  }

  /** Stops listening to the event's cancel, once. */
  unlisten(): void {
    if (!this.listening) return;
    this.listening = false;
    this.cancelToken!.unlisten(this);
  }
}

/** The error an event leaves with when its cancel aborts. */
export function abortedError(token: CancelToken): Error {
  const reason: unknown = token.reason;
  return reason instanceof Error
    ? reason
    : // eslint-disable-next-line @typescript-eslint/no-base-to-string -- a reason that is not an Error is usually a string; any other value is named as String() names it
      new DOMException(reason === undefined ? 'the event was cancelled' : String(reason), 'AbortError');
}

/**
 * Subscribes to `source` and feeds `subscriber`, running `work` on each event that `bypass` does
 * not let straight through. Its teardown (cancel every unfinished work) is added to `subscriber`.
 *
 * Why events count against `maxInFlight` until *emitted*, not until done: in ordered mode a
 * finished event may wait for an earlier slow one, and that wait must be bounded too.
 */
export function dispatch(
  source: Observable<ServingEvent>,
  subscriber: Subscriber<ServingEvent>,
  limits: DispatchLimits,
  work: Work,
  bypass: (event: ServingEvent) => boolean,
  options: { paused?: boolean; stats?: DispatchStats; operator?: string } = {},
): DispatchControl {
  const { step, maxInFlight, maxQueue, ordered } = limits;
  const operator = options.operator ?? 'this step';
  const capacity = maxInFlight + maxQueue;
  let paused = options.paused ?? false;
  let inFlight = 0;
  // Admitted, not started (cancelled ones are skipped lazily; `waitingCount` counts the live ones).
  const waiting = new RingQueue<Slot>();
  let waitingCount = 0;
  // Ordered: every started slot in start order. Unordered: finished slots awaiting emission.
  const emitQueue = new RingQueue<Slot>();
  // Started, not emitted (for cancellation): a list through the slots, not a Set, because a
  // synchronous step adds and removes one per event and V8 reallocates a Set's table each time it
  // empties.
  let live: Slot | undefined;
  const link = (slot: Slot): void => {
    slot.next = live;
    if (live !== undefined) live.prev = slot;
    live = slot;
  };
  const unlink = (slot: Slot): void => {
    if (slot.prev !== undefined) slot.prev.next = slot.next;
    else live = slot.next;
    if (slot.next !== undefined) slot.next.prev = slot.prev;
    slot.prev = slot.next = undefined;
  };
  let draining = false;
  let sourceDone = false;
  let closed = false;

  const finish = (slot: Slot, out: ServingEvent): void => {
    if (slot.state === DONE || closed) return;
    slot.state = DONE;
    slot.out = out;
    slot.cancel = undefined;
    slot.unlisten();
    if (!ordered) emitQueue.push(slot);
    drain();
  };

  const start = (slot: Slot): void => {
    inFlight++;
    slot.state = STARTED;
    link(slot);
    if (ordered) emitQueue.push(slot);
    let cancel: ((reason?: unknown) => void) | void;
    try {
      cancel = work(slot.event, (out) => finish(slot, out));
    } catch (error) {
      // A throw from inside the work is that event's failure, never an escape past the subscriber.
      finish(slot, withError(slot.event, toError(error), step));
      return;
    }
    if (slot.state !== DONE) slot.cancel = cancel;
  };

  /**
   * An event out, from inside the dispatch (drain, a cancel). A downstream that throws from `next`
   * (a bare Subscriber: RxJS's own operators and `subscribe()` catch theirs) loses that event only:
   * the throw is reported as RxJS reports one, and the events behind it still leave and start —
   * thrown out of `drain` it left them waiting until something else woke it.
   */
  const emit = (out: ServingEvent): void => {
    try {
      subscriber.next(out);
    } catch (error) {
      reportUncaught(error);
    }
  };

  const drain = (): void => {
    if (draining || closed) return;
    draining = true;
    try {
      for (;;) {
        let slot = emitQueue.peek();
        while (slot !== undefined && slot.state === DONE) {
          emitQueue.shift();
          unlink(slot);
          inFlight--;
          const out = slot.out!;
          slot.out = undefined;
          emit(out);
          if (closed) return;
          slot = emitQueue.peek();
        }
        if (!paused && inFlight < maxInFlight && waitingCount > 0) {
          const next = waiting.shift()!;
          if (next.state !== WAITING) continue;
          waitingCount--;
          start(next);
          continue;
        }
        break;
      }
    } finally {
      draining = false;
    }
    if (sourceDone && inFlight === 0 && waitingCount === 0 && !closed) {
      closed = true;
      subscriber.complete();
    }
  };

  /** The event's signal aborted: its work stops and it leaves now, errored. */
  const cancelOne = (slot: Slot): void => {
    if (slot.state === DONE || closed) return;
    const error = abortedError(slot.cancelToken!);
    const out = withError(slot.event, error, step);
    if (slot.state === WAITING) {
      slot.state = DONE;
      waitingCount--;
      slot.unlisten();
      emit(out);
      drain();
      return;
    }
    const cancel = slot.cancel;
    slot.cancel = undefined;
    if (cancel) cancel(error);
    finish(slot, out);
  };

  const admit = (event: ServingEvent, token: CancelToken | undefined): void => {
    const slot = new Slot(event, token, cancelOne);
    if (token !== undefined) {
      slot.listening = true;
      token.listen(slot);
    }
    if (!paused && inFlight < maxInFlight && waitingCount === 0) {
      start(slot);
      drain();
    } else {
      waiting.push(slot);
      waitingCount++;
      drain();
    }
  };

  // Registered before subscribing to the source: a downstream that unsubscribes while a
  // synchronous source is still emitting stops the work at once.
  subscriber.add(() => {
    closed = true;
    subscription?.unsubscribe();
    for (const slot of waiting.drain()) slot.unlisten();
    waitingCount = 0;
    emitQueue.drain();
    const toCancel: Slot[] = [];
    for (let slot = live; slot !== undefined; slot = slot.next) toCancel.push(slot);
    live = undefined;
    for (const slot of toCancel) {
      slot.unlisten();
      if (slot.state !== DONE && slot.cancel) slot.cancel();
    }
  });

  let subscription: Subscription | undefined;
  subscription = source.subscribe({
    next(event) {
      if (closed) return;
      if (!isServingEvent(event)) {
        closed = true;
        subscriber.error(notAnEvent(event, operator, step));
        return;
      }
      if (bypass(event)) {
        subscriber.next(event);
        return;
      }
      const token = cancelOf(event);
      if (token?.aborted) {
        subscriber.next(withError(event, abortedError(token), step));
      } else if (inFlight + waitingCount < capacity) {
        admit(event, token);
      } else {
        if (options.stats) options.stats.rejected++;
        subscriber.next(withError(event, new QueueFullError(step, maxInFlight, maxQueue), step));
      }
    },
    error(err) {
      if (!closed) subscriber.error(err);
    },
    complete() {
      sourceDone = true;
      drain();
    },
  });

  if (closed) subscription.unsubscribe();

  return {
    pause() {
      paused = true;
    },
    resume() {
      paused = false;
      drain();
    },
    counts: () => ({ inFlight, queued: waitingCount }),
  };
}

/** The stream error for a value that is not a ServingEvent (the usual cause: no `asEvents()`). */
export function notAnEvent(value: unknown, operator: string, step: string): TypeError {
  const what =
    value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value === 'object' ? 'a plain object' : `a ${typeof value}`;
  return new TypeError(`${operator} '${step}' received ${what}, not a ServingEvent: pipe asEvents() first (or make events with toEvent())`);
}
