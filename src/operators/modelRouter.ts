// modelRouter (MLRun's ModelRouter): the V2 model-server protocol over routes, one per model.
import * as t from 'io-ts';
import type { OperatorFunction } from 'rxjs';
import { decodeOrThrow, fn, NonEmptyString, strict } from '../decode.js';
import { withBody, withError, type ServingEvent } from '../event.js';
import { routerStep } from './internal/routeSet.js';
import {
  asV2Server,
  bodyField,
  checkRoutes,
  normalPrefix,
  outsidePrefix,
  parseV2Path,
  requestProblem,
  routeOf,
  runOnRoute,
  splitVersion,
  unknownModel,
} from './internal/v2.js';

/** Configuration of a `modelRouter` step (MLRun's ModelRouter). */
export interface ModelRouterConfig {
  /** Step name; default `'model_router'`. */
  readonly name?: string;
  /**
   * One pipeline per model, by model name (`'<model>:<version>'` for a version): typically a
   * `modelRunner` of one model, or a `pipe()` of steps ending in one.
   */
  readonly routes: Readonly<Record<string, OperatorFunction<ServingEvent, ServingEvent>>>;
  /** The path prefix of the protocol; default `'/v2/models'`. */
  readonly prefix?: string;
  /** The route of a request that names no model (no path, no `model` field); default the first route. */
  readonly defaultRoute?: string;
}

export const ModelRouterConfigCodec = strict(
  'ModelRouterConfig',
  { routes: t.record(t.string, fn<OperatorFunction<ServingEvent, ServingEvent>>('an operator')) },
  { name: NonEmptyString, prefix: NonEmptyString, defaultRoute: t.string },
);

/**
 * Serves models over the V2 model-server protocol, one route per model.
 *
 * MLRun's ModelRouter as an operator. The path `<prefix>/<model>[/versions/<v>]/<op>` picks the
 * route (`'<model>:<v>'` first, then `'<model>'`); an event without a model in its path (a stream's)
 * goes by its body's `model` field, else `defaultRoute`, else the first route, and its operation
 * by the body's `operation` field, else `infer`. Operations: `infer` / `predict` (the model's
 * `predict`) answer `{ id, model_name, model_version?, outputs, timestamp }`; `explain` (the model's
 * `explain()`) the same without `timestamp`; `ready` `{ name, ready: true }` once the route's
 * models are loaded (`ModelNotReadyError`, HTTP 408, before); `metadata` `{ name, version, inputs,
 * outputs }`; any other name calls the model's `op_<name>(body, ctx)` and answers what it returned.
 * The bare prefix lists `{ models: [...] }`. An unknown model fails the event with
 * `RouteNotFoundError` (404); a request whose `inputs` is not a list, or an operation the model
 * lacks, with a `TypeError` (400) naming it. Every route is subscribed with the step (its models
 * load then); errored events pass untouched; answers leave as their routes give them.
 *
 * ## Example
 * ```ts
 * import { modelRouter, modelRunner, serve } from 'rxserve';
 * const one = (name: string) => modelRunner({ name, models: [{ endpointName: name, modelClass: 'MyModel', executionMechanism: 'thread_pool' }] });
 * await serve(modelRouter({ routes: { m1: one('m1'), m2: one('m2') } }), { port: 8080 });
 * // POST /v2/models/m2/infer { "inputs": [[1, 2]] } → { "id": "...", "model_name": "m2", "outputs": ..., "timestamp": "..." }
 * ```
 * @see votingEnsemble
 * @see parallelRun
 * @param config Routes, prefix and default route; validated now, `ConfigError` on a bad field.
 * @returns An operator from serving events to serving events.
 */
export function modelRouter(config: ModelRouterConfig): OperatorFunction<ServingEvent, ServingEvent> {
  const options = decodeOrThrow(ModelRouterConfigCodec, config, 'modelRouter');
  const { name = 'model_router', routes, defaultRoute } = options;
  const prefix = normalPrefix(options.prefix ?? '/v2/models');
  const names = Object.keys(routes);
  checkRoutes('modelRouter', names, defaultRoute);
  const fallback = defaultRoute ?? names[0];

  const operator = routerStep('modelRouter', name, routes, (set, emit) => (event) => {
    const target = parseV2Path(event.path, prefix);
    if (target.outside) return emit(withError(event, outsidePrefix(name, names, event.path!, prefix), name));
    if (target.list) return emit(withBody(event, { models: [...names] }));
    const model = target.model ?? bodyField(event.body, 'model') ?? fallback;
    const route = routeOf(set, model, target.version);
    if (route < 0) return emit(withError(event, unknownModel(name, names, model, target.version), name));
    const op = target.op ?? bodyField(event.body, 'operation') ?? 'infer';
    const problem = requestProblem(name, model, op, event.body);
    if (problem !== undefined) return emit(withError(event, problem, name));
    // A route named '<model>:<v>' serves version <v> of <model>.
    const [modelName, routeVersion] = splitVersion(names[route]);
    runOnRoute(name, set, route, modelName, target.version ?? routeVersion, op, event, emit);
  });
  return asV2Server(operator, { kind: 'ModelRouter', name, prefix, models: names });
}
