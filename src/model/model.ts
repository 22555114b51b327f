// The Model base class that users extend, and the context each call receives.
import { toError } from '../errors.js';
import type { LLMPromptArtifact, ModelArtifact } from './artifact.js';

/** What a model's constructor receives: its endpoint name, its artifact, and the entry's `params`. */
export interface ModelInit {
  /** The endpoint name the model serves under. */
  readonly name: string;
  readonly artifact?: ModelArtifact | LLMPromptArtifact;
  readonly [param: string]: unknown;
}

/** Per-call context passed to `predict`. */
export interface PredictContext {
  /** Aborted when the call times out or the pipeline is unsubscribed; the reason says which. */
  readonly signal: AbortSignal;
  /** The endpoint name that asked (a proxy's name for shared models). */
  readonly origin: string;
  readonly eventId: string;
  readonly path?: string;
  /**
   * Publishes a partial result of this call (an LLModel's `{ delta }` per token chunk): it reaches
   * whoever asked for the event's partials (`client.stream()`, Server-Sent Events), tagged with the
   * endpoint name, and nobody otherwise. Works in process and from worker threads and processes
   * (the data must be structured-cloneable there). Optional for contexts made by hand.
   */
  emit?(partial: unknown): void;
  /**
   * The V2 operation this call runs (`modelRouter`, `votingEnsemble`; docs/design.md §18): `undefined` for
   * `predict` (infer), `'explain'` for `explain()`, `'metadata'` for `metadata()`, or a custom
   * operation's name (`'hello'` runs `op_hello`). Set from the event's `metadata.operation`.
   */
  readonly operation?: string;
}

/** What a model tells of itself for the V2 `metadata` operation (Open Inference Protocol tensors for OnnxModel). */
export interface ModelMetadata {
  /** Its inputs: names, or `{ name, datatype, shape }` tensors. */
  readonly inputs?: readonly unknown[];
  /** Its outputs, likewise. */
  readonly outputs?: readonly unknown[];
}

/**
 * A model served by `modelRunner`. Subclass it and override `predict` (and `load`/`close` when the
 * model holds resources).
 *
 * `load()` runs once per instance, before any call; `close()` when the pipeline shuts down. The
 * base class is registered as `'Model'` and returns its input unchanged (MLRun's `Model`).
 *
 * ## Example
 * ```ts
 * import { Model, type PredictContext } from 'rxserve';
 * class Doubler extends Model<{ n: number }, { n: number }> {
 *   predict(body: { n: number }, _ctx: PredictContext) { return { n: body.n * 2 }; }
 * }
 * ```
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- public defaults: an un-parameterised Model (Map<string, Model>) holds every user subclass and hands its outputs on untyped
export class Model<In = any, Out = any> {
  /**
   * The output names monitoring gives this class's records (`response.outputs` columns), whatever
   * an entry's `outputs` say: for a class whose calls always return the same shape (LLModel's
   * `['answer', 'usage']`, as MLRun forces them). Unset: the entry's `outputs`. Subclasses inherit
   * it; an entry that gives other `outputs` gets one process warning (`RXSERVE_LLM_OUTPUTS`).
   */
  static readonly monitoredOutputs?: readonly string[];

  readonly name: string;
  readonly artifact?: ModelArtifact | LLMPromptArtifact;
  /** The constructor parameters other than `name` and `artifact`. */
  readonly params: Readonly<Record<string, unknown>>;

  constructor(init: ModelInit) {
    const { name, artifact, ...params } = init;
    this.name = name;
    if (artifact !== undefined) this.artifact = artifact;
    this.params = params;
  }

  /** Loads weights, clients or anything else the model needs; runs once, before any call. */
  load(): void | Promise<void> {}

  /** Computes the model's output for one input. The default returns the input unchanged. */
  predict(body: In, _ctx: PredictContext): Out | Promise<Out> {
    return body as unknown as Out;
  }

  /**
   * Computes the outputs of a batch of calls (an entry with `batching`): one output or `Error`
   * per body, in order. An `Error` element fails only its call; a throw fails every call of the
   * batch. The default calls `predict` for each body (a throw or rejection becomes that call's
   * error); override it when the model runs a batch faster than its calls one by one.
   */
  predictBatch(bodies: readonly In[], ctxs: readonly PredictContext[]): (Out | Error)[] | Promise<(Out | Error)[]> {
    let async = false;
    const outputs = bodies.map((body, i): Out | Error | Promise<Out | Error> => {
      try {
        const out = this.predict(body, ctxs[i]);
        if (out !== null && typeof out === 'object' && typeof (out as Promise<Out>).then === 'function') {
          async = true;
          return Promise.resolve(out).then(undefined, (error: unknown) => toError(error));
        }
        return out;
      } catch (error) {
        return toError(error);
      }
    });
    return async ? Promise.all(outputs) : (outputs as (Out | Error)[]);
  }

  /**
   * Explains a prediction (the V2 `explain` operation, `POST <prefix>/<model>/explain`). Optional:
   * a model without it answers `explain` with a `TypeError` (HTTP 400). Custom operations are
   * methods named `op_<name>(body, ctx)`: `POST <prefix>/<model>/hello` calls `op_hello`, as MLRun.
   */
  explain?(body: In, ctx: PredictContext): unknown;

  /**
   * The model's own inputs and outputs for the V2 `metadata` operation (OnnxModel: its tensors'
   * names, datatypes and shapes). Optional: the entry's `inputs` / `outputs` answer otherwise.
   */
  metadata?(): ModelMetadata | Promise<ModelMetadata>;

  /** Releases what `load` acquired; runs once when the pipeline shuts down. */
  close(): void | Promise<void> {}
}

/** A class extending `Model`. */
export type ModelClass<M extends Model = Model> = new (init: ModelInit) => M;

/** A model class loaded from a module: `{ module, export }` (`export` defaults to `'default'`). */
export interface ModuleRef {
  /** An absolute path, a `file:` URL, or a package specifier. */
  readonly module: string;
  readonly export?: string;
}
