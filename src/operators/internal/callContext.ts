// Contexts handed to user callbacks; their AbortController is made only if `signal` is read.
import type { ServingEvent } from '../../event.js';
import type { PredictContext } from '../../model/model.js';

/**
 * Most calls never look at `signal`, so the `AbortController` (about a microsecond each) is
 * created on first access; an abort before that yields an already aborted signal.
 */
export class LazySignal {
  #controller: AbortController | undefined;
  #reason: unknown;
  #aborted = false;

  get signal(): AbortSignal {
    if (this.#controller === undefined) {
      this.#controller = new AbortController();
      if (this.#aborted) this.#controller.abort(this.#reason);
    }
    return this.#controller.signal;
  }

  abort(reason: unknown): void {
    if (this.#aborted) return;
    this.#aborted = true;
    this.#reason = reason;
    this.#controller?.abort(reason);
  }
}

/** A model call's `PredictContext`. */
export class CallContext extends LazySignal implements PredictContext {
  constructor(
    readonly eventId: string,
    readonly origin: string,
    readonly path: string | undefined,
  ) {
    super();
  }
}

/** What `step` and `onError` callbacks receive beside their input. */
export interface StepContext {
  /** Aborted when the pipeline is unsubscribed while the callback runs. */
  readonly signal: AbortSignal;
  /** The whole event being processed. */
  readonly event: ServingEvent;
}

export class EventContext extends LazySignal implements StepContext {
  constructor(readonly event: ServingEvent) {
    super();
  }
}

/** The abort reason given to callbacks when their pipeline is unsubscribed. */
export function unsubscribedReason(step: string): DOMException {
  return new DOMException(`step '${step}' was unsubscribed`, 'AbortError');
}
