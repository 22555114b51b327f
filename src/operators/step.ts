import { Observable, type ObservableInput, type OperatorFunction } from 'rxjs';
import { DotPath, decodeOrThrow, fn, strict } from '../decode.js';
import { getPath, hasPath, isErrored, setPath, withBody, withError, type ServingEvent } from '../event.js';
import type { StepContext } from './internal/stepContext.js';
import { runCallback } from './internal/callbackWork.js';
import { dispatch, type Work } from './internal/dispatch.js';
import { dispatchOptionProps, limitsFrom } from './internal/dispatchOptions.js';

export type { StepContext } from './internal/stepContext.js';

/** Options of a `step`. */
export interface StepOptions {
  /** Step name, set as `origin` on events it fails; default `'step'`. */
  readonly name?: string;
  /** Dot path of the function's input in the body; the whole body when absent. */
  readonly inputPath?: string;
  /** Dot path where the result is written into a copy of the body; the result replaces the body when absent. */
  readonly resultPath?: string;
  /** Events being processed at once (async functions); default 64. */
  readonly maxInFlight?: number;
  /** Events waiting beyond that; default 10,000; more → `QueueFullError`. */
  readonly maxQueue?: number;
  /** Emit in arrival order; default `true`. */
  readonly ordered?: boolean;
}

/** A step's function: sync, async, or an Observable (its first value counts; it is then unsubscribed). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- public default: a step's function reads the body it expects without a cast
export type StepFn<In = any, Out = unknown> = (
  input: In,
  context: StepContext,
) => Out | PromiseLike<Out> | Extract<ObservableInput<Out>, Observable<Out>>;

export const StepOptionsCodec = strict('StepOptions', {}, { ...dispatchOptionProps, inputPath: DotPath, resultPath: DotPath });
const StepFnCodec = fn<StepFn>('a function (input, context) => result');

/**
 * Maps each event's body with a function, with MLRun's `inputPath` / `resultPath` rules.
 *
 * The function receives `get(body, inputPath)` (the whole body by default) and its result
 * replaces the body, or is written at `resultPath` in a copy of it. It may be sync or async;
 * a throw or rejection fails that event only (`event.error` is what was thrown, `origin` the
 * step's name). Errored events pass through untouched. The input is the event's own data:
 * treat it as read-only and return new values.
 *
 * ## Example
 * ```ts
 * import { step } from 'rxserve';
 * events$.pipe(step((text: string) => text.trim().toLowerCase(), { inputPath: 'text', resultPath: 'clean' }));
 * // { text: ' Hi ' } → { text: ' Hi ', clean: 'hi' }
 * ```
 * @param fn `(input, { signal, event }) => result`.
 * @param options `name`, `inputPath`, `resultPath`, and concurrency limits.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- as StepFn (above)
export function step<In = any, Out = unknown>(
  fn: StepFn<In, Out>,
  options: StepOptions = {},
): OperatorFunction<ServingEvent, ServingEvent> {
  decodeOrThrow(StepFnCodec, fn, 'step.fn');
  const decoded = decodeOrThrow(StepOptionsCodec, options, 'step.options');
  const limits = limitsFrom(decoded, 'step');
  const { inputPath, resultPath } = decoded;
  const name = limits.step;

  const work: Work = (event, done) => {
    if (inputPath !== undefined && !hasPath(event.body, inputPath)) {
      done(withError(event, new TypeError(`step '${name}': inputPath '${inputPath}' is not in the body of event '${event.id}'`), name));
      return undefined;
    }
    return runCallback(
      name,
      event,
      done,
      (context) => fn(getPath(event.body, inputPath) as In, context),
      (value) => withBody(event, resultPath === undefined ? value : setPath(event.body, resultPath, value)),
    );
  };

  return (source) =>
    new Observable<ServingEvent>((subscriber) => {
      dispatch(source, subscriber, limits, work, isErrored, { operator: 'step' });
    });
}
