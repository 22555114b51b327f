// requests.commit(): the sink of a redisStream pipeline, one operator.
import { Observable, type OperatorFunction } from 'rxjs';
import type { ServingEvent } from '../event.js';

/**
 * Writes each event's answer (through `answer`) and emits the event once written, dropped or
 * failed. Completes once its source has completed and every write has settled. `ended` is called
 * once per subscription when it ends (completed, errored or unsubscribed): from then on it can
 * commit nothing more, which `close()` needs to know.
 */
export function commitOperator(
  answer: (event: ServingEvent) => Promise<void>,
  track: { opened(): void; ended(): void },
): OperatorFunction<ServingEvent, ServingEvent> {
  return (source) =>
    new Observable<ServingEvent>((sub) => {
      let writing = 0;
      let sourceDone = false;
      let open = true;
      const end = () => {
        if (open) {
          open = false;
          track.ended();
        }
      };
      const finish = () => {
        if (sourceDone && writing === 0) {
          sub.complete();
          end();
        }
      };
      track.opened();
      const subscription = source.subscribe({
        next(event) {
          writing++;
          void answer(event).then(() => {
            writing--;
            sub.next(event);
            finish();
          });
        },
        error: (error) => {
          sub.error(error);
          end();
        },
        complete() {
          sourceDone = true;
          finish();
        },
      });
      return () => {
        subscription.unsubscribe();
        end();
      };
    });
}
