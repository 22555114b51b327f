import { Observable, type OperatorFunction } from 'rxjs';
import { describeValue } from '../decode.js';
import { toError } from '../errors.js';
import { isErrored, setPath, withBody, withError, type ServingEvent } from '../event.js';
import { dispatch, type Work } from './internal/dispatch.js';
import { httpConfig, inputOf, prepareRequest, type HttpStepOptions } from './internal/http.js';
import { EventCall, HttpClient, RequestPermits } from './internal/httpClient.js';

/** Options of `batchHttpRequests`: the expressions are functions of one list item (and the event). */
export type BatchHttpRequestsOptions = HttpStepOptions<[item: unknown, event: ServingEvent]>;

/**
 * Sends one HTTP request per item of each event's list, concurrently, and answers with the list
 * of answers in the items' order (MLRun's BatchHttpRequests).
 *
 * The list is the body, or its `inputPath` part. Each item is sent as `remoteStep` sends a body
 * (`bodyExpression(item, event)` and `urlExpression(item, event)` when given), with the same
 * retries, backoff, `retry-after`, `x-request-id` (the event's id) and method rules. The answers
 * replace the body, or are written at `resultPath`. `timeoutMs` bounds the whole event. The first
 * item that fails fails the event (`RemoteStepError`, `ModelTimeoutError`), and its other requests
 * are aborted. A body that is not a list fails the event with a `TypeError`.
 *
 * `maxInFlight` (default 64) bounds the requests of all events of a subscription together, so one
 * long list never opens more than that many connections.
 *
 * ## Example
 * ```ts
 * import { batchHttpRequests } from 'rxserve';
 * events$.pipe(batchHttpRequests({ urlExpression: (item) => `http://geo:8080/city/${item.id}`, method: 'GET', inputPath: 'places', resultPath: 'cities' }));
 * // { places: [{ id: 1 }, { id: 2 }] } → two GETs → { places: [...], cities: [<answer 1>, <answer 2>] }
 * ```
 * @see docs/remote.md
 * @param options See {@link HttpStepOptions}; invalid ones throw `ConfigError` naming the field.
 */
export function batchHttpRequests(options: BatchHttpRequestsOptions): OperatorFunction<ServingEvent, ServingEvent> {
  const config = httpConfig(options, 'batchHttpRequests', 'batch_http_requests');
  const { step: name, resultPath } = config;
  const answer = (event: ServingEvent, answers: unknown[]) =>
    withBody(event, resultPath === undefined ? answers : setPath(event.body, resultPath, answers));

  return (source) =>
    new Observable<ServingEvent>((subscriber) => {
      const client = new HttpClient(config);
      const permits = new RequestPermits(config.limits.maxInFlight);
      const work: Work = (event, done) => {
        const list = inputOf(config, event);
        if (!Array.isArray(list)) {
          throw new TypeError(
            `batch step '${name}': expects a list${config.inputPath ? ` at inputPath '${config.inputPath}'` : ' as the body'}, got ${describeValue(list)}`,
          );
        }
        // Every request is built before any is sent: an item that cannot be sent fails the event
        // without half of the list sent.
        const requests = list.map((item: unknown) => prepareRequest(config, event, item, [item, event]));
        const n = requests.length;
        if (n === 0) {
          done(answer(event, []));
          return undefined;
        }
        const answers = new Array<unknown>(n);
        let next = 0;
        let left = n;
        const call = new EventCall(config, (error) => done(withError(event, error, name)));
        const start = (i: number) => {
          client.send(requests[i], call.signal, call.deadline).then(
            (value) => {
              permits.release();
              answers[i] = value;
              if (--left === 0 && call.finish()) done(answer(event, answers));
            },
            (error: unknown) => {
              permits.release();
              if (!call.finish()) return;
              call.signal.abort(error); // the other items' requests stop
              done(withError(event, toError(error), name));
            },
          );
        };
        // Takes permits while they are free; then waits in line (one place per event).
        const pump = (): void => {
          while (next < n && !call.settled) {
            if (!permits.tryTake()) {
              permits.wait(granted);
              return;
            }
            start(next++);
          }
        };
        const granted = (): boolean => {
          if (call.settled || next >= n) return false;
          start(next++);
          pump();
          return true;
        };
        pump();
        return call.cancel;
      };
      dispatch(source, subscriber, config.limits, work, isErrored, { operator: 'batchHttpRequests' });
      subscriber.add(() => client.close());
    });
}
