// requests.filter(): the stream-aware filter of a redisStream pipeline, one operator.
import { Observable, type OperatorFunction } from 'rxjs';
import { toError } from '../errors.js';
import { isErrored, withError, type ServingEvent } from '../event.js';

/**
 * Passes the events `predicate` accepts; hands each one it rejects to `skip` (acknowledged
 * without an answer, its credit freed) instead of dropping it, which with a plain RxJS `filter`
 * would hold the message's credit for good. Errored events pass without being asked about: their
 * error is their answer (docs/design.md §1.2). A predicate that throws fails that event (origin
 * `'redisStream.filter'`), which is then answered with the error.
 */
export function filterOperator(
  predicate: (event: ServingEvent) => boolean,
  skip: (event: ServingEvent) => unknown,
): OperatorFunction<ServingEvent, ServingEvent> {
  return (source) =>
    new Observable<ServingEvent>((sub) =>
      source.subscribe({
        next(event) {
          if (isErrored(event)) {
            sub.next(event);
            return;
          }
          let keep: boolean;
          try {
            keep = predicate(event);
          } catch (thrown) {
            sub.next(withError(event, toError(thrown), 'redisStream.filter'));
            return;
          }
          if (keep) sub.next(event);
          else skip(event);
        },
        error: (error) => sub.error(error),
        complete: () => sub.complete(),
      }),
    );
}
