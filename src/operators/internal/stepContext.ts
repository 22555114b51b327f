// What step and onError callbacks receive beside their input, and the abort reason on unsubscribe.
import type { ServingEvent } from '../../event.js';
import { LazySignal } from '../../model/callContext.js';

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
