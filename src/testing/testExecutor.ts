// An Executor for tests: each model is a function the test writes, typically returning cold().
import { cloneBody } from '../execution/clone.js';
import {
  asyncScheduler,
  catchError,
  defaultIfEmpty,
  EmptyError,
  forkJoin,
  from,
  isObservable,
  of,
  take,
  type Observable,
  type ObservableInput,
} from 'rxjs';
import { ConfigError, toError } from '../errors.js';
import type { Executor, ExecutorSession } from '../execution/executor.js';
import type { ModelEntry } from '../model/entry.js';
import type { PredictContext } from '../model/model.js';

/** A stand-in for one model: returns its output, a promise, or an Observable (its first value counts). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any, @typescript-eslint/no-redundant-type-constituents -- a stand-in typed for its own input must be assignable; the union names what it may return
export type TestModel = (input: any, context: PredictContext) => unknown | ObservableInput<unknown>;

/** One recorded call. */
export interface TestCall {
  readonly endpointName: string;
  readonly eventId: string;
  readonly input: unknown;
  /** Clock time of the call (virtual frames inside `TestScheduler.run`). */
  readonly at: number;
}

/** One recorded batch: which model, how many calls, and when. */
export interface TestBatch {
  readonly endpointName: string;
  readonly size: number;
  readonly at: number;
}

/** A test executor: an `Executor` plus what it saw. */
export interface TestExecutor extends Executor {
  /** Every call made, in order. */
  readonly calls: readonly TestCall[];
  /** Every batch made (entries with `batching`), in order: its calls are in `calls` too. */
  readonly batches: readonly TestBatch[];
  /** How many sessions were opened and closed (one per subscription of the step). */
  readonly opened: number;
  readonly closed: number;
}

/**
 * An executor whose models are functions written by the test, for marble-testing a pipeline's
 * selection, routing, merging and timing without running real models.
 *
 * Inside `TestScheduler.run`, return `cold('--a|', { a: output })` to make a model take two
 * frames; timeouts and the `when`/`latencyMs` metadata use the virtual clock too. A model of the
 * step without a stand-in is a `ConfigError` when the step is subscribed.
 *
 * ## Example
 * ```ts
 * import { testExecutor } from 'rxserve/testing';
 * const executor = testExecutor({
 *   finance: () => cold('--a|', { a: { answer: 'buy' } }),
 *   travel: () => cold('-b|', { b: { answer: 'go' } }),
 * });
 * source.pipe(modelRunner({ models, selector, executor }));
 * ```
 */
export function testExecutor(models: Readonly<Record<string, TestModel>>): TestExecutor {
  const calls: TestCall[] = [];
  const batches: TestBatch[] = [];
  let opened = 0;
  let closed = 0;
  return {
    get calls() {
      return calls;
    },
    get batches() {
      return batches;
    },
    get opened() {
      return opened;
    },
    get closed() {
      return closed;
    },
    open(entries: readonly ModelEntry[], hooks): ExecutorSession {
      const missing = entries.filter((e) => typeof models[e.endpointName] !== 'function').map((e) => e.endpointName);
      if (missing.length > 0) {
        throw new ConfigError([
          {
            path: `testExecutor(${hooks.step})`,
            expected: `a stand-in for every model of the step`,
            actual: `none for ${missing.map((m) => `'${m}'`).join(', ')}`,
          },
        ]);
      }
      opened++;
      let isClosed = false;
      return {
        invoke(endpointName, input, context) {
          // As every session does: the stand-in gets its own copy of the event's data.
          const own = cloneBody(input);
          calls.push({ endpointName, eventId: context.eventId, input: own, at: asyncScheduler.now() });
          return models[endpointName](own, context);
        },
        // A batch is each stand-in called once; their results gathered (a failure is that call's Error).
        invokeBatch(endpointName, inputs, contexts) {
          batches.push({ endpointName, size: inputs.length, at: asyncScheduler.now() });
          const results = inputs.map((input, i) => {
            try {
              return toObservable(this.invoke(endpointName, input, contexts[i])).pipe(
                take(1),
                defaultIfEmpty(new EmptyError() as unknown),
                catchError((error: unknown) => of(toError(error))),
              );
            } catch (error) {
              return of(toError(error));
            }
          });
          return forkJoin(results);
        },
        now: () => asyncScheduler.now(),
        close() {
          if (!isClosed) {
            isClosed = true;
            closed++;
          }
        },
      };
    },
  };
}

function toObservable(result: unknown): Observable<unknown> {
  if (isObservable(result)) return result;
  if (result !== null && typeof result === 'object' && typeof (result as PromiseLike<unknown>).then === 'function')
    return from(result as PromiseLike<unknown>);
  return of(result);
}
