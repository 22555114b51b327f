// The in-process mechanisms: 'naive' (inline, synchronous) and 'asyncio' (awaited on the event loop).
import { ModelLoadError, RxServeError, toError } from '../errors.js';
import type { ModelEntry } from '../model/entry.js';
import type { Model, ModelClass, PredictContext } from '../model/model.js';
import { isModelInstance, registeredModel, resolveModelClass } from '../model/registry.js';
import { runOperation } from '../model/operation.js';
import { BUILT_IN_MODELS } from './builtins.js';
import { cloneBody } from './clone.js';
import type { CallResult, Executor, ExecutorHooks, ExecutorSession } from './executor.js';
import { isThenable } from './thenable.js';

/**
 * Runs models on the main event loop. Each model is constructed and loaded once per session,
 * one at a time (no memory peak from parallel loads); `naive` calls run inline, `asyncio` calls
 * are awaited. Sessions whose models all load synchronously are ready at once.
 */
export const inProcessExecutor: Executor = {
  open(models: readonly ModelEntry[], hooks: ExecutorHooks): ExecutorSession {
    return new InProcessSession(models, hooks);
  },
};

/**
 * Loads of the instances users gave as `modelClass`: an instance is loaded once, by the first
 * session that opens it; later sessions (other steps, re-subscriptions) wait for or reuse that
 * load. A failed load is forgotten, so the next subscription tries again.
 */
const instanceLoads = new WeakMap<Model, Promise<void> | 'loaded'>();

class InProcessSession implements ExecutorSession {
  readonly ready?: Promise<void>;
  private readonly instances = new Map<string, Model>();
  /** The models this session constructed, so closes; a user's instance is the user's to close. */
  private readonly owned = new Set<Model>();
  private readonly asyncio = new Set<string>();
  private closed = false;

  constructor(
    models: readonly ModelEntry[],
    private readonly hooks: ExecutorHooks,
  ) {
    let pending: Promise<void> | undefined;
    for (const entry of models) {
      if (entry.executionMechanism === 'asyncio') this.asyncio.add(entry.endpointName);
      pending = pending ? pending.then(() => this.loadOne(entry)) : this.loadOne(entry);
    }
    if (pending) {
      this.ready = pending.catch((error: unknown) => {
        this.hooks.fail(error instanceof ModelLoadError ? error : toError(error));
        throw error;
      });
      // The step awaits `ready`; this handler only keeps an unobserved failure from being reported twice.
      this.ready.catch(() => undefined);
    }
  }

  /** Constructs and loads one model; returns a promise only when something was asynchronous. */
  private loadOne(entry: ModelEntry): Promise<void> | undefined {
    const name = entry.endpointName;
    if (isModelInstance(entry.modelClass)) return this.useInstance(name, entry.modelClass);
    // Built-in names resolve from the one list (which also registers them).
    const builtIn = typeof entry.modelClass === 'string' ? BUILT_IN_MODELS.get(entry.modelClass) : undefined;
    const resolved =
      builtIn !== undefined && registeredModel(entry.modelClass as string) === builtIn
        ? builtIn
        : resolveModelClass(entry.modelClass, name);
    if (resolved instanceof Promise) return resolved.then((cls) => this.construct(entry, cls));
    return this.construct(entry, resolved);
  }

  private construct(entry: ModelEntry, cls: ModelClass): Promise<void> | undefined {
    const name = entry.endpointName;
    // decodeModelEntries read an artifact given as a path: only the artifact itself is left here.
    const artifact = typeof entry.modelArtifact === 'object' ? entry.modelArtifact : undefined;
    let model: Model;
    let loading: void | Promise<void>;
    try {
      model = new cls({ ...entry.params, name, ...(artifact ? { artifact } : {}) });
      this.owned.add(model);
      loading = model.load();
    } catch (cause) {
      throw asLoadError(name, cause);
    }
    if (loading && typeof loading.then === 'function') {
      return Promise.resolve(loading).then(
        () => this.register(name, model),
        (cause: unknown) => {
          throw asLoadError(name, cause);
        },
      );
    }
    this.register(name, model);
    return undefined;
  }

  /** A user's instance: loaded once across every session that uses it, never closed here. */
  private useInstance(name: string, model: Model): Promise<void> | undefined {
    const known = instanceLoads.get(model);
    if (known === 'loaded') {
      this.register(name, model);
      return undefined;
    }
    let loading: Promise<void> | undefined = known;
    if (loading === undefined) {
      let result: void | Promise<void>;
      try {
        result = model.load();
      } catch (cause) {
        throw asLoadError(name, cause);
      }
      if (!result || typeof result.then !== 'function') {
        instanceLoads.set(model, 'loaded');
        this.register(name, model);
        return undefined;
      }
      loading = Promise.resolve(result).then(
        () => void instanceLoads.set(model, 'loaded'),
        (cause: unknown) => {
          instanceLoads.delete(model);
          throw cause;
        },
      );
      instanceLoads.set(model, loading);
    }
    return loading.then(
      () => this.register(name, model),
      (cause: unknown) => {
        throw asLoadError(name, cause);
      },
    );
  }

  private register(name: string, model: Model): void {
    this.instances.set(name, model);
    // A session closed while this model was loading still owes it a close().
    if (this.closed && this.owned.has(model)) void closeQuietly(model);
  }

  invoke(endpointName: string, input: unknown, context: PredictContext): CallResult {
    if (this.closed) throw new RxServeError(`model '${endpointName}' is closed`);
    const model = this.instances.get(endpointName);
    if (model === undefined) throw new ModelLoadError(endpointName, 'the model is not loaded');
    // Each model gets its own copy of its input (docs/design.md §1.7); a copy that fails fails this call.
    const own = cloneBody(input);
    if (context.operation !== undefined) {
      if (!this.asyncio.has(endpointName)) return runOperation(model, own, context);
      return Promise.resolve().then(() => runOperation(model, own, context));
    }
    if (!this.asyncio.has(endpointName)) return model.predict(own, context);
    return Promise.resolve().then((): unknown => model.predict(own, context));
  }

  invokeBatch(endpointName: string, inputs: readonly unknown[], contexts: readonly PredictContext[]): CallResult {
    if (this.closed) throw new RxServeError(`model '${endpointName}' is closed`);
    const model = this.instances.get(endpointName);
    if (model === undefined) throw new ModelLoadError(endpointName, 'the model is not loaded');
    // A body that cannot be copied fails its own call; the others go to the model.
    const owns: unknown[] = [];
    const kept: number[] = [];
    const results: unknown[] = new Array(inputs.length);
    inputs.forEach((input, i) => {
      try {
        owns.push(cloneBody(input));
        kept.push(i);
      } catch (error) {
        results[i] = toError(error);
      }
    });
    if (owns.length === 0) return results;
    const merge = (values: unknown): unknown => {
      if (kept.length === inputs.length) return values;
      if (!Array.isArray(values) || values.length !== kept.length) return values;
      kept.forEach((i, k) => (results[i] = (values as unknown[])[k]));
      return results;
    };
    const ctxs = kept.map((i) => contexts[i]);
    if (!this.asyncio.has(endpointName)) {
      const values = model.predictBatch(owns, ctxs);
      return isThenable(values) ? Promise.resolve(values).then(merge) : merge(values);
    }
    return Promise.resolve()
      .then(() => model.predictBatch(owns, ctxs))
      .then(merge);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all([...this.instances.values()].filter((m) => this.owned.has(m)).map(closeQuietly));
  }
}

// A model whose close() fails must not stop the others from closing; teardown has nowhere to report it.
async function closeQuietly(model: Model): Promise<void> {
  try {
    await model.close();
  } catch {
    /* ignored: see above */
  }
}

/** A load failure as a ModelLoadError for the model (one that already is one is not wrapped twice). */
function asLoadError(name: string, cause: unknown): ModelLoadError {
  return cause instanceof ModelLoadError && cause.endpointName === name
    ? cause
    : new ModelLoadError(name, toError(cause).message, { cause });
}
