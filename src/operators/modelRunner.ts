import * as t from 'io-ts';
import { asyncScheduler, Observable, type OperatorFunction, type Subscription } from 'rxjs';
import { cloneBody } from '../clone.js';
import { GraphCodec, decodeOrThrow, guard, strict } from '../config.js';
import {
  ConfigError,
  ModelRunnerError,
  ModelTimeoutError,
  SelectorError,
  describeError,
  toError,
} from '../errors.js';
import { getPath, hasPath, isErrored, setPath, withBody, withError, type ServingEvent } from '../event.js';
import { createDefaultExecutor } from '../execution/defaultExecutor.js';
import { PoolOptionsCodec, type PoolOptions } from '../execution/poolOptions.js';
import type { Executor, ExecutorSession } from '../execution/executor.js';
import type { Graph } from '../graph.js';
import type { GraphMonitor, LaneStats } from '../monitoring/monitor.js';
import { decodeModelEntries, type ModelEntry } from '../model/entry.js';
import { createSelect, isSelectorLike, resolveSelector, type SelectorLike } from '../selector.js';
import { CallContext, unsubscribedReason } from './internal/callContext.js';
import { dispatch, type DispatchLimits, type Work } from './internal/dispatch.js';
import { dispatchOptionProps, limitsFrom } from './internal/options.js';
import { settle } from './internal/settle.js';

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
   * The graph that owns this step's models (loads them once for all subscriptions, closes them on
   * `graph.close()`) and its proxies' shared models; default: a private one per subscription.
   */
  readonly graph?: Graph;
}

const ExecutorCodec = guard<Executor>('an Executor ({ open(models, hooks) })', (u) => typeof (u as Executor | null)?.open === 'function');

const SelectorCodec = guard<SelectorLike>('a ModelSelector, a selector function or a registered selector name', isSelectorLike);


const ModelRunnerConfigCodec = strict(
  'ModelRunnerConfig',
  { models: t.unknown },
  {
    ...dispatchOptionProps,
    selector: SelectorCodec,
    selectorParams: t.UnknownRecord,
    raiseException: t.boolean,
    pool: PoolOptionsCodec,
    executor: ExecutorCodec,
    graph: GraphCodec,
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
  // With a graph, the graph owns the session (one for all subscriptions); without, each
  // subscription opens and closes its own.
  const binding = graph?.bindStep(limits.step, models, options.pool, options.executor);
  const executor = options.executor ?? createDefaultExecutor(options.pool);

  return (source) =>
    new Observable<ServingEvent>((subscriber) => {
      let selectFn;
      let session: ExecutorSession;
      let runner: Runner | undefined;
      let release: () => void;
      let monitor: GraphMonitor | undefined;
      try {
        selectFn = resolveSelector(selector, selectorParams, `${limits.step}.selector`);
        if (binding) {
          const held = binding.acquire({
            fail: (error) => subscriber.error(error),
            abort: (error) => runner?.failAll(error),
            lanes: () => runner?.laneStats() ?? [],
          });
          session = held.session;
          release = held.release;
          monitor = held.monitor;
        } else {
          session = executor.open(models, { step: limits.step, fail: (error) => subscriber.error(error) });
          release = () => closeSession(session);
        }
      } catch (error) {
        subscriber.error(error instanceof ConfigError ? error : toError(error));
        return;
      }
      runner = new Runner(models, limits, raiseException, session, createSelect(selectFn, models, limits.step), monitor);
      const control = dispatch(source, subscriber, limits, runner.work, isErrored, { paused: session.ready !== undefined });
      // After dispatch's own teardown (which aborts the calls), release the models.
      subscriber.add(release);
      session.ready?.then(
        () => control.resume(),
        () => undefined, // the executor reports load failures through hooks.fail
      );
    });
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

const wallClock = (): number => performance.timeOrigin + performance.now();

/** One model's lane: its own concurrency limit and FIFO queue ("per-model scheduler"). */
class Lane {
  active = 0;
  pumping = false;
  readonly queue: Call[] = [];
  constructor(readonly limit: number) {}
}

/** One model call of one event. */
class Call {
  settled = false;
  /** Started in its lane (holds a lane slot until finished). */
  running = false;
  started = 0;
  context: CallContext | undefined;
  timer: Subscription | undefined;
  cancelResult: (() => void) | undefined;
  constructor(
    readonly run: EventRun,
    /** Position in the event's selection. */
    readonly position: number,
    /** Index of the model in the step. */
    readonly model: number,
  ) {}
}

/** The state of one event inside the step. */
class EventRun {
  remaining: number;
  readonly values: unknown[];
  readonly errors: (Error | undefined)[];
  readonly timings: { when: string; latencyMs: number }[];
  /** Start (epoch ms) and latency of each call, for monitoring. */
  readonly starts: number[];
  readonly latencies: number[];
  readonly calls: Call[];
  constructor(
    readonly event: ServingEvent,
    readonly selected: readonly number[],
    readonly done: (out: ServingEvent) => void,
  ) {
    const n = selected.length;
    this.remaining = n;
    this.values = new Array(n);
    this.errors = new Array(n);
    this.timings = new Array(n);
    this.starts = new Array(n);
    this.latencies = new Array(n);
    this.calls = new Array(n);
  }
}

/** Per-subscription state of a modelRunner step. */
class Runner {
  private readonly lanes: Lane[];
  /** Per model: whether the executor copies inputs itself (worker mechanisms). */
  private readonly executorCopies: boolean[];
  private readonly indexOf = new Map<string, number>();
  private readonly now: () => number;
  private readonly single: boolean;

  constructor(
    private readonly models: readonly ModelEntry[],
    private readonly limits: DispatchLimits,
    private readonly raiseException: boolean,
    private readonly session: ExecutorSession,
    private readonly select: (event: ServingEvent) => readonly string[] | SelectorError,
    private readonly monitor?: GraphMonitor,
  ) {
    this.lanes = models.map((m) => new Lane(m.maxInFlight ?? Infinity));
    this.executorCopies = models.map((m) => session.copiesInput?.(m.endpointName) ?? false);
    models.forEach((m, i) => this.indexOf.set(m.endpointName, i));
    this.now = session.now ? () => session.now!() : wallClock;
    // MLRun merges by the number of *registered* models, not selected ones.
    this.single = models.length === 1;
  }

  /** Events inside the step, for failAll(). */
  private readonly active = new Set<EventRun>();

  readonly work: Work = (event, done) => {
    const selection = this.select(event);
    if (selection instanceof SelectorError) {
      done(withError(event, selection, this.limits.step));
      return undefined;
    }
    const run = new EventRun(
      event,
      selection.map((name) => this.indexOf.get(name)!),
      done,
    );
    if (run.remaining === 0) {
      this.complete(run);
      return undefined;
    }
    this.active.add(run);
    for (let i = 0; i < run.selected.length; i++) {
      const call = new Call(run, i, run.selected[i]);
      run.calls[i] = call;
      this.submit(call);
    }
    return () => this.cancel(run);
  };

  private submit(call: Call): void {
    const lane = this.lanes[call.model];
    if (lane.active < lane.limit && lane.queue.length === 0) this.start(call);
    else {
      lane.queue.push(call);
      this.pump(lane);
    }
  }

  private pump(lane: Lane): void {
    if (lane.pumping) return;
    lane.pumping = true;
    try {
      while (lane.active < lane.limit && lane.queue.length > 0) {
        const call = lane.queue.shift()!;
        if (!call.settled) this.start(call);
      }
    } finally {
      lane.pumping = false;
    }
  }

  private start(call: Call): void {
    const entry = this.models[call.model];
    const { event } = call.run;
    this.lanes[call.model].active++;
    call.running = true;
    call.started = this.now();
    let input: unknown;
    try {
      if (entry.inputPath !== undefined && !hasPath(event.body, entry.inputPath)) {
        throw new TypeError(`inputPath '${entry.inputPath}' is not in the body of event '${event.id}'`);
      }
      input = getPath(event.body, entry.inputPath);
      if (!this.executorCopies[call.model]) input = cloneBody(input);
    } catch (error) {
      this.finish(call, undefined, toError(error));
      return;
    }
    const context = new CallContext(event.id, entry.endpointName, event.path);
    call.context = context;
    if (entry.timeoutMs !== undefined) {
      call.timer = asyncScheduler.schedule(() => this.timeOut(call), entry.timeoutMs);
    }
    const cancel = settle(
      () => this.session.invoke(entry.endpointName, input, context),
      (value) => this.finish(call, value, undefined),
      (error) => this.finish(call, undefined, toError(error)),
    );
    if (!call.settled) call.cancelResult = cancel;
  }

  private timeOut(call: Call): void {
    if (call.settled) return;
    const entry = this.models[call.model];
    const error = new ModelTimeoutError(entry.endpointName, entry.timeoutMs!);
    call.context?.abort(error);
    call.cancelResult?.();
    this.finish(call, undefined, error);
  }

  private finish(call: Call, value: unknown, error: Error | undefined): void {
    if (call.settled) return;
    call.settled = true;
    call.timer?.unsubscribe();
    const end = this.now();
    if (!call.running) call.started = end; // failed while waiting in its lane
    const lane = this.lanes[call.model];
    if (call.running) lane.active--;
    call.running = false;
    const { run, position } = call;
    run.values[position] = value;
    run.errors[position] = error;
    const latencyMs = Math.round((end - call.started) * 1000) / 1000;
    run.timings[position] = { when: new Date(call.started).toISOString(), latencyMs };
    run.starts[position] = call.started;
    run.latencies[position] = latencyMs;
    if (lane.queue.length > 0) this.pump(lane);
    if (--run.remaining === 0) this.complete(run);
  }

  /** Occupancy of each model's lane. */
  laneStats(): LaneStats[] {
    return this.models.map((m, i) => ({
      endpointName: m.endpointName,
      step: this.limits.step,
      inFlight: this.lanes[i].active,
      queued: this.lanes[i].queue.length,
    }));
  }

  /**
   * Fails every call still running or waiting in a lane with `error` (the graph closing): their
   * events leave now, errored, instead of waiting for work that will not finish.
   */
  failAll(error: Error): void {
    for (const run of [...this.active]) {
      for (const call of run.calls) {
        if (call === undefined || call.settled) continue;
        call.context?.abort(error);
        call.cancelResult?.();
        this.finish(call, undefined, error);
      }
    }
  }

  private cancel(run: EventRun): void {
    this.active.delete(run);
    const reason = unsubscribedReason(this.limits.step);
    for (const call of run.calls) {
      if (call === undefined || call.settled) continue;
      call.settled = true;
      call.timer?.unsubscribe();
      call.context?.abort(reason);
      call.cancelResult?.();
    }
  }

  private complete(run: EventRun): void {
    this.active.delete(run);
    const { event, selected, values, errors, timings } = run;
    let body: unknown;
    const failed = errors.some((e) => e !== undefined);
    const output = (i: number): unknown => {
      const error = errors[i];
      if (error !== undefined) return { error: describeError(error) };
      const resultPath = this.models[selected[i]].resultPath;
      return resultPath === undefined ? values[i] : setPath(event.body, resultPath, values[i]);
    };
    if (selected.length === 0) body = {};
    else if (this.single) body = output(0);
    else {
      const merged: Record<string, unknown> = {};
      for (let i = 0; i < selected.length; i++) merged[this.models[selected[i]].endpointName] = output(i);
      body = merged;
    }
    const previous = event.metadata.models as Record<string, unknown> | undefined;
    const models: Record<string, unknown> = previous ? { ...previous } : {};
    for (let i = 0; i < selected.length; i++) models[this.models[selected[i]].endpointName] = timings[i];
    const metadata = {
      ...event.metadata,
      modelRunner: { name: this.limits.step, inputs: event.body },
      models,
    };
    if (this.monitor?.active) {
      this.monitor.onEvent({
        step: this.limits.step,
        event,
        models: this.models,
        selected,
        values,
        errors,
        starts: run.starts,
        latencies: run.latencies,
      });
    }
    let out = withBody(event, body, { metadata });
    if (failed && this.raiseException) {
      const modelsErrors: Record<string, string | null> = {};
      for (let i = 0; i < selected.length; i++) {
        const error = errors[i];
        modelsErrors[this.models[selected[i]].endpointName] = error === undefined ? null : describeError(error);
      }
      out = withError(out, new ModelRunnerError(this.limits.step, modelsErrors), this.limits.step);
    }
    run.done(out);
  }
}
