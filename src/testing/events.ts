// Small operators that make serving events easy to compare in marble tests.
import { map, type OperatorFunction } from 'rxjs';
import type { ServingEvent } from '../event.js';

/** Maps events to their bodies, errored ones to `{ error: '<Name>: <message>' }`. */
export function bodies<B = unknown>(): OperatorFunction<ServingEvent, B | { error: string }> {
  return map((event) => (event.error ? { error: `${event.error.name}: ${event.error.message}` } : (event.body as B)));
}

/**
 * Removes `metadata.models` (per-model `when` / `latencyMs`) so events compare by content; with
 * `testExecutor` those are virtual times and may be kept instead.
 */
export function stripTimings(): OperatorFunction<ServingEvent, ServingEvent> {
  return map((event) => {
    if (!('models' in event.metadata)) return event;
    const { models: _models, ...metadata } = event.metadata;
    return { ...event, metadata };
  });
}
