// votingEnsemble (MLRun's VotingEnsemble): every route predicts, the answers are voted per row.
import * as t from 'io-ts';
import type { OperatorFunction } from 'rxjs';
import { decodeOrThrow, fn, NonEmptyString, strict } from '../decode.js';
import { ConfigError, ModelRunnerError } from '../errors.js';
import { withBody, withError, type ServingEvent } from '../event.js';
import { routerStep } from './internal/routeSet.js';
import {
  answerOf,
  asV2Server,
  bodyField,
  checkRoutes,
  normalPrefix,
  outsidePrefix,
  parseV2Path,
  requestProblem,
  routeErrorText,
  routeOf,
  runOnRoute,
  splitVersion,
  unknownModel,
  withOperation,
} from './internal/v2.js';
import { inferVoteType, normaliseWeights, predictionsOf, vote, type VoteType } from './internal/vote.js';

/** Configuration of a `votingEnsemble` step (MLRun's VotingEnsemble). */
export interface VotingEnsembleConfig {
  /** Step name, also the ensemble's model name in paths (`<prefix>/<name>/infer`); default `'voting_ensemble'`. */
  readonly name?: string;
  /** The voters, by name: each predicts on the request (typically a `modelRunner` of one model). */
  readonly routes: Readonly<Record<string, OperatorFunction<ServingEvent, ServingEvent>>>;
  /** `classification` (weighted majority) or `regression` (weighted mean); default: inferred from the first answers (all integers → classification). */
  readonly voteType?: VoteType;
  /** Weight by route; a route without one weighs 0; none given: equal weights. Normalised to sum 1. */
  readonly weights?: Readonly<Record<string, number>>;
  /** Where a route's answer keeps its predictions when they are keyed (`outputs.prediction`); default `'prediction'`. */
  readonly predictionColName?: string;
  /** The path prefix of the protocol; default `'/v2/models'`. */
  readonly prefix?: string;
}

export const VotingEnsembleConfigCodec = strict(
  'VotingEnsembleConfig',
  { routes: t.record(t.string, fn<OperatorFunction<ServingEvent, ServingEvent>>('an operator')) },
  {
    name: NonEmptyString,
    voteType: t.keyof({ classification: null, regression: null }, "'classification' | 'regression'"),
    weights: t.record(t.string, t.number),
    predictionColName: NonEmptyString,
    prefix: NonEmptyString,
  },
);

/** Operations `<prefix>/<op>` asks of the whole ensemble (MLRun's router-level operations, with metadata and ready). */
const ENSEMBLE_OPS = new Set(['infer', 'predict', 'explain', 'metadata', 'ready']);

/**
 * Votes the predictions of several models, row by row.
 *
 * MLRun's VotingEnsemble as an operator. Every route predicts on the request (which needs an
 * `inputs` list) at once; each answer's predictions are a number per row (a list, the `outputs`
 * of a V2 answer, `outputs[predictionColName]`, or the data of an OnnxModel output tensor). Per
 * row, `classification` picks the class with the largest sum of weights (the smallest class on a
 * tie), `regression` the weighted mean; without `voteType` the first answers decide (all integers
 * → classification) for the rest of the subscription. Answer: `{ id, model_name: <name>, outputs }`
 * (`outputs: { [predictionColName]: votes }` when the routes keyed theirs). Routes that fail are
 * left out — the vote goes on over the others, weights renormalised among them, and the body's
 * `errors` names each failed route — unless none with a weight answered: then the event fails
 * with `ModelRunnerError`. Paths: `<prefix>/<name>/infer`, `<prefix>/infer` or no path make all
 * vote; `<prefix>/<route>/<op>` runs that route alone, as `modelRouter` does; the bare prefix lists
 * `{ models: [...routes, name], weights }`.
 *
 * ## Example
 * ```ts
 * import { votingEnsemble, modelRunner } from 'rxserve';
 * const one = (name: string) => modelRunner({ name, models: [{ endpointName: name, modelClass: 'Tree', executionMechanism: 'thread_pool' }] });
 * events$.pipe(votingEnsemble({ name: 'forest', routes: { a: one('a'), b: one('b'), c: one('c') }, weights: { a: 2, b: 1, c: 1 } }));
 * // { inputs: [[...], [...]] } → { id, model_name: 'forest', outputs: [1, 0] }
 * ```
 * @see modelRouter
 * @see parallelRun
 * @param config Routes, vote type, weights; validated now, `ConfigError` on a bad field.
 * @returns An operator from serving events to serving events.
 */
export function votingEnsemble(config: VotingEnsembleConfig): OperatorFunction<ServingEvent, ServingEvent> {
  const options = decodeOrThrow(VotingEnsembleConfigCodec, config, 'votingEnsemble');
  const { name = 'voting_ensemble', routes, voteType, predictionColName = 'prediction' } = options;
  const prefix = normalPrefix(options.prefix ?? '/v2/models');
  const names = Object.keys(routes);
  checkRoutes('votingEnsemble', names, undefined);
  if (names.includes(name)) {
    throw new ConfigError([
      { path: 'votingEnsemble.name', expected: 'a name that is not one of its routes (paths name either)', actual: `'${name}'` },
    ]);
  }
  const weights = normaliseWeights(names, options.weights, 'votingEnsemble');
  const listing = { models: [...names, name], weights: Object.fromEntries(names.map((n, i) => [n, weights[i]])) };

  const operator = routerStep('votingEnsemble', name, routes, (set, emit) => {
    // Inferred once per subscription, from the first answers (MLRun infers on its first event).
    let type: VoteType | undefined = voteType;

    /** Every route predicts; the answers are voted per row. */
    const ensemble = (event: ServingEvent): void => set.broadcast(withOperation(event, 'infer'), (answers) => emit(tally(event, answers)));

    const tally = (event: ServingEvent, answers: readonly ServingEvent[]): ServingEvent => {
      const errors: Record<string, string> = {};
      const voters: number[] = [];
      const predictions: number[][] = [];
      let keyed = false;
      answers.forEach((answer, i) => {
        if (answer.error !== undefined) return void (errors[names[i]] = routeErrorText(answer.error));
        const read = predictionsOf(answer.body, predictionColName);
        if (typeof read === 'string') return void (errors[names[i]] = `TypeError: route '${names[i]}': ${read}`);
        voters.push(i);
        predictions.push(read.values as number[]);
        keyed ||= read.keyed;
      });
      const weighted = voters.filter((i) => weights[i] > 0);
      if (weighted.length === 0) {
        const error = new ModelRunnerError(name, Object.fromEntries(names.map((n) => [n, errors[n] ?? null])));
        if (voters.length > 0) error.message += '; the routes that answered all weigh 0';
        return withError(event, error, name);
      }
      const rows = predictions[0].length;
      const uneven = predictions.findIndex((p) => p.length !== rows);
      if (uneven >= 0) {
        const counts = voters.map((v, k) => `'${names[v]}' ${predictions[k].length}`).join(', ');
        return withError(
          event,
          new TypeError(`voting ensemble '${name}': the routes predicted different numbers of rows (${counts})`),
          name,
        );
      }
      type ??= inferVoteType(predictions);
      if (type === 'classification') {
        for (let k = 0; k < predictions.length; k++) {
          const row = predictions[k].findIndex((v) => !Number.isInteger(v));
          if (row >= 0) {
            return withError(
              event,
              new TypeError(
                `voting ensemble '${name}': route '${names[voters[k]]}' predicted ${predictions[k][row]} for row ${row}; a classification vote needs integer classes`,
              ),
              name,
            );
          }
        }
      }
      const votes = vote(
        type,
        predictions,
        voters.map((i) => weights[i]),
      );
      return withBody(event, {
        id: event.id,
        model_name: name,
        outputs: keyed ? { [predictionColName]: votes } : votes,
        ...(Object.keys(errors).length > 0 ? { errors } : {}),
      });
    };

    /** `ready` and `metadata` of the whole ensemble: asked of every route. */
    const probe = (event: ServingEvent, op: 'ready' | 'metadata'): void =>
      set.broadcast(withOperation(event, op), (answers) => {
        const failed = answers.find((a) => a.error !== undefined);
        if (failed !== undefined) return emit(answerOf(event, failed, event.body, name));
        if (op === 'ready') return emit(answerOf(event, answers[0], { name, ready: true }, name));
        // The first route that tells its inputs / outputs speaks for the ensemble (MLRun).
        const meta = answers.map((a) => (a.body ?? {}) as { inputs?: unknown; outputs?: unknown });
        const first = (field: 'inputs' | 'outputs') => meta.map((m) => m[field]).find((v) => Array.isArray(v) && v.length > 0) ?? [];
        emit(answerOf(event, answers[0], { name, version: '', inputs: first('inputs'), outputs: first('outputs') }, name));
      });

    return (event) => {
      const target = parseV2Path(event.path, prefix);
      if (target.outside) return emit(withError(event, outsidePrefix(name, names, event.path!, prefix), name));
      if (target.list) return emit(withBody(event, listing));
      let model = target.model ?? bodyField(event.body, 'model') ?? name;
      let op = target.op;
      // `<prefix>/infer`: an operation of the ensemble, unless a route has that name.
      if (
        target.model !== undefined &&
        op === undefined &&
        target.version === undefined &&
        ENSEMBLE_OPS.has(model) &&
        routeOf(set, model, undefined) < 0
      ) {
        op = model;
        model = name;
      }
      op ??= bodyField(event.body, 'operation') ?? 'infer';
      if (model !== name) {
        const route = routeOf(set, model, target.version);
        if (route < 0) return emit(withError(event, unknownModel(name, [...names, name], model, target.version), name));
        const problem = requestProblem(name, model, op, event.body);
        if (problem !== undefined) return emit(withError(event, problem, name));
        const [modelName, routeVersion] = splitVersion(names[route]);
        return runOnRoute(name, set, route, modelName, target.version ?? routeVersion, op, event, emit);
      }
      return ensembleOperation(event, op);
    };

    function ensembleOperation(event: ServingEvent, op: string): void {
      if (op === 'ready' || op === 'metadata') return probe(event, op);
      if (op !== 'infer' && op !== 'predict') {
        const error = new TypeError(
          `voting ensemble '${name}' answers infer, predict, metadata and ready; '${op}' needs one of its routes: ${prefix}/<route>/${op} (routes: ${names.map((n) => `'${n}'`).join(', ')})`,
        );
        return emit(withError(event, error, name));
      }
      const problem = requestProblem(name, name, op, event.body);
      if (problem !== undefined) return emit(withError(event, problem, name));
      ensemble(event);
    }
  });
  return asV2Server(operator, { kind: 'VotingEnsemble', name, prefix, models: listing.models });
}
