// parallelRun (MLRun's ParallelRun): every route on each event at once, their bodies merged.
import * as t from 'io-ts';
import type { OperatorFunction } from 'rxjs';
import { decodeOrThrow, fn, NonEmptyString, strict } from '../decode.js';
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

  const operator = routerStep(
    'parallelRun',
    name,
    routes,
    (set, emit) => (event) =>
      set.broadcast(event, (answers) => {
        const merged: Record<string, unknown> = extendEvent && isObject(event.body) ? { ...event.body } : {};
        let failed = false;
        for (const answer of answers) {
          if (answer.error === undefined && isObject(answer.body)) Object.assign(merged, answer.body);
          else failed = true;
        }
        const metadata = mergeMetadata(event.metadata, answers);
        if (!failed) return emit(withBody(event, merged, { metadata }));
        const errors: Record<string, string | null> = {};
        answers.forEach((answer, i) => {
          const route = names[i];
          if (answer.error !== undefined) errors[route] = routeErrorText(answer.error);
          else if (!isObject(answer.body))
            errors[route] = `TypeError: route '${route}' answered ${describe(answer.body)}; parallelRun merges objects`;
          else errors[route] = null;
        });
        emit(withError(withBody(event, event.body, { metadata }), new ModelRunnerError(name, errors), name));
      }),
  );
  return asV2Server(operator, { kind: 'ParallelRun', name, models: names });
}

/**
 * The event's metadata with every route's model figures (`metadata.models`, by endpoint). Only
 * those: what else a route's steps wrote (`metadata.modelRunner`, ...) is that route's business.
 */
function mergeMetadata(own: Readonly<Record<string, unknown>>, answers: readonly ServingEvent[]): Readonly<Record<string, unknown>> {
  let models: Record<string, unknown> | undefined;
  for (let i = 0; i < answers.length; i++) {
    const figures = answers[i].metadata.models;
    if (figures === undefined || figures === own.models) continue;
    if (models === undefined) models = own.models === undefined ? {} : { ...(own.models as object) };
    Object.assign(models, figures);
  }
  return models === undefined ? own : { ...own, models };
}

const isObject = (value: unknown): value is Record<string, unknown> => value !== null && typeof value === 'object' && !Array.isArray(value);

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  return value === undefined ? 'nothing' : `a ${typeof value}`;
}
