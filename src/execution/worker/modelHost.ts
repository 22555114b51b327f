// The worker side: builds each model once per worker/process, runs batches of calls, cancels them.
import { ModelLoadError, toError } from '../../errors.js';
import type { Model } from '../../model/model.js';
import { importModelClass } from '../../model/registry.js';
import { CallContext } from '../../model/callContext.js';
import { runOperation } from '../../model/operation.js';
import { loadBuiltIn } from './lazyBuiltins.js';
import { isThenable } from '../thenable.js';
import { wireCodec, type WireCodec } from '../wire/builtinCodecs.js';
import {
  CONTEXT_FIELDS,
  contextCount,
  inspectForWorker,
  serializeError,
  type FlatContexts,
  type WireBatch,
  type WireCall,
  type WireResult,
  type WorkerModelSpec,
} from '../wire/protocol.js';

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

  /** A call's context: one that sends partials back only when the main side listens to them. */
  private context(call: WireCall): CallContext {
    const emit = call.listen ? this.emitPartial : undefined;
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
      model.then(
        (m) => this.models.get(key) === model && this.loaded.set(key, m),
        () => undefined,
      );
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
      return call.batch !== undefined
        ? this.runBatchCall(model, call, transfer, wireCodec(batch.specs[call.spec]))
        : this.runCall(model, call, transfer);
    });
  }

  /** A successful call's result, unless its output cannot be sent back. */
  private output(name: string, value: unknown, transfer: ArrayBuffer[] | undefined): WireResult {
    const inspection = inspectForWorker(value, 'output');
    if (inspection.problem !== undefined) {
      return {
        ok: false,
        error: serializeError(
          new TypeError(
            `the output of model '${name}' cannot be copied back from its worker ${this.kind}: ${inspection.problem}, which structured clone cannot copy`,
          ),
        ),
      };
    }
    if (transfer) for (const buffer of inspection.transfer) if (!transfer.includes(buffer)) transfer.push(buffer);
    return { ok: true, value };
  }

  /**
   * A batch wire call's result: one flat `[ok, value | error, ...]` pair per input. Outputs of a
   * built-in class's wire form (`wire`) are its own TypedArrays and plain data, which need no
   * look for what cannot cross: the codec names their buffers to transfer.
   */
  private batchOutput(
    name: string,
    values: unknown,
    size: number,
    transfer: ArrayBuffer[] | undefined,
    wire: WireCodec | undefined,
  ): WireResult {
    if (!Array.isArray(values) || values.length !== size) {
      return {
        ok: false,
        error: serializeError(
          new TypeError(
            `predictBatch of model '${name}' returned ${Array.isArray(values) ? `${values.length} results` : typeof values} for ${size} inputs`,
          ),
        ),
      };
    }
    // Flat `[ok, value | error, ...]` built directly (what `flatten` makes of one WireResult per
    // element): no object per element on the way, on the per-request path of batched calls.
    const flat: unknown[] = [];
    for (let k = 0; k < size; k++) {
      const v: unknown = values[k];
      if (v instanceof Error) flat.push(0, serializeError(v));
      else if (wire) flat.push(1, v);
      else {
        const r = this.output(name, v, transfer);
        flat.push(r.ok ? 1 : 0, r.ok ? r.value : r.error);
      }
    }
    if (wire && transfer) wire.outputTransfer(values, transfer);
    return { ok: true, value: flat };
  }

  /**
   * Runs one call on its model: at once on a loaded model (a plain value answers without a promise
   * turn), after the load otherwise; while it runs, `abortable` is what a cancel aborts. Every
   * outcome is a `WireResult` (`finish` turns a value into one).
   */
  private execute(
    model: Model | Promise<Model>,
    id: number,
    abortable: { abort(reason: unknown): void },
    invoke: (m: Model) => unknown,
    finish: (m: Model, value: unknown) => WireResult,
  ): WireResult | Promise<WireResult> {
    // Not `instanceof Model`: a user's model module may extend another copy of the class.
    if (!(model instanceof Promise)) {
      let value: unknown;
      try {
        value = invoke(model);
      } catch (error) {
        return failed(error);
      }
      if (!isThenable(value)) return finish(model, value);
      this.running.set(id, abortable);
      return Promise.resolve(value).then(
        (v) => {
          this.running.delete(id);
          return finish(model, v);
        },
        (error: unknown) => {
          this.running.delete(id);
          return failed(error);
        },
      );
    }
    this.running.set(id, abortable);
    return model
      .then(async (m) => finish(m, await invoke(m)))
      .then(
        (r) => {
          this.running.delete(id);
          return r;
        },
        (error: unknown) => {
          this.running.delete(id);
          return failed(error);
        },
      );
  }

  /** One model call (`predict`, or the operation `call.op`). */
  private runCall(model: Model | Promise<Model>, call: WireCall, transfer: ArrayBuffer[] | undefined): WireResult | Promise<WireResult> {
    const context = this.context(call);
    return this.execute(
      model,
      call.id,
      context,
      (m) => (call.op === undefined ? m.predict(call.input, context) : runOperation(m, call.input, context)),
      (m, value) => this.output(m.name, value, transfer),
    );
  }

  /**
   * A batch of model calls as one wire call: one `predictBatch` (or, for a built-in class with a
   * wire codec, its wire method on the input list as it crossed). Each element's partials go out
   * as `[element, partial]`, and only for elements someone listens to. The contexts are made
   * only when a method takes them: a built-in class's wire method reads none (OnnxModel's).
   */
  private runBatchCall(
    model: Model | Promise<Model>,
    call: WireCall,
    transfer: ArrayBuffer[] | undefined,
    wire: WireCodec | undefined,
  ): WireResult | Promise<WireResult> {
    let size: number;
    try {
      size = contextCount(call.batch);
      if (!Array.isArray(call.input)) throw new TypeError(`a malformed batch call: its inputs are ${typeof call.input}, not a list`);
      // The list may end with the packed table of its rows (a codec's form): one more element at most.
      const inputs = call.input.length;
      if (size !== inputs && !(wire !== undefined && size === inputs - 1)) {
        throw new TypeError(`a malformed batch call: ${size} context(s) for ${inputs} input(s)`);
      }
    } catch (error) {
      return failed(error);
    }
    const contexts = new BatchContexts(call.batch!, size, call.id, this.emitPartial);
    const list = call.input as unknown[];
    return this.execute(
      model,
      call.id,
      contexts,
      (m) => {
        const method = wire && (m as unknown as Record<symbol, WireMethod | undefined>)[wire.batch];
        return method ? method.call(m, list, () => contexts.list()) : m.predictBatch(list, contexts.list());
      },
      (m, values) => this.batchOutput(m.name, values, size, transfer, wire),
    );
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

const failed = (error: unknown): WireResult => ({ ok: false, error: serializeError(error) });

/** A built-in class's wire method (see `WireCodec.batch`): the input list as it crossed, contexts on demand. */
type WireMethod = (list: unknown[], contexts: () => readonly CallContext[]) => unknown;

/**
 * The contexts of a batch call's inputs, made from the flat ones the first time a model's method
 * takes them; a cancel before that is kept and given to them when they are made.
 */
class BatchContexts {
  private made: CallContext[] | undefined;
  private reason: unknown;
  private aborted = false;

  constructor(
    /** The flat contexts, or the input count when they were not sent (see `WireCall.batch`). */
    private readonly flat: FlatContexts | number,
    private readonly size: number,
    private readonly callId: number,
    private readonly emit: ((callId: number, partial: unknown) => void) | undefined,
  ) {}

  list(): CallContext[] {
    if (this.made !== undefined) return this.made;
    const { flat, callId, emit } = this;
    if (typeof flat === 'number') {
      // The main side sends a count only for a wire method that reads no context (WireCall.batch).
      throw new TypeError(`a malformed batch call: its ${flat} input(s) came without their contexts, which this model's method reads`);
    }
    const made: CallContext[] = [];
    for (let k = 0, i = 0; k < this.size; k++, i += CONTEXT_FIELDS) {
      const element = k;
      const sink = emit && flat[i + 3] === 1 ? (partial: unknown) => emit(callId, [element, partial]) : undefined;
      const context = new CallContext(
        flat[i] as string,
        flat[i + 1] as string,
        (flat[i + 2] as string | null | undefined) ?? undefined,
        sink,
      );
      if (this.aborted) context.abort(this.reason);
      made.push(context);
    }
    this.made = made;
    return made;
  }

  abort(reason: unknown): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason;
    if (this.made) for (const context of this.made) context.abort(reason);
  }
}

/** The reason a worker gives a call's signal when the main side cancelled it. */
export function cancelledReason(): Error {
  const error = new Error('the call was cancelled by the pipeline');
  error.name = 'AbortError';
  return error;
}
