// An Executor for tests: each model is a function the test writes, typically returning cold().
import { cloneBody } from '../clone.js';
import { asyncScheduler, type ObservableInput } from 'rxjs';
import { ConfigError } from '../errors.js';
import type { Executor, ExecutorSession } from '../execution/executor.js';
import type { ModelEntry } from '../model/entry.js';
import type { PredictContext } from '../model/model.js';

/** A stand-in for one model: returns its output, a promise, or an Observable (its first value counts). */
export type TestModel = (input: any, context: PredictContext) => unknown | ObservableInput<unknown>;

/** One recorded call. */
export interface TestCall {
  readonly endpointName: string;
  readonly eventId: string;
  readonly input: unknown;
  /** Clock time of the call (virtual frames inside `TestScheduler.run`). */
  readonly at: number;
}

/** A test executor: an `Executor` plus what it saw. */
export interface TestExecutor extends Executor {
  /** Every call made, in order. */
  readonly calls: readonly TestCall[];
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
  let opened = 0;
  let closed = 0;
  return {
    get calls() {
      return calls;
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
