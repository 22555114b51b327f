// The part `step` and `onError` share: run a user callback for one event, turn its value or its
// failure into the event that leaves, and abort its signal if the pipeline is unsubscribed first.
import { toError } from '../../errors.js';
import { withError, type ServingEvent } from '../../event.js';
import { EventContext, unsubscribedReason } from './stepContext.js';
import type { Work } from './dispatch.js';
import { onResult } from '../../execution/callResult.js';

/**
 * Runs `call(event, context)` (sync, async or an Observable); its value becomes
 * `toEvent(event, value)`, a throw or rejection fails the event with `origin` = `name`.
 */
export function runCallback(
  name: string,
  event: ServingEvent,
  done: (out: ServingEvent) => void,
  call: (context: EventContext) => unknown,
  toEvent: (value: unknown) => ServingEvent,
): ReturnType<Work> {
  const context = new EventContext(event);
  let settled = false;
  const cancel = onResult(
    () => call(context),
    (value) => {
      settled = true;
      done(toEvent(value));
    },
    (error) => {
      settled = true;
      done(withError(event, toError(error), name));
    },
  );
  if (settled) return undefined;
  return (reason?: unknown) => {
    context.abort(reason ?? unsubscribedReason(name));
    cancel?.();
  };
}
