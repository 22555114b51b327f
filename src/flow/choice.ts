// Choice steps of a flow (MLRun's select_outlets, LangGraph's conditional edges): they pick which
// of their next steps get each event. Not operators: the flow runs them itself, synchronously.
import { DotPath, decodeOrThrow, fn } from '../decode.js';
import { getPath, type ServingEvent } from '../event.js';

/** What a choice's `select` returns: the names of next steps; `null`/`undefined` = all of them, `[]` = none. */
export type ChoiceResult = string | readonly string[] | null | undefined;

/** A choice's function: which of its next steps get the event. Synchronous. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- a user's function typed for its own body must be assignable (unknown would refuse it)
export type ChoiceFn = (event: ServingEvent<any>) => ChoiceResult;

const CHOICE: unique symbol = Symbol.for('rxserve.choice');

/** A choice step (see `choice`): give it to `flow.add()` / `.to()` like an operator. */
export interface Choice {
  readonly [CHOICE]: ChoiceFn;
}

/** True for what `choice()` / `choiceByField()` made. */
export function isChoice(value: unknown): value is Choice {
  return typeof value === 'object' && value !== null && typeof (value as Choice)[CHOICE] === 'function';
}

/** The select function of a choice. */
export function selectOf(value: Choice): ChoiceFn {
  return value[CHOICE];
}

/**
 * A flow step that sends each event on to some of its next steps (MLRun's `select_outlets`).
 *
 * `select(event)` returns the names of the next steps that get the event: one name, a list,
 * `null`/`undefined` for all of them (cycle targets included), or `[]` for none (that branch ends
 * there). Errored events are not shown to `select`: they pass on to the step's next steps (never
 * back round a cycle). A name that is not one of the step's next steps, or a name given twice,
 * fails the event with `RouteNotFoundError` listing them; a `select` that throws fails it with
 * what it threw. Both are the choice's own errors (its error handler takes them).
 *
 * ## Example
 * ```ts
 * import { choice, flow, step } from 'rxserve';
 * const f = flow();
 * f.to('judge', choice((e) => (e.body.verdict === 'ok' ? 'reply' : 'generate')));
 * ```
 * @param select `(event) => names`; must be synchronous.
 * @returns The choice, for `flow.add(name, choice, ...)` or `handle.to(name, choice)`.
 */
export function choice(select: ChoiceFn): Choice {
  decodeOrThrow(fn<ChoiceFn>('a function (event) => step names'), select, 'choice.select');
  return Object.freeze({ [CHOICE]: select });
}

/**
 * A choice that reads the next steps' names from a dot path of the event (MLRun's `ChoiceByField`).
 *
 * The value at `path` (`'body.route'`, `'headers.x-route'`) must be a step name or a non-empty list
 * of them; a missing value, another type or an empty list fails the event with a `TypeError`
 * naming the path (as MLRun raises).
 *
 * ## Example
 * ```ts
 * import { choiceByField, flow } from 'rxserve';
 * flow().to('route', choiceByField('body.route'));
 * ```
 * @param path A dot path into the event (not the body: write `body.` for a body field).
 */
export function choiceByField(path: string): Choice {
  decodeOrThrow(DotPath, path, 'choiceByField.path');
  return choice((event) => {
    const value = getPath(event, path);
    if (typeof value === 'string') return value;
    if (Array.isArray(value) && value.length > 0 && value.every((v) => typeof v === 'string')) return value;
    throw new TypeError(
      `choiceByField('${path}'): expected a step name or a non-empty list of step names at '${path}' of event '${event.id}', got ${
        value === undefined
          ? 'nothing'
          : Array.isArray(value)
            ? value.length === 0
              ? 'an empty list'
              : 'a list with a non-string'
            : typeof value
      }`,
    );
  });
}
