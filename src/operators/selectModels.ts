import { Observable, type OperatorFunction } from 'rxjs';
import { SelectorError } from '../errors.js';
import { isServingEvent, withError, type ServingEvent } from '../event.js';
import { notAnEvent } from './internal/dispatch.js';
import { decodeModelEntries, type ModelEntry } from '../model/entry.js';
import { createSelect, isSelectorLike, resolveSelector, type SelectorLike } from '../selector.js';
import { ConfigError } from '../errors.js';

/** One event and the endpoint names chosen for it, in the order the selector returned them. */
export interface Selection {
  readonly event: ServingEvent;
  readonly selected: readonly string[];
}

/**
 * The selection stage of `modelRunner` on its own: narrows each event's model list.
 *
 * A pure operator (no model runs), so a selector can be marble-tested alone. `selected` is in the
 * selector's order, or every model in registration order when it returns `null`/`undefined`. A
 * selector that throws, or names an unknown model or one model twice, yields
 * `{ event: <errored with SelectorError>, selected: [] }`; an already errored event yields
 * `{ event, selected: [] }`.
 *
 * ## Example
 * ```ts
 * import { selectModels } from 'rxserve';
 * events$.pipe(selectModels((e) => e.body.models ?? null, models));
 * // { event, selected: ['finance'] } for an event whose body.models is ['finance']
 * ```
 * @param selector A `ModelSelector`, a function `(event, available) => names | null`, or a registered name.
 * @param models The step's model entries.
 * @param options `selectorParams` for a selector given by name; `name` used in errors.
 */
export function selectModels(
  selector: SelectorLike | undefined,
  models: readonly ModelEntry[],
  options: { name?: string; selectorParams?: Readonly<Record<string, unknown>> } = {},
): OperatorFunction<ServingEvent, Selection> {
  if (selector !== undefined && !isSelectorLike(selector)) {
    throw new ConfigError([
      {
        path: 'selectModels.selector',
        expected: 'a ModelSelector, a selector function or a registered selector name',
        actual: typeof selector,
      },
    ]);
  }
  const entries = decodeModelEntries(models, 'selectModels.models');
  const step = options.name ?? 'model_runner';
  return (source) =>
    new Observable<Selection>((subscriber) => {
      let select: (event: ServingEvent) => readonly string[] | SelectorError;
      try {
        select = createSelect(resolveSelector(selector, options.selectorParams, `${step}.selector`), entries, step);
      } catch (error) {
        subscriber.error(error);
        return;
      }
      return source.subscribe({
        next(event) {
          if (!isServingEvent(event)) {
            subscriber.error(notAnEvent(event, 'selectModels', step));
            return;
          }
          if (event.error !== undefined) {
            subscriber.next({ event, selected: [] });
            return;
          }
          const outcome = select(event);
          subscriber.next(
            outcome instanceof SelectorError ? { event: withError(event, outcome, step), selected: [] } : { event, selected: outcome },
          );
        },
        error: (error) => subscriber.error(error),
        complete: () => subscriber.complete(),
      });
    });
}
