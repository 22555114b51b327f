// The worker side: builds each model once per worker/process, runs batches of calls, cancels them.
import { ModelLoadError, toError } from '../errors.js';
import { Model } from '../model/model.js';
import { importModelClass } from '../model/registry.js';
import { CallContext } from '../model/callContext.js';
import { runOperation } from '../model/operation.js';
import { loadBuiltIn } from './workerBuiltins.js';
import { wireCodec, type WireCodec } from './wireCodecs.js';
import { flatten, inspectForWorker, serializeError, type WireBatch, type WireCall, type WireResult, type WorkerModelSpec } from './protocol.js';

/** Classes every worker knows without a module reference. */

/**
 * Holds the models of one worker thread or child process. A model is constructed and loaded the
 * first time a call (or a load request) needs it, then cached; `close()` closes them all.
 */
export class ModelHost {
  /**
   * @param kind What this host runs in, for messages about outputs that cannot be sent back.
   * @param emitPartial Sends a call's partial result (`ctx.emit`) to the main side, by call id.
   */
  constructor(
    private readonly kind: 'thread' | 'process',
    private readonly emitPartial?: (callId: number, partial: unknown) => void,
  ) {}

  private context(call: WireCall): CallContext {
    const emit = this.emitPartial;
    return new CallContext(call.eventId, call.origin, call.path, emit && ((partial) => emit(call.id, partial)), call.op);
  }

  private readonly models = new Map<string, Promise<Model>>();
  /** Models whose load finished, for calls that need not wait on a promise. */
  private readonly loaded = new Map<string, Model>();
  /** Running calls by wire id: a call's context, or the contexts of a batch call. */
  private readonly running = new Map<number, { abort(reason: unknown): void }>();

  /** The model for a spec key, built and loaded once. */
  get(key: string): Promise<Model> {
    let model = this.models.get(key);
    if (model === undefined) {
      model = this.build(JSON.parse(key) as WorkerModelSpec);
      this.models.set(key, model);
      model.then((m) => this.models.get(key) === model && this.loaded.set(key, m), () => undefined);
      // A failed build is not cached: the next call tries again (the error is reported per call).
      model.catch(() => this.models.delete(key));
    }
    return model;
  }

  private async build(spec: WorkerModelSpec): Promise<Model> {
    const name = spec.endpointName;
    const cls =
      spec.module === null
        ? await (loadBuiltIn(spec.export) ??
            (() => {
              throw new ModelLoadError(name, `'${spec.export}' is not a built-in model class`);
            })())
        : await importModelClass({ module: spec.module, export: spec.export }, name);
    try {
      const model = new cls({ ...spec.params, name, ...(spec.artifact !== undefined ? { artifact: spec.artifact as never } : {}) });
      await model.load();
      return model;
    } catch (cause) {
      throw cause instanceof ModelLoadError ? cause : new ModelLoadError(name, toError(cause).message, { cause });
    }
  }

  /** Runs a batch; every call gets a result, a failure is data. */
  async run(batch: WireBatch, transfer?: ArrayBuffer[]): Promise<WireResult[]> {
    return Promise.all(this.start(batch, transfer));
  }

  /**
   * Starts every call of a batch: a call to a loaded model whose `predict` returns a plain value
   * has its result at once (no promise, no turn of the event loop); the others give a promise.
   * Whole ArrayBuffers in the outputs are pushed to `transfer` when given; an output that cannot
   * cross back to the main side becomes that call's error.
   */
  start(batch: WireBatch, transfer?: ArrayBuffer[]): (WireResult | Promise<WireResult>)[] {
    const models = batch.specs.map((key) => this.loaded.get(key) ?? this.get(key));
    return batch.calls.map((call) => {
      const model = models[call.spec];
      if (call.batch !== undefined) return this.runBatchCall(model, call, transfer, wireCodec(batch.specs[call.spec]));
      return model instanceof Model ? this.runLoaded(model, call, transfer) : this.runCall(model, call, transfer);
    });
  }

  /** A successful call's result, unless its output cannot be sent back. */
  private output(name: string, value: unknown, transfer: ArrayBuffer[] | undefined): WireResult {
    const inspection = inspectForWorker(value, 'output');
    if (inspection.problem !== undefined) {
      return {
        ok: false,
        error: serializeError(
          new TypeError(`the output of model '${name}' cannot be copied back from its worker ${this.kind}: ${inspection.problem}, which structured clone cannot copy`),
        ),
      };
    }
    if (transfer) for (const buffer of inspection.transfer) if (!transfer.includes(buffer)) transfer.push(buffer);
    return { ok: true, value };
  }

  /** A batch wire call's result: one flat `[ok, value | error, ...]` pair per input. */
  private batchOutput(name: string, values: unknown, size: number, transfer: ArrayBuffer[] | undefined): WireResult {
    if (!Array.isArray(values) || values.length !== size) {
      return {
        ok: false,
        error: serializeError(
          new TypeError(`predictBatch of model '${name}' returned ${Array.isArray(values) ? `${values.length} results` : typeof values} for ${size} inputs`),
        ),
      };
    }
    return {
      ok: true,
      value: flatten(values.map((v: unknown) => (v instanceof Error ? { ok: false, error: serializeError(v) } : this.output(name, v, transfer)))),
    };
  }

  /** `wire`: how a built-in class's batches cross (builtins.ts): its input list to read, the method to call instead of `predictBatch`. */
  private runBatchCall(model: Model | Promise<Model>, call: WireCall, transfer: ArrayBuffer[] | undefined, wire: WireCodec | undefined): WireResult | Promise<WireResult> {
    // Each element's partials go out as [element, partial]; the main side routes them to that call.
    const emit = this.emitPartial;
    const contexts = call.batch!.map((c, k) => new CallContext(c.eventId, c.origin, c.path, emit && ((partial) => emit(call.id, [k, partial]))));
    const inputs = wire ? wire.unpackInputs(call.input as unknown[]) : (call.input as unknown[]);
    const run = (m: Model): WireResult | Promise<WireResult> => {
      let values: unknown;
      try {
        const method = wire && (m as unknown as Record<symbol, Model['predictBatch'] | undefined>)[wire.batch];
        values = method ? method.call(m, inputs, contexts) : m.predictBatch(inputs, contexts);
      } catch (error) {
        return { ok: false, error: serializeError(error) };
      }
      if (!isThenable(values)) return this.batchOutput(m.name, values, inputs.length, transfer);
      return Promise.resolve(values).then(
        (v) => this.batchOutput(m.name, v, inputs.length, transfer),
        (error: unknown): WireResult => ({ ok: false, error: serializeError(error) }),
      );
    };
    if (!isThenable(model)) {
      const result = run(model);
      if (!isThenable(result)) return result;
      this.running.set(call.id, { abort: (reason) => contexts.forEach((c) => c.abort(reason)) });
      return result.then((r) => {
        this.running.delete(call.id);
        return r;
      });
    }
    this.running.set(call.id, { abort: (reason) => contexts.forEach((c) => c.abort(reason)) });
    return model.then(run, (error: unknown): WireResult => ({ ok: false, error: serializeError(error) })).then((r) => {
      this.running.delete(call.id);
      return r;
    });
  }

  private runLoaded(model: Model, call: WireCall, transfer: ArrayBuffer[] | undefined): WireResult | Promise<WireResult> {
    const context = this.context(call);
    let value: unknown;
    try {
      value = call.op === undefined ? model.predict(call.input, context) : runOperation(model, call.input, context);
    } catch (error) {
      return { ok: false, error: serializeError(error) };
    }
    if (!isThenable(value)) return this.output(model.name, value, transfer);
    this.running.set(call.id, context);
    return Promise.resolve(value).then(
      (v): WireResult => {
        this.running.delete(call.id);
        return this.output(model.name, v, transfer);
      },
      (error: unknown): WireResult => {
        this.running.delete(call.id);
        return { ok: false, error: serializeError(error) };
      },
    );
  }

  private async runCall(modelPromise: Promise<Model>, call: WireCall, transfer: ArrayBuffer[] | undefined): Promise<WireResult> {
    const context = this.context(call);
    this.running.set(call.id, context);
    try {
      const model = await modelPromise;
      const value: unknown = call.op === undefined ? model.predict(call.input, context) : runOperation(model, call.input, context);
      return this.output(model.name, await value, transfer);
    } catch (error) {
      return { ok: false, error: serializeError(error) };
    } finally {
      this.running.delete(call.id);
    }
  }

  /** The ids of calls still running (for cancellation polling). */
  runningIds(): IterableIterator<number> {
    return this.running.keys();
  }

  /** Aborts the signal of a running call (cooperative cancel). */
  cancel(id: number, reason: unknown): void {
    this.running.get(id)?.abort(reason);
  }

  async close(): Promise<void> {
    const models = [...this.models.values()];
    this.models.clear();
    this.loaded.clear();
    await Promise.all(
      models.map(async (m) => {
        try {
          await (await m).close();
        } catch {
          /* a model that failed to load or to close has nothing more to release */
        }
      }),
    );
  }
}

const isThenable = (value: unknown): value is PromiseLike<unknown> =>
  value !== null && (typeof value === 'object' || typeof value === 'function') && typeof (value as PromiseLike<unknown>).then === 'function';

/** The reason a worker gives a call's signal when the main side cancelled it. */
export function cancelledReason(): Error {
  const error = new Error('the call was cancelled by the pipeline');
  error.name = 'AbortError';
  return error;
}

