// modelRunner (MLRun's ModelRunnerStep): the operator, its options, and where its models come from.
import * as t from 'io-ts';
import { Observable, type OperatorFunction, type Subscriber } from 'rxjs';
import { decodeOrThrow, guard, strict } from '../decode.js';
import { ConfigError, ModelNotReadyError, toError } from '../errors.js';
import { isErrored, withError, type ServingEvent } from '../event.js';
import { createDefaultExecutor } from '../execution/defaultExecutor.js';
import { PoolOptionsCodec, type PoolOptions } from '../execution/poolOptions.js';
import type { Executor, ExecutorSession } from '../execution/executor.js';
import { isLoaded, trackLoad } from '../execution/loaded.js';
import { BIND_STEP, isSessionProvider, type GraphRef, type SessionProvider, type StepBinding } from '../execution/provider.js';
import type { GraphMonitor } from '../monitoring/monitor.js';
import { decodeModelEntries, type ModelEntry } from '../model/entry.js';
import { createSelect, isSelectorLike, resolveSelector, type SelectorLike } from '../selector.js';
import { dispatch, type DispatchStats } from './internal/dispatch.js';
import { dispatchOptionProps, limitsFrom } from './internal/dispatchOptions.js';
import { Runner } from './internal/runner.js';

/** Configuration of a `modelRunner` step (MLRun's ModelRunnerStep). */
export interface ModelRunnerConfig {
  /** Step name; default `'model_runner'`. */
  readonly name?: string;
  /** The step's models; at least one. */
  readonly models: readonly ModelEntry[];
  /** Picks the models per event; none = all models. A string names a registered selector. */
  readonly selector?: SelectorLike;
  /** Constructor parameters of a selector given by name (or as a class). */
  readonly selectorParams?: Readonly<Record<string, unknown>>;
  /** Fail the event with `ModelRunnerError` when any model failed; default `true`. */
  readonly raiseException?: boolean;
  /** Emit events in arrival order; default `true`. */
  readonly ordered?: boolean;
  /** Events inside the step at once; default 64. */
  readonly maxInFlight?: number;
  /** Events waiting beyond `maxInFlight` (`Infinity` allowed); default 10,000. More → `QueueFullError`. */
  readonly maxQueue?: number;
  /**
   * Worker pools of this step: `min(models × poolFactor, max)` threads (`maxThreads`, default 32)
   * or processes (`maxProcesses`, default the CPU count); `piscina` to use your own pool.
   */
  readonly pool?: PoolOptions;
  /** Runs the models; default: one executor per `executionMechanism`. Tests inject their own. */
  readonly executor?: Executor;
  /**
   * The graph (made by `createGraph()`) that owns this step's models: loads them once for all
   * subscriptions, closes them on `graph.close()`, and serves its proxies' shared models. The step
   * joins the graph when first subscribed (`graph.modelRunner()` joins at once). Default: the
   * models belong to each subscription.
   */
  readonly graph?: GraphRef;
}

const ExecutorCodec = guard<Executor>('an Executor ({ open(models, hooks) })', (u) => typeof (u as Executor | null)?.open === 'function');

const SelectorCodec = guard<SelectorLike>('a ModelSelector, a selector function or a registered selector name', isSelectorLike);

export const ModelRunnerConfigCodec = strict(
  'ModelRunnerConfig',
  { models: t.unknown },
  {
    ...dispatchOptionProps,
    selector: SelectorCodec,
    selectorParams: t.UnknownRecord,
    raiseException: t.boolean,
    pool: PoolOptionsCodec,
    executor: ExecutorCodec,
    graph: guard<SessionProvider>('a graph made by createGraph()', isSessionProvider),
  },
);

/**
 * Runs several models on each event, each on its own execution mechanism, and merges their outputs.
 *
 * MLRun's ModelRunnerStep as an operator. Per event, the selector picks models (none given = all);
 * each selected model gets its own copy of its input (`inputPath`, or the whole body) and runs in
 * its own lane, so a slow model never blocks another's. With one registered model the body becomes
 * its output; with several, `{ [endpointName]: output }`. A failed model's output is
 * `{ error: '<ErrorName>: <message>' }`, and with `raiseException` (the default) the event leaves
 * errored with `ModelRunnerError`. Errored events pass through untouched. Every event that enters
 * leaves exactly once; past `maxInFlight + maxQueue`, one leaves at once with `QueueFullError`.
 * Models load when the step is subscribed (events wait, bounded) and close when it ends;
 * unsubscribing aborts calls in flight.
 *
 * ## Example
 * ```ts
 * import { of } from 'rxjs';
 * import { Model, asEvents, modelRunner } from 'rxserve';
 * class Inc extends Model { predict(b: { n: number }) { return { n: b.n + (this.params.by as number) }; } }
 * of({ n: 1 }).pipe(
 *   asEvents(),
 *   modelRunner({ models: [
 *     { endpointName: 'plus1', modelClass: Inc, executionMechanism: 'naive', params: { by: 1 } },
 *     { endpointName: 'plus2', modelClass: Inc, executionMechanism: 'asyncio', params: { by: 2 } },
 *   ] }),
 * ).subscribe((e) => console.log(e.body));
 * // { plus1: { n: 2 }, plus2: { n: 3 } }
 * ```
 * @see selectModels
 * @param config The step's models and options; validated now, `ConfigError` on a bad field.
 * @returns An operator from serving events to serving events.
 */
export function modelRunner(config: ModelRunnerConfig): OperatorFunction<ServingEvent, ServingEvent> {
  const options = decodeOrThrow(ModelRunnerConfigCodec, config, 'modelRunner');
  const limits = limitsFrom(options, 'model_runner');
  const models = decodeModelEntries(config.models, 'modelRunner.models');
  const { selector, selectorParams, raiseException = true, graph } = options;
  const executor = options.executor ?? createDefaultExecutor(options.pool);
  // With a graph, the graph owns the session (one for all subscriptions): the step joins it at
  // its first subscription, so this factory stays pure (no endpoint name claimed before).
  let binding: StepBinding | undefined;

  return (source) =>
    new Observable<ServingEvent>((subscriber) => {
      let runner: Runner | undefined;
      let session: ExecutorSession;
      let release: () => void;
      let monitor: GraphMonitor | undefined;
      let stats: DispatchStats = { rejected: 0 };
      let counts: () => { inFlight: number; queued: number } = () => ({ inFlight: 0, queued: 0 });
      let selectFn;
      try {
        selectFn = resolveSelector(selector, selectorParams, `${limits.step}.selector`);
        if (graph) {
          binding ??= graph[BIND_STEP]({ step: limits.step, models, pool: options.pool, executor: options.executor });
          const held = binding.acquire({
            fail: (error) => subscriber.error(error),
            abort: (error) => runner?.failAll(error),
            lanes: () => runner?.laneStats() ?? [],
            stats: () => counts(),
          });
          session = held.session;
          release = held.release;
          monitor = held.monitor;
          stats = binding.intake;
        } else {
          session = trackLoad(executor.open(models, { step: limits.step, fail: (error) => subscriber.error(error) }));
          release = () => closeSession(session);
        }
      } catch (error) {
        subscriber.error(error instanceof ConfigError ? error : toError(error));
        return;
      }
      runner = new Runner(models, limits, raiseException, session, createSelect(selectFn, models, limits.step), monitor);
      const control = dispatch(whileLoading(source, subscriber, session, limits.step, models), subscriber, limits, runner.work, isErrored, {
        paused: session.ready !== undefined,
        stats,
        operator: 'modelRunner',
      });
      counts = control.counts;
      // After dispatch's own teardown (which aborts the calls), release the models.
      subscriber.add(release);
      session.ready?.then(
        () => control.resume(),
        () => undefined, // the executor reports load failures through hooks.fail
      );
    });
}

/**
 * The step's intake while its models load: a V2 `ready` request (`metadata.operation: 'ready'`)
 * is answered at once, errored with `ModelNotReadyError` (HTTP 408, as MLRun), instead of waiting
 * for the load with the other events; once loaded, the runner answers it. So it can leave before
 * events that came earlier.
 */
function whileLoading(
  source: Observable<ServingEvent>,
  out: Subscriber<ServingEvent>,
  session: ExecutorSession,
  step: string,
  models: readonly ModelEntry[],
): Observable<ServingEvent> {
  if (isLoaded(session)) return source;
  return new Observable<ServingEvent>((intake) =>
    source.subscribe({
      next: (event) => {
        if ((event as ServingEvent | null)?.metadata?.operation !== 'ready' || event.error !== undefined || isLoaded(session))
          intake.next(event);
        else
          out.next(
            withError(
              event,
              new ModelNotReadyError(
                step,
                models.map((m) => m.endpointName),
              ),
              step,
            ),
          );
      },
      error: (error: unknown) => intake.error(error),
      complete: () => intake.complete(),
    }),
  );
}

// Teardown cannot report errors; a failing close() must not become an unhandled rejection.
function closeSession(session: ExecutorSession): void {
  try {
    const closing = session.close();
    if (closing) closing.catch(() => undefined);
  } catch {
    /* see above */
  }
}
