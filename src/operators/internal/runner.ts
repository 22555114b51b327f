// The per-subscription state of a modelRunner step: each event's selected models become calls in
// their models' lanes; when the last call of an event settles, outputs merge as MLRun does.
import { EmptyError, isObservable, Subscriber } from 'rxjs';
import { ModelRunnerError, ModelTimeoutError, SelectorError, describeError, toError } from '../../errors.js';
import { EMPTY_METADATA, getPath, hasPath, setPath, withBody, withError, type ServingEvent } from '../../event.js';
import type { ExecutorSession } from '../../execution/executor.js';
import { CallContext } from '../../model/callContext.js';
import { callOperation } from '../../model/operation.js';
import { unsubscribedReason } from './stepContext.js';
import type { ModelEntry } from '../../model/entry.js';
import type { GraphMonitor, LaneStats } from '../../monitoring/monitor.js';
import type { DispatchLimits, Work } from './dispatch.js';
import { Lane, LaneCall, reportUncaught, type LaneUnit } from '../../execution/lane.js';
import { batches, runBatch } from '../../execution/batch.js';
import { onResult, settlesLater } from '../../execution/callResult.js';
import { isoTime } from '../../monitoring/isoTime.js';

// The origin read once: \`performance.timeOrigin\` is a getter, and the clock is read twice per call.
// So is the global \`performance\` itself (node defines it as a lazy accessor): each read went
// through LoadGlobalIC's slow path and the getter, ~250 instructions a call.
const clock = performance;
const timeOrigin = clock.timeOrigin;
const wallClock = (): number => timeOrigin + clock.now();

/** What `Runner.prepare` answers for a call whose input is missing. */
const MISSING: unique symbol = Symbol('rxserve.missingInput');

/** One model call of one event; its outcome and timing stay on it. */
export class ModelCall extends LaneCall {
  context: CallContext | undefined = undefined;
  started = 0;
  latencyMs = 0;
  value: unknown = undefined;
  error: Error | undefined = undefined;
  constructor(
    readonly run: EventRun,
    /** The model's entry and its index in the step. */
    readonly entry: ModelEntry,
    readonly model: number,
  ) {
    super();
  }

  abort(reason: unknown): void {
    this.context?.abort(reason);
  }

  settled(value: unknown, error: Error | undefined): void {
    this.value = value;
    this.error = error;
    this.run.runner.callSettled(this);
  }
}

/**
 * Settles a call with the first value of its Observable result (and unsubscribes it), as
 * `onResult` does; an Observable that completes empty fails the call with `EmptyError`. What
 * settling throws (a subscriber downstream) is reported as a SafeSubscriber reports an observer's
 * throw, not thrown back into the session that emitted.
 */
class CallSubscriber extends Subscriber<unknown> {
  constructor(
    private readonly lane: Lane<ModelCall>,
    private readonly call: ModelCall,
  ) {
    super();
  }

  protected override _next(value: unknown): void {
    this.settle(value, undefined);
  }

  protected override _error(error: unknown): void {
    this.settle(undefined, toError(error));
  }

  protected override _complete(): void {
    this.settle(undefined, new EmptyError());
  }

  private settle(value: unknown, error: Error | undefined): void {
    this.unsubscribe();
    try {
      this.lane.settle(this.call, value, error);
    } catch (thrown) {
      reportUncaught(thrown);
    }
  }
}

/** One event inside the step. */
export class EventRun {
  remaining = 0;
  calls: ModelCall[] = [];
  constructor(
    readonly runner: Runner,
    readonly event: ServingEvent,
    readonly done: (out: ServingEvent) => void,
    /** The V2 operation its models run (`metadata.operation`); undefined: `predict`. */
    readonly operation: string | undefined,
  ) {}
}

/** Per-subscription state of a modelRunner step. */
export class Runner {
  private readonly lanes: Lane<ModelCall>[];
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
    this.lanes = models.map(
      (entry) =>
        new Lane<ModelCall>({
          name: entry.endpointName,
          maxInFlight: entry.maxInFlight,
          timeoutMs: entry.timeoutMs,
          timeoutError: () => new ModelTimeoutError(entry.endpointName, entry.timeoutMs!),
          ...(entry.batching ? { batching: entry.batching } : {}),
          run: (calls, unit) => {
            if (calls.length > 1 && batches(this.session)) {
              // Only predict calls batch: another operation (explain, op_*) runs alone. The usual
              // batch is all predicts: it goes as it is, without a filtered copy.
              if (allPredicts(calls)) return this.startBatch(calls, unit);
              const predicts = calls.filter((c) => c.run.operation === undefined);
              for (const call of calls) if (call.run.operation !== undefined) this.start(call);
              if (predicts.length > 1) this.startBatch(predicts, unit);
              else if (predicts.length === 1) this.start(predicts[0]);
            } else for (let i = 0; i < calls.length; i++) this.start(calls[i]);
          },
        }),
    );
    models.forEach((m, i) => this.indexOf.set(m.endpointName, i));
    this.now = session.now ? () => session.now!() : wallClock;
    // MLRun merges by the number of *registered* models, not selected ones.
    this.single = models.length === 1;
  }

  readonly work: Work = (event, done) => {
    const selection = this.select(event);
    if (selection instanceof SelectorError) {
      done(withError(event, selection, this.limits.step));
      return undefined;
    }
    const operation = callOperation(event.metadata.operation);
    if (operation !== undefined) {
      // The step runs only once its models are loaded (modelRunner answers 'ready' before that itself).
      if (operation === 'ready') {
        done(withBody(event, { ready: true }));
        return undefined;
      }
      if (this.models.length > 1) {
        const names = this.models.map((m) => `'${m.endpointName}'`).join(', ');
        const error = new TypeError(
          `step '${this.limits.step}' has ${this.models.length} models (${names}): operation '${operation}' needs a route of one model; several models answer 'infer' only`,
        );
        done(withError(event, error, this.limits.step));
        return undefined;
      }
    }
    const run = new EventRun(this, event, done, operation);
    run.remaining = selection.length;
    if (run.remaining === 0) {
      this.complete(run);
      return undefined;
    }
    const calls: ModelCall[] = new Array<ModelCall>(selection.length);
    for (let i = 0; i < selection.length; i++) {
      const name = selection[i];
      // All models in step order (no selector, or one that chose them all): no lookup.
      const model = i < this.models.length && this.models[i].endpointName === name ? i : this.indexOf.get(name)!;
      calls[i] = new ModelCall(run, this.models[model], model);
    }
    run.calls = calls;
    for (let i = 0; i < calls.length; i++) this.lanes[calls[i].model].submit(calls[i]);
    return run.remaining === 0 ? undefined : (reason?: unknown) => this.cancel(run, reason);
  };

  /**
   * The call's input, its context made (`call.context`); `MISSING` when its input is missing (the
   * call then failed). No `{ input, context }` pair per call: V8 pretenured that short-lived
   * literal on a busy pool step, and an old one keeps its young context alive through scavenges.
   */
  private prepare(call: ModelCall): unknown {
    const { entry } = call;
    const { event, operation } = call.run;
    call.started = this.now();
    let input: unknown;
    // predict and explain read the model's input; custom operations and metadata get the whole body (MLRun's op_* get the event).
    const inputPath = operation === undefined || operation === 'explain' ? entry.inputPath : undefined;
    try {
      if (inputPath !== undefined && !hasPath(event.body, inputPath)) {
        throw new TypeError(`inputPath '${inputPath}' is not in the body of event '${event.id}'`);
      }
      input = getPath(event.body, inputPath);
    } catch (error) {
      this.lanes[call.model].settle(call, undefined, toError(error));
      return MISSING;
    }
    const { partials } = event;
    const endpoint = entry.endpointName;
    call.context = new CallContext(event.id, endpoint, event.path, partials && ((data) => partials({ endpoint, data })), operation);
    return input;
  }

  /** Several calls of one batching model: one `invokeBatch`, each call settled with its element. */
  private startBatch(calls: readonly ModelCall[], unit: LaneUnit): void {
    const { entry, model } = calls[0];
    const ready: ModelCall[] = [];
    const inputs: unknown[] = [];
    const contexts: CallContext[] = [];
    for (let i = 0; i < calls.length; i++) {
      const call = calls[i];
      const input = this.prepare(call);
      if (input === MISSING) continue;
      ready.push(call);
      inputs.push(input);
      contexts.push(call.context!);
    }
    if (ready.length === 0) return;
    runBatch(entry.endpointName, this.lanes[model], unit, ready, inputs, contexts, (ins, ctxs) =>
      this.session.invokeBatch!(entry.endpointName, ins, ctxs),
    );
  }

  private start(call: ModelCall): void {
    const { entry } = call;
    const input = this.prepare(call);
    if (input === MISSING) return;
    const context = call.context!;
    const lane = this.lanes[call.model];
    let result: unknown;
    try {
      result = this.session.invoke(entry.endpointName, input, context);
    } catch (error) {
      lane.settle(call, undefined, toError(error));
      return;
    }
    // A value (a naive model's answer) settles now, without onResult's three closures per call.
    if (!settlesLater(result)) {
      lane.settle(call, result, undefined);
      return;
    }
    // An Observable (a worker pool's call) is subscribed by the call's own subscriber: no observer
    // object, SafeSubscriber and three closures per call on the pooled path (issue 26 goal 4).
    if (isObservable(result)) {
      const subscriber = new CallSubscriber(lane, call);
      result.subscribe(subscriber);
      if (!call.done) call.cancelWork = () => subscriber.unsubscribe();
      return;
    }
    const cancel = onResult(
      () => result,
      (value) => lane.settle(call, value, undefined),
      (error) => lane.settle(call, undefined, toError(error)),
    );
    if (!call.done) call.cancelWork = cancel;
  }

  /** A call has its outcome (from its lane). */
  callSettled(call: ModelCall): void {
    const end = this.now();
    if (call.started === 0) call.started = end; // failed while waiting in its lane
    call.latencyMs = Math.round((end - call.started) * 1000) / 1000;
    const { run } = call;
    if (--run.remaining === 0) this.complete(run);
  }

  /** Occupancy of each model's lane. */
  laneStats(): LaneStats[] {
    return this.models.map((m, i) => ({ endpointName: m.endpointName, step: this.limits.step, ...this.lanes[i].counts() }));
  }

  /**
   * Fails every call still running or waiting in a lane with `error` (the graph closing): their
   * events leave now, errored, instead of waiting for work that will not finish.
   */
  failAll(error: Error): void {
    for (const lane of this.lanes) lane.failAll(error);
  }

  /** The event was cancelled (its own cancel's reason) or the subscription ended (no reason). */
  private cancel(run: EventRun, why?: unknown): void {
    const reason = why ?? unsubscribedReason(this.limits.step);
    for (const call of run.calls) this.lanes[call.model].cancel(call, reason);
  }

  private complete(run: EventRun): void {
    const { event, calls, operation } = run;
    let body: unknown;
    if (calls.length === 0) body = {};
    else if (this.single) body = outputOf(calls[0], event, operation);
    else {
      const merged: Record<string, unknown> = {};
      for (let i = 0; i < calls.length; i++) merged[calls[i].entry.endpointName] = outputOf(calls[i], event, operation);
      body = merged;
    }
    const previous = event.metadata.models as Record<string, unknown> | undefined;
    const models: Record<string, unknown> = previous ? { ...previous } : {};
    for (let i = 0; i < calls.length; i++) {
      const call = calls[i];
      models[call.entry.endpointName] = { when: isoTime(call.started), latencyMs: call.latencyMs };
    }
    const modelRunner = { name: this.limits.step, inputs: event.body };
    // No spread of the (frozen) empty metadata most events carry: V8 copies a frozen object on a slow path.
    const metadata = event.metadata === EMPTY_METADATA ? { modelRunner, models } : { ...event.metadata, modelRunner, models };
    // Monitoring records predictions: explain, metadata and custom operations are not (their answers are not outputs).
    if (this.monitor?.active && operation === undefined) this.monitor.onEvent({ step: this.limits.step, event, calls });
    let out = withBody(event, body, { metadata });
    if (this.raiseException && failed(calls)) {
      const modelsErrors: Record<string, string | null> = {};
      for (const call of calls) modelsErrors[call.entry.endpointName] = call.error === undefined ? null : describeError(call.error);
      // The first failure itself as the cause: serve() answers an LLM provider's 429 as a 429 (§10).
      const cause = calls.find((c) => c.error !== undefined)!.error;
      out = withError(out, new ModelRunnerError(this.limits.step, modelsErrors, { cause }), this.limits.step);
    }
    run.done(out);
  }
}

/**
 * A model's answer to `metadata`: the inputs and outputs it reports itself (OnnxModel's tensors),
 * else its entry's `inputs` / `outputs` names, else `[]`.
 */
/** A call's part of the merged body (MLRun's merge of model outputs). */
function outputOf(call: ModelCall, event: ServingEvent, operation: string | undefined): unknown {
  if (call.error !== undefined) return { error: describeError(call.error) };
  if (operation !== undefined) return operation === 'metadata' ? metadataOf(call) : call.value;
  const { resultPath } = call.entry;
  return resultPath === undefined ? call.value : setPath(event.body, resultPath, call.value);
}

function allPredicts(calls: readonly ModelCall[]): boolean {
  for (let i = 0; i < calls.length; i++) if (calls[i].run.operation !== undefined) return false;
  return true;
}

function failed(calls: readonly ModelCall[]): boolean {
  for (let i = 0; i < calls.length; i++) if (calls[i].error !== undefined) return true;
  return false;
}

function metadataOf(call: ModelCall): { inputs: readonly unknown[]; outputs: readonly unknown[] } {
  const own = (call.value ?? {}) as { inputs?: unknown; outputs?: unknown };
  const { entry } = call;
  return {
    inputs: Array.isArray(own.inputs) && own.inputs.length > 0 ? own.inputs : (entry.inputs ?? []),
    outputs: Array.isArray(own.outputs) && own.outputs.length > 0 ? own.outputs : (entry.outputs ?? []),
  };
}
