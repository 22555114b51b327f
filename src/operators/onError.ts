import { Observable, type OperatorFunction } from 'rxjs';
import { NonEmptyString, decodeOrThrow, fn, strict } from '../decode.js';
import { isErrored, isServingEvent, withoutError, type ErroredEvent, type ServingEvent } from '../event.js';
import type { StepContext } from './internal/stepContext.js';
import { runCallback } from './internal/callbackWork.js';
import { dispatch, type Work } from './internal/dispatch.js';
import { limitsFrom } from './internal/dispatchOptions.js';

/**
 * Recovers an errored event: return a new event, or a new body for the event (its error
 * cleared). Returning the errored event keeps it errored. May be async.
 */
export type ErrorHandler = (
  event: ErroredEvent,
  context: StepContext,
  // eslint-disable-next-line @typescript-eslint/no-redundant-type-constituents -- the union names what a handler may return (the compiler reads `unknown`)
) => ServingEvent | unknown | PromiseLike<ServingEvent | unknown>;

export const OnErrorOptionsCodec = strict('OnErrorOptions', {}, { name: NonEmptyString });
const HandlerCodec = fn<ErrorHandler>('a function (erroredEvent, context) => event or body');

/**
 * Handles errored events (MLRun's error handler); other events pass untouched.
 *
 * The handler gets each event that a step failed (`event.error`, `event.origin`) and returns
 * what continues: a `ServingEvent` as is, or any other value as the recovered event's new body
 * (its `error` and `origin` cleared). If the handler itself throws, the event stays errored with
 * that new error. Errored events are handled in arrival order; events without an error pass at once.
 *
 * ## Example
 * ```ts
 * import { onError } from 'rxserve';
 * events$.pipe(onError((e) => ({ fallback: true, reason: e.error.message })));
 * ```
 * @param handler `(erroredEvent, { signal, event }) => event | body`.
 * @param options `name`, set as `origin` when the handler throws; default `'on_error'`.
 */
export function onError(handler: ErrorHandler, options: { name?: string } = {}): OperatorFunction<ServingEvent, ServingEvent> {
  decodeOrThrow(HandlerCodec, handler, 'onError.handler');
  const decoded = decodeOrThrow(OnErrorOptionsCodec, options, 'onError.options');
  const limits = limitsFrom(decoded, 'on_error');
  const name = limits.step;

  const work: Work = (event, done) =>
    runCallback(
      name,
      event,
      done,
      (context) => handler(event as ErroredEvent, context),
      (value) => (isServingEvent(value) ? value : withoutError(event, value)),
    );

  return (source) =>
    new Observable<ServingEvent>((subscriber) => {
      dispatch(source, subscriber, limits, work, (event) => !isErrored(event), { operator: 'onError' });
    });
}
