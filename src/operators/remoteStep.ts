import { Observable, type OperatorFunction } from 'rxjs';
import { toError } from '../errors.js';
import { isErrored, setPath, withBody, withError, type ServingEvent } from '../event.js';
import { dispatch, type Work } from './internal/dispatch.js';
import { httpConfig, inputOf, prepareRequest, type HttpStepOptions } from './internal/http.js';
import { EventCall, HttpClient } from './internal/httpClient.js';

export type { Backoff } from './internal/http.js';

/** Options of `remoteStep`: the expressions are functions of the event. */
export type RemoteStepOptions = HttpStepOptions<[event: ServingEvent]>;

/**
 * Calls a remote HTTP service for each event (MLRun's RemoteStep, `$remote`).
 *
 * Sends the body (or its `inputPath` part, or what `bodyExpression(event)` returns) to `url`
 * (+ `subpath`; `'$path'` appends the event's path), or to `urlExpression(event)`, with the
 * event's id as `x-request-id`. The method is the `method` option, else the event's `method`,
 * else POST; GET sends no body. The answer (JSON by default) replaces the body, or is written at
 * `resultPath`. A status ≥ 400, a network error or an unreadable answer fails the event with
 * `RemoteStepError` (`status`, the first 200 bytes of the answer) once the retries are spent:
 * network errors, 5xx, 408 and 429 are retried up to `retries` times (default 6) with exponential
 * backoff less up to 25% jitter (500 ms doubling, at most 10 s), or after the server's
 * `retry-after` (at most 60 s); other 4xx are not. Past `timeoutMs` (default 30 s, retries
 * included) the event fails with `ModelTimeoutError`. Cancelling the event (its signal, a client
 * that disconnected from `serve()`) or unsubscribing aborts its request.
 *
 * Each subscription has its own keep-alive undici Agent, closed when the subscription ends, and
 * never more than `maxInFlight` requests (default 64) in flight; events beyond that wait (up to
 * `maxQueue`, then `QueueFullError`). Errored events pass through untouched.
 *
 * ## Example
 * ```ts
 * import { remoteStep } from 'rxserve';
 * events$.pipe(remoteStep({ url: 'http://scorer:8080/score', inputPath: 'features', resultPath: 'score' }));
 * // { features: [1, 2] } → POST http://scorer:8080/score [1,2] → { features: [1, 2], score: <the JSON answer> }
 * ```
 * @see docs/remote.md
 * @param options See {@link HttpStepOptions}; invalid ones throw `ConfigError` naming the field.
 */
export function remoteStep(options: RemoteStepOptions): OperatorFunction<ServingEvent, ServingEvent> {
  const config = httpConfig(options, 'remoteStep', 'remote_step');
  const { step: name, resultPath } = config;

  return (source) =>
    new Observable<ServingEvent>((subscriber) => {
      const client = new HttpClient(config);
      const work: Work = (event, done) => {
        // A throw here (bad URL, path or body) fails this event alone (dispatch catches it).
        const request = prepareRequest(config, event, inputOf(config, event), [event]);
        const call = new EventCall(config, (error) => done(withError(event, error, name)));
        client.send(request, call.signal, call.deadline).then(
          (answer) => {
            if (call.finish()) done(withBody(event, resultPath === undefined ? answer : setPath(event.body, resultPath, answer)));
          },
          (error: unknown) => {
            if (call.finish()) done(withError(event, toError(error), name));
          },
        );
        return call.cancel;
      };
      dispatch(source, subscriber, config.limits, work, isErrored, { operator: 'remoteStep' });
      // After dispatch's own teardown, which aborts the requests still running.
      subscriber.add(() => client.close());
    });
}
