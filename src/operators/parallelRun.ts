// parallelRun (MLRun's ParallelRun): every route on each event at once, their bodies merged.
import * as t from 'io-ts';
import type { OperatorFunction } from 'rxjs';
import { decodeOrThrow, fn, NonEmptyString, strict } from '../config.js';
import { ModelRunnerError } from '../errors.js';
import { withBody, withError, type ServingEvent } from '../event.js';
import { routerStep } from './internal/routeSet.js';
import { asV2Server, checkRoutes, routeErrorText } from './internal/v2.js';

/** Configuration of a `parallelRun` step (MLRun's ParallelRun). */
export interface ParallelRunConfig {
  /** Step name; default `'parallel_run'`. */
  readonly name?: string;
  /** The pipelines every event runs through at once, merged in this order. */
  readonly routes: Readonly<Record<string, OperatorFunction<ServingEvent, ServingEvent>>>;
  /** Start the merge from the input body (its fields kept unless a route's answer replaces them); default `false`. */
  readonly extendEvent?: boolean;
}

export const ParallelRunConfigCodec = strict(
  'ParallelRunConfig',
  { routes: t.record(t.string, fn<OperatorFunction<ServingEvent, ServingEvent>>('an operator')) },
  { name: NonEmptyString, extendEvent: t.boolean },
);

/**
 * Runs every route on each event concurrently and merges their answers into one body.
 *
 * MLRun's ParallelRun as an operator. Each route gets the event (its own mechanism through its own
 * steps) and answers an object; the output body is those objects merged in route order (a later
 * route's field wins), starting from the input body with `extendEvent`. A route that fails, or
 * answers something other than an object, fails the event with `ModelRunnerError` whose
 * `modelsErrors` names each route (`null` for those that answered) — MLRun's thread and process
 * modes log and drop a failed route instead; rxserve does not drop failures silently. Every
 * route is subscribed with the step; errored events pass untouched; an event leaves once its last
 * route answered.
 *
 * ## Example
 * ```ts
 * import { parallelRun, modelRunner } from 'rxserve';
 * events$.pipe(parallelRun({ extendEvent: true, routes: { fraud: modelRunner({ models: [fraud] }), churn: modelRunner({ models: [churn] }) } }));
 * // { x: 8 } → { x: 8, ...fraud's answer, ...churn's answer }
 * ```
 * @see votingEnsemble
 * @param config Routes and `extendEvent`; validated now, `ConfigError` on a bad field.
 * @returns An operator from serving events to serving events.
 */
export function parallelRun(config: ParallelRunConfig): OperatorFunction<ServingEvent, ServingEvent> {
  const { name = 'parallel_run', routes, extendEvent = false } = decodeOrThrow(ParallelRunConfigCodec, config, 'parallelRun');
  const names = Object.keys(routes);
  checkRoutes('parallelRun', names, undefined);

  const operator = routerStep('parallelRun', name, routes, (set, emit) => (event) => {
    const answers: ServingEvent[] = new Array(names.length);
    let remaining = names.length;
    const join = (): void => {
      const merged: Record<string, unknown> = extendEvent && isObject(event.body) ? { ...event.body } : {};
      const errors: Record<string, string | null> = {};
      let failed = false;
      let metadata = event.metadata;
      answers.forEach((answer, i) => {
        const route = names[i];
        errors[route] = null;
        if (answer.error !== undefined) {
          failed = true;
          errors[route] = routeErrorText(answer.error);
        } else if (!isObject(answer.body)) {
          failed = true;
          errors[route] = `TypeError: route '${route}' answered ${describe(answer.body)}; parallelRun merges objects`;
        } else Object.assign(merged, answer.body);
        if (answer.metadata !== event.metadata) metadata = mergeMetadata(metadata, answer.metadata);
      });
      if (failed) return emit(withError(withBody(event, event.body, { metadata }), new ModelRunnerError(name, errors), name));
      emit(withBody(event, merged, { metadata }));
    };
    names.forEach((_, i) =>
      set.send(i, event, (answer) => {
        answers[i] = answer;
        if (--remaining === 0) join();
      }),
    );
  });
  return asV2Server(operator, { kind: 'ParallelRun', name, models: names });
}

/** The routes' metadata together: their own keys, and every route's `models` figures (each route's models by endpoint). */
function mergeMetadata(into: Readonly<Record<string, unknown>>, from: Readonly<Record<string, unknown>>): Record<string, unknown> {
  const models = into.models !== undefined && from.models !== undefined ? { ...(into.models as object), ...(from.models as object) } : (from.models ?? into.models);
  return { ...into, ...from, ...(models !== undefined ? { models } : {}) };
}

const isObject = (value: unknown): value is Record<string, unknown> => value !== null && typeof value === 'object' && !Array.isArray(value);

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  return value === undefined ? 'nothing' : `a ${typeof value}`;
}
