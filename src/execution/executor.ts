// The Executor contract: how modelRunner hands model calls to an execution mechanism.
import type { Observable } from 'rxjs';
import type { ModelEntry } from '../model/entry.js';
import type { PredictContext } from '../model/model.js';

/** What a model call may return: a value, a promise of one, or an Observable (its first value counts; it is then unsubscribed). */
// eslint-disable-next-line @typescript-eslint/no-redundant-type-constituents -- the union names what a model call may return (the compiler reads `unknown`)
export type CallResult = unknown | PromiseLike<unknown> | Observable<unknown>;

/** Hooks a step gives the executor when it opens a session. */
export interface ExecutorHooks {
  /** The step's name, for errors and logs. */
  readonly step: string;
  /**
   * Reports a fault of the pipeline (a model that cannot load, a pool that cannot start): the
   * step's observable errors with it.
   */
  fail(error: Error): void;
}

/** One subscription's handle on its models. */
export interface ExecutorSession {
  /**
   * Resolves once every model can take calls; until then the step holds events in its queue.
   * Absent when the models are ready at once.
   */
  readonly ready?: PromiseLike<void>;
  /**
   * Runs one model call. Throwing, rejecting or erroring fails that model's output only.
   * `input` is the event's own data: the session alone decides how the model gets its own copy
   * (in-process sessions copy it, worker sessions send it across), and never changes it.
   */
  invoke(endpointName: string, input: unknown, context: PredictContext): CallResult;
  /**
   * Runs a batch of calls of one model as one call (entries with `batching`): resolves to one
   * output or `Error` per input, in order; an `Error` element fails only its call, a throw or
   * rejection fails them all. Sessions without it get one `invoke` per call.
   */
  invokeBatch?(endpointName: string, inputs: readonly unknown[], contexts: readonly PredictContext[]): CallResult;
  /** The clock for `when` and `latencyMs`, in epoch milliseconds; default: the wall clock. */
  now?(): number;
  /** Releases models, pools and processes. */
  close(): void | Promise<void>;
}

/**
 * Runs a step's models. The default executor picks one per `executionMechanism`; tests inject
 * their own (see `testExecutor` in `rxserve/testing`), as redux-observable injects dependencies.
 */
export interface Executor {
  open(models: readonly ModelEntry[], hooks: ExecutorHooks): ExecutorSession;
}
