// Dynamic batching through modelRunner (docs/design.md §13): the lane's batches reach the model as one
// invokeBatch, and each call still settles on its own (errors, timeouts, cancellation).
import { Observable, asyncScheduler } from 'rxjs';
import { TestScheduler } from 'rxjs/testing';
import { beforeEach, describe, expect, it } from 'vitest';
import { ConfigError, modelRunner, toEvent, type Executor, type ExecutorSession, type ModelEntry, type ServingEvent } from '../index.js';
import { bodies, testExecutor } from '../testing/index.js';

const entry = (extra: Partial<ModelEntry> = {}): ModelEntry => ({
  endpointName: 'm',
  modelClass: 'Model',
  executionMechanism: 'asyncio',
  ...extra,
});
type InvokeBatch = NonNullable<ExecutorSession['invokeBatch']>;

/** Makes the sessions `executor` opens call `wrap(their invokeBatch)` for a batch instead. */
function wrapInvokeBatch(executor: Executor, wrap: (invokeBatch: InvokeBatch) => InvokeBatch): void {
  const open = executor.open.bind(executor);
  executor.open = (models, hooks) => {
    const session = open(models, hooks);
    return { ...session, invoke: session.invoke.bind(session), invokeBatch: wrap(session.invokeBatch!.bind(session)) };
  };
}

const ev = (n: number, signal?: AbortSignal) => toEvent({ n }, { id: `e${n}`, ...(signal ? { signal } : {}) });
const events = (...ns: number[]): Record<string, ServingEvent> =>
  Object.fromEntries(ns.map((n, i) => [String.fromCharCode(97 + i), ev(n)]));

describe('modelRunner with batching (marble)', () => {
  let scheduler: TestScheduler;
  beforeEach(() => {
    scheduler = new TestScheduler((actual, expected) => expect(actual).toEqual(expected));
  });

  it('gives the same outputs as without batching, one batch for calls arriving together', () => {
    const run = (batching?: ModelEntry['batching']) => {
      let seen: unknown;
      const scheduler = new TestScheduler((actual, expected) => expect(actual).toEqual(expected));
      scheduler.run(({ cold, hot }) => {
        const executor = testExecutor({ m: (x: { n: number }) => cold('-a|', { a: { y: x.n * 2 } }) });
        const out: unknown[] = [];
        hot('(abcd)-|', events(1, 2, 3, 4))
          .pipe(modelRunner({ models: [entry(batching ? { batching } : {})], executor }), bodies())
          .subscribe((b) => out.push(b));
        scheduler.flush();
        seen = { out, batches: executor.batches.map((b) => [b.size, b.at]) };
      });
      return seen;
    };
    expect(run()).toEqual({ out: [{ y: 2 }, { y: 4 }, { y: 6 }, { y: 8 }], batches: [] });
    expect(run({ maxBatchSize: 8, maxWaitMs: 2 })).toEqual({ out: [{ y: 2 }, { y: 4 }, { y: 6 }, { y: 8 }], batches: [[4, 2]] });
  });

  it('a call waits at most maxWaitMs for others', () => {
    scheduler.run(({ cold, hot, expectObservable }) => {
      const executor = testExecutor({ m: (x: { n: number }) => cold('a|', { a: x.n }) });
      const out = hot('a-----|', events(1)).pipe(
        modelRunner({ models: [entry({ batching: { maxBatchSize: 2, maxWaitMs: 3 } })], executor }),
        bodies(),
      );
      expectObservable(out).toBe('---a--|', { a: 1 });
    });
  });

  it('a batch leaves as soon as it has maxBatchSize calls, and never has more', () => {
    scheduler.run(({ cold, hot, expectObservable }) => {
      const executor = testExecutor({ m: (x: { n: number }) => cold('a|', { a: x.n }) });
      // a, b and c arrive together: a and b fill a batch; c waits and d fills the next one.
      const out = hot('(abc)-d---|', events(1, 2, 3, 4)).pipe(
        modelRunner({ models: [entry({ batching: { maxBatchSize: 2, maxWaitMs: 9 } })], executor }),
        bodies(),
      );
      expectObservable(out).toBe('(ab)--(cd)|', { a: 1, b: 2, c: 3, d: 4 });
      scheduler.flush();
      expect(executor.batches.map((b) => [b.size, b.at])).toEqual([
        [2, 0],
        [2, 6],
      ]);
    });
  });

  it('a failing call in a batch fails alone; the others keep their outputs', () => {
    scheduler.run(({ cold, hot, expectObservable }) => {
      const executor = testExecutor({
        m: (x: { n: number }) => {
          if (x.n < 0) throw new RangeError(`n must be >= 0, got ${x.n}`);
          return cold('-a|', { a: x.n });
        },
      });
      const out = hot('(abc)-|', events(1, -2, 3)).pipe(
        modelRunner({ models: [entry({ batching: { maxBatchSize: 3, maxWaitMs: 1 } })], executor, raiseException: false }),
        bodies(),
      );
      expectObservable(out).toBe('-(abc)|', { a: 1, b: { error: 'RangeError: n must be >= 0, got -2' }, c: 3 });
    });
  });

  it('a batch that throws fails every call in it, and the next batch runs', () => {
    scheduler.run(({ cold, hot, expectObservable }) => {
      let batch = 0;
      const executor = testExecutor({ m: (x: { n: number }) => cold('a|', { a: x.n }) });
      wrapInvokeBatch(executor, (invokeBatch) => (name, inputs, contexts) => {
        if (batch++ === 0) throw new Error('the whole batch failed');
        return invokeBatch(name, inputs, contexts);
      });
      const out = hot('(ab)--(cd)|', events(1, 2, 3, 4)).pipe(
        modelRunner({ models: [entry({ batching: { maxBatchSize: 2, maxWaitMs: 1 } })], executor, raiseException: false }),
        bodies(),
      );
      const failed = { error: 'Error: the whole batch failed' };
      expectObservable(out).toBe('(ab)--(cd)|', { a: failed, b: failed, c: 3, d: 4 });
    });
  });

  it('a cancelled call leaves its batch without failing the others', () => {
    scheduler.run(({ cold, hot, expectObservable }) => {
      const controller = new AbortController();
      const executor = testExecutor({ m: (x: { n: number }) => cold('----a|', { a: x.n }) });
      asyncScheduler.schedule(() => controller.abort(new Error('event 2 was cancelled')), 2);
      const out = hot('(abc)|', { a: ev(1), b: ev(2, controller.signal), c: ev(3) }).pipe(
        modelRunner({ models: [entry({ batching: { maxBatchSize: 4, maxWaitMs: 1 } })], executor, raiseException: false }),
      );
      // Events leave in order: 2 settled at frame 2, and waits for 1.
      expectObservable(out.pipe(bodies())).toBe('-----(abc|)', { a: 1, b: { error: 'Error: event 2 was cancelled' }, c: 3 });
      scheduler.flush();
      expect(executor.batches.map((b) => b.size)).toEqual([3]);
    });
  });

  it('a batch whose calls are all cancelled is cancelled once the last one is, and frees its slot then', () => {
    scheduler.run(({ cold, hot, expectObservable }) => {
      const first = new AbortController();
      const second = new AbortController();
      let unsubscribed: number[] = [];
      const executor = testExecutor({ m: (x: { n: number }) => cold('------a|', { a: x.n }) });
      wrapInvokeBatch(
        executor,
        (invokeBatch) => (name, inputs, contexts) =>
          new Observable((subscriber) => {
            const inner = (invokeBatch(name, inputs, contexts) as Observable<unknown>).subscribe(subscriber);
            return () => {
              unsubscribed = [...unsubscribed, scheduler.now()];
              inner.unsubscribe();
            };
          }),
      );
      // The batch of 1 and 2 holds the only slot; 3 waits for it. 1 is cancelled at 1, 2 at 3: the
      // batch is given up at 3 (not at 1: 2 still wants it), and 3 starts then (its answer at 3 + 6),
      // not when the batch would have answered (6).
      asyncScheduler.schedule(() => first.abort(new Error('1 cancelled')), 1);
      asyncScheduler.schedule(() => second.abort(new Error('2 cancelled')), 3);
      const out = hot('(abc)|', { a: ev(1, first.signal), b: ev(2, second.signal), c: ev(3) }).pipe(
        modelRunner({ models: [entry({ maxInFlight: 1, batching: { maxBatchSize: 2, maxWaitMs: 1 } })], executor, raiseException: false }),
        bodies(),
      );
      expectObservable(out).toBe('-a-b-----(c|)', { a: { error: 'Error: 1 cancelled' }, b: { error: 'Error: 2 cancelled' }, c: 3 });
      scheduler.flush();
      // The batch is torn down at 3, given up (3's call, alone, runs by invoke, not invokeBatch).
      expect(unsubscribed).toEqual([3]);
      expect(executor.batches.map((b) => [b.size, b.at])).toEqual([[2, 0]]);
    });
  });

  it('timeouts apply per call: a batch slower than timeoutMs times its calls out and keeps its slot until it answers', () => {
    scheduler.run(({ cold, hot, expectObservable }) => {
      const executor = testExecutor({ m: (x: { n: number }) => cold('-----a|', { a: x.n }) });
      const out = hot('(ab)c|', events(1, 2, 3)).pipe(
        modelRunner({
          models: [entry({ maxInFlight: 1, timeoutMs: 3, batching: { maxBatchSize: 2, maxWaitMs: 1 } })],
          executor,
          raiseException: false,
        }),
        bodies(),
      );
      const late = { error: "ModelTimeoutError: model 'm' timed out after 3 ms" };
      // 3 waits for the batch's slot (taken until the batch answers at frame 5), then times out at 5 + 3.
      expectObservable(out).toBe('---(ab)-(c|)', { a: late, b: late, c: late });
    });
  });

  it('rejects a bad batching option, naming the field', () => {
    expect(() => modelRunner({ models: [entry({ batching: { maxBatchSize: 0, maxWaitMs: 1 } })] })).toThrow(ConfigError);
    expect(() => modelRunner({ models: [entry({ batching: { maxBatchSize: 0, maxWaitMs: 1 } })] })).toThrow(
      /models\[0\]\.batching\.maxBatchSize/,
    );
    expect(() => modelRunner({ models: [entry({ batching: { maxBatchSize: 2, maxWaitMs: -1 } })] })).toThrow(
      /models\[0\]\.batching\.maxWaitMs/,
    );
    expect(() => modelRunner({ models: [entry({ batching: { maxBatchSize: 2.5, maxWaitMs: 1 } })] })).toThrow(/positive integer/);
    expect(() => modelRunner({ models: [entry({ batching: { maxBatchSize: 2, maxWaitMs: 1, size: 3 } as never })] })).toThrow(
      /unknown field 'size'/,
    );
  });
});
