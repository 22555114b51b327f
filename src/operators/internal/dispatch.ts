// The bounded dispatcher under modelRunner, step and onError: credit-based intake, a bounded
// queue with an explicit overflow outcome, optional ordered output, and cancellation on teardown.
import type { Observable, Subscriber, Subscription } from 'rxjs';
import { QueueFullError } from '../../errors.js';
import { withError, type ServingEvent } from '../../event.js';

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
 * Returns a function that cancels the work, called only if the subscription ends before `done`.
 */
export type Work = (event: ServingEvent, done: (out: ServingEvent) => void) => (() => void) | void;

export const DEFAULT_MAX_IN_FLIGHT = 64;
export const DEFAULT_MAX_QUEUE = 10_000;

/** Controls a running dispatcher (modelRunner pauses it until its models are loaded). */
export interface DispatchControl {
  pause(): void;
  resume(): void;
}

interface Slot {
  done: boolean;
  out: ServingEvent | undefined;
  cancel: (() => void) | void;
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
  options: { paused?: boolean } = {},
): DispatchControl {
  const { step, maxInFlight, maxQueue, ordered } = limits;
  const capacity = maxInFlight + maxQueue;
  let paused = options.paused ?? false;
  let inFlight = 0;
  // Admitted, not started. A plain array with a moving head: shift() would be O(n) per event.
  let waiting: ServingEvent[] = [];
  let head = 0;
  // Ordered: every started slot in start order. Unordered: finished slots awaiting emission.
  const slots: Slot[] = [];
  let slotHead = 0;
  const live = new Set<Slot>(); // unordered only: started, not finished (for cancellation)
  let draining = false;
  let sourceDone = false;
  let closed = false;

  const waitingCount = () => waiting.length - head;

  const start = (event: ServingEvent): void => {
    inFlight++;
    const slot: Slot = { done: false, out: undefined, cancel: undefined };
    if (ordered) slots.push(slot);
    else live.add(slot);
    const finish = (out: ServingEvent): void => {
      if (slot.done || closed) return;
      slot.done = true;
      slot.out = out;
      slot.cancel = undefined;
      if (!ordered) {
        live.delete(slot);
        slots.push(slot);
      }
      drain();
    };
    slot.cancel = work(event, finish);
  };

  const drain = (): void => {
    if (draining || closed) return;
    draining = true;
    try {
      for (;;) {
        while (slotHead < slots.length && slots[slotHead].done) {
          const slot = slots[slotHead];
          slots[slotHead++] = undefined as unknown as Slot;
          inFlight--;
          subscriber.next(slot.out!);
          if (closed) return;
        }
        if (slotHead > 1024 && slotHead * 2 > slots.length) {
          slots.splice(0, slotHead);
          slotHead = 0;
        }
        if (!paused && inFlight < maxInFlight && head < waiting.length) {
          const event = waiting[head];
          waiting[head++] = undefined as unknown as ServingEvent;
          if (head > 1024 && head * 2 > waiting.length) {
            waiting = waiting.slice(head);
            head = 0;
          }
          start(event);
          continue;
        }
        break;
      }
    } finally {
      draining = false;
    }
    if (sourceDone && inFlight === 0 && waitingCount() === 0 && !closed) {
      closed = true;
      subscriber.complete();
    }
  };

  // Registered before subscribing to the source: a downstream that unsubscribes while a
  // synchronous source is still emitting stops the work at once.
  subscriber.add(() => {
    closed = true;
    subscription?.unsubscribe();
    const toCancel: Slot[] = ordered ? slots.slice(slotHead) : [...live];
    waiting = [];
    head = 0;
    slots.length = 0;
    live.clear();
    for (const slot of toCancel) {
      if (!slot.done && slot.cancel) slot.cancel();
    }
  });

  let subscription: Subscription | undefined;
  subscription = source.subscribe({
    next(event) {
      if (closed) return;
      if (bypass(event)) {
        subscriber.next(event);
        return;
      }
      if (!paused && inFlight < maxInFlight && waitingCount() === 0) {
        start(event);
        drain();
      } else if (inFlight + waitingCount() < capacity) {
        waiting.push(event);
        drain();
      } else {
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

  const control: DispatchControl = {
    pause() {
      paused = true;
    },
    resume() {
      paused = false;
      drain();
    },
  };

  return control;
}
