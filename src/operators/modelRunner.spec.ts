import { map, type Observable } from 'rxjs';
import { TestScheduler } from 'rxjs/testing';
import { beforeEach, describe, expect, it } from 'vitest';
import {
  ConfigError,
  ModelRunnerError,
  ModelSelector,
  QueueFullError,
  SelectorError,
  modelRunner,
  toEvent,
  type ModelEntry,
  type ServingEvent,
} from '../index.js';
import { bodies, testExecutor } from '../testing/index.js';

const entry = (endpointName: string, extra: Partial<ModelEntry> = {}): ModelEntry => ({
  endpointName,
  modelClass: 'Model',
  executionMechanism: 'asyncio',
  ...extra,
});

const ev = (id: string, body: unknown) => toEvent(body, { id });

describe('modelRunner (marble)', () => {
  let scheduler: TestScheduler;
  beforeEach(() => {
    scheduler = new TestScheduler((actual, expected) => expect(actual).toEqual(expected));
  });

  it('runs every model on each event and merges outputs keyed by endpoint name', () => {
    scheduler.run(({ cold, hot, expectObservable, expectSubscriptions }) => {
      const executor = testExecutor({
        m1: (x: { n: number }) => cold('--a|', { a: { n: x.n + 1 } }),
        m2: (x: { n: number }) => cold('-b|', { b: { n: x.n + 2 } }),
      });
      const source = hot('-a--b--|', { a: ev('a', { n: 1 }), b: ev('b', { n: 10 }) });
      const subs = '^------!';
      const out = source.pipe(modelRunner({ models: [entry('m1'), entry('m2')], executor }), bodies());
      expectObservable(out).toBe('---x--y|', {
        x: { m1: { n: 2 }, m2: { n: 3 } },
        y: { m1: { n: 11 }, m2: { n: 12 } },
      });
      expectSubscriptions(source.subscriptions).toBe(subs);
    });
  });

  it('with one registered model the body becomes its output', () => {
    scheduler.run(({ cold, hot, expectObservable }) => {
      const executor = testExecutor({ only: (x: { n: number }) => cold('-a|', { a: { n: x.n * 2 } }) });
      const out = hot('a|', { a: ev('a', { n: 4 }) }).pipe(modelRunner({ models: [entry('only')], executor }), bodies());
      expectObservable(out).toBe('-(x|)', { x: { n: 8 } });
    });
  });

  it('keys by endpoint when several are registered, also when the selector picks one', () => {
    scheduler.run(({ hot, expectObservable }) => {
      const executor = testExecutor({ m1: () => 1, m2: () => 2 });
      const out = hot('a|', { a: ev('a', { models: ['m2'] }) }).pipe(
        modelRunner({ models: [entry('m1'), entry('m2')], selector: (e) => (e.body as { models: string[] }).models, executor }),
        bodies(),
      );
      expectObservable(out).toBe('x|', { x: { m2: 2 } });
    });
  });

  it('runs each chosen model once whatever the order of the choice (the models in step order are found without a lookup)', () => {
    scheduler.run(({ hot, expectObservable }) => {
      const executor = testExecutor({ m1: () => 1, m2: () => 2, m3: () => 3 });
      const picks: Record<string, string[]> = { a: ['m2', 'm1'], b: ['m1', 'm3'], c: ['m3'], d: ['m1', 'm2', 'm3'] };
      const out = hot('abcd|', { a: ev('a', {}), b: ev('b', {}), c: ev('c', {}), d: ev('d', {}) }).pipe(
        modelRunner({ models: [entry('m1'), entry('m2'), entry('m3')], selector: (e) => picks[e.id], executor }),
        bodies(),
      );
      expectObservable(out).toBe('wxyz|', { w: { m2: 2, m1: 1 }, x: { m1: 1, m3: 3 }, y: { m3: 3 }, z: { m1: 1, m2: 2, m3: 3 } });
    });
  });

  it('selects all models for null/undefined, none for [] (body {})', () => {
    scheduler.run(({ hot, expectObservable }) => {
      const executor = testExecutor({ m1: () => 1, m2: () => 2 });
      const selections: Record<string, string[] | null | undefined> = { a: null, b: undefined, c: [] };
      const out = hot('abc|', { a: ev('a', {}), b: ev('b', {}), c: ev('c', {}) }).pipe(
        modelRunner({ models: [entry('m1'), entry('m2')], selector: (e) => selections[e.id], executor }),
        bodies(),
      );
      expectObservable(out).toBe('xyz|', { x: { m1: 1, m2: 2 }, y: { m1: 1, m2: 2 }, z: {} });
    });
  });

  it('fails only the event whose selector names an unknown or duplicate model (SelectorError)', () => {
    scheduler.run(({ hot, expectObservable }) => {
      const executor = testExecutor({ m1: () => 1, m2: () => 2 });
      const picks: Record<string, string[]> = { a: ['nope'], b: ['m1', 'm1'], c: ['m1'] };
      const out = hot('abc|', { a: ev('a', {}), b: ev('b', {}), c: ev('c', {}) }).pipe(
        modelRunner({ models: [entry('m1'), entry('m2')], selector: (e) => picks[e.id], executor }),
      );
      const seen = out.pipe(map((e) => (e.error ? [e.id, e.error.name, e.error.message, e.origin] : [e.id, e.body])));
      expectObservable(seen).toBe('xyz|', {
        x: ['a', 'SelectorError', expect.stringContaining("'nope', which is not a model of the step (models: m1, m2)"), 'model_runner'],
        y: ['b', 'SelectorError', expect.stringContaining("'m1' more than once"), 'model_runner'],
        z: ['c', { m1: 1 }],
      });
    });
  });

  it('a throwing selector fails that event with SelectorError carrying the cause', () => {
    scheduler.run(({ hot, expectObservable }) => {
      const boom = new RangeError('bad body');
      const executor = testExecutor({ m1: () => 1 });
      const out = hot('ab|', { a: ev('a', { bad: true }), b: ev('b', {}) }).pipe(
        modelRunner({
          models: [entry('m1')],
          selector: (e) => {
            if ((e.body as { bad?: boolean }).bad) throw boom;
            return null;
          },
          executor,
        }),
        map((e) => (e.error ? [e.error instanceof SelectorError, e.error.cause] : e.body)),
      );
      expectObservable(out).toBe('xy|', { x: [true, boom], y: 1 });
    });
  });

  it('gives each model its own copy of its input (inputPath) and writes results at resultPath', () => {
    scheduler.run(({ hot, expectObservable }) => {
      const original = { req: { n: 1 }, keep: 'me' };
      const executor = testExecutor({
        m1: (x: { n: number }) => {
          x.n = 100; // a model mutating its input must not affect the event or other models
          return x.n;
        },
        m2: (x: { n: number }) => x.n,
      });
      const out = hot('a|', { a: ev('a', original) }).pipe(
        modelRunner({
          models: [entry('m1', { inputPath: 'req' }), entry('m2', { inputPath: 'req', resultPath: 'out.value' })],
          executor,
        }),
        bodies(),
      );
      expectObservable(out).toBe('x|', {
        x: { m1: 100, m2: { req: { n: 1 }, keep: 'me', out: { value: 1 } } },
      });
    });
  });

  it('a failing model yields { error } for it and ModelRunnerError on the event when raiseException', () => {
    scheduler.run(({ cold, hot, expectObservable }) => {
      const executor = testExecutor({ ok: () => 'fine', bad: () => cold('-#', undefined, new TypeError('nope')) });
      const models = [entry('ok'), entry('bad')];
      const raised = hot('a|', { a: ev('a', {}) }).pipe(modelRunner({ models, executor }));
      expectObservable(raised.pipe(map((e) => [e.body, e.error instanceof ModelRunnerError && e.error.modelsErrors, e.origin]))).toBe(
        '-(x|)',
        {
          x: [{ ok: 'fine', bad: { error: 'TypeError: nope' } }, { ok: null, bad: 'TypeError: nope' }, 'model_runner'],
        },
      );
      const kept = hot('a|', { a: ev('a', {}) }).pipe(modelRunner({ models, executor, raiseException: false }));
      expectObservable(kept.pipe(map((e) => [e.body, e.error]))).toBe('-(x|)', {
        x: [{ ok: 'fine', bad: { error: 'TypeError: nope' } }, undefined],
      });
    });
  });

  it('with one model and raiseException false the error is at the top of the body', () => {
    scheduler.run(({ hot, expectObservable }) => {
      const executor = testExecutor({
        m: () => {
          throw new Error('kaput');
        },
      });
      const out = hot('a|', { a: ev('a', {}) }).pipe(modelRunner({ models: [entry('m')], executor, raiseException: false }), bodies());
      expectObservable(out).toBe('x|', { x: { error: 'Error: kaput' } });
    });
  });

  it('times out a slow model (ModelTimeoutError), aborts its signal, keeps the others', () => {
    const signals: AbortSignal[] = [];
    scheduler.run(({ cold, hot, expectObservable }) => {
      const executor = testExecutor({
        slow: (_x, ctx) => {
          signals.push(ctx.signal);
          return cold('-----a|', { a: 'late' });
        },
        fast: () => cold('-b|', { b: 'quick' }),
      });
      const out = hot('a|', { a: ev('a', {}) }).pipe(
        modelRunner({ models: [entry('slow', { timeoutMs: 3 }), entry('fast')], executor, raiseException: false }),
        bodies(),
      );
      expectObservable(out).toBe('---(x|)', {
        x: { slow: { error: "ModelTimeoutError: model 'slow' timed out after 3 ms" }, fast: 'quick' },
      });
    });
    expect(signals[0].aborted).toBe(true);
    expect((signals[0].reason as Error).name).toBe('ModelTimeoutError');
  });

  it('keeps input order by default and emits as done with ordered: false', () => {
    scheduler.run(({ cold, hot, expectObservable }) => {
      const delays: Record<string, string> = { a: '----x|', b: '-x|' };
      const executor = testExecutor({ m: (_x, ctx) => cold(delays[ctx.eventId], { x: ctx.eventId }) });
      const source = hot('ab|', { a: ev('a', {}), b: ev('b', {}) });
      expectObservable(source.pipe(modelRunner({ models: [entry('m')], executor }), bodies())).toBe('----(ab|)', {
        a: 'a',
        b: 'b',
      });
      expectObservable(source.pipe(modelRunner({ models: [entry('m')], executor, ordered: false }), bodies())).toBe('--b-(a|)', {
        a: 'a',
        b: 'b',
      });
    });
  });

  it("a model's maxInFlight lane queues its calls without blocking other models", () => {
    scheduler.run(({ cold, hot, expectObservable }) => {
      const executor = testExecutor({
        slow: () => cold('--s|', { s: 'S' }),
        fast: () => cold('-f|', { f: 'F' }),
      });
      const source = hot('abc|', { a: ev('a', { models: ['slow'] }), b: ev('b', { models: ['slow'] }), c: ev('c', { models: ['fast'] }) });
      const out = source.pipe(
        modelRunner({
          models: [entry('slow', { maxInFlight: 1 }), entry('fast')],
          selector: (e) => (e.body as { models: string[] }).models,
          executor,
          ordered: false,
        }),
        map((e) => e.id),
      );
      // slow runs a (frames 0-2) then b (2-4); fast runs c at frame 2 → 3, untouched by slow's lane
      expectObservable(out).toBe('--ac(b|)');
    });
  });

  it('rejects events past maxInFlight + maxQueue with QueueFullError, at once', () => {
    scheduler.run(({ cold, hot, expectObservable }) => {
      const executor = testExecutor({ m: () => cold('-----x|', { x: 'ok' }) });
      const source = hot('(abcd)|', { a: ev('a', {}), b: ev('b', {}), c: ev('c', {}), d: ev('d', {}) });
      const out = source.pipe(
        modelRunner({ models: [entry('m')], executor, maxInFlight: 1, maxQueue: 1 }),
        map((e) => (e.error ? `${e.id}:${e.error instanceof QueueFullError}` : `${e.id}:ok`)),
      );
      // a runs, b waits, c and d are rejected immediately; b starts when a is emitted
      expectObservable(out).toBe('(xy)-a----(b|)', { x: 'c:true', y: 'd:true', a: 'a:ok', b: 'b:ok' });
    });
  });

  it('passes errored events through untouched without calling any model', () => {
    const failed = toEvent({ x: 1 }, { id: 'f', error: new Error('earlier'), origin: 'before' });
    const executor = testExecutor({ m: () => 'ran' });
    scheduler.run(({ hot, expectObservable }) => {
      const out = hot('a|', { a: failed }).pipe(modelRunner({ models: [entry('m')], executor }));
      expectObservable(out).toBe('a|', { a: failed });
    });
    expect(executor.calls).toHaveLength(0);
  });

  it('records metadata: runner name and inputs, per-model when and latency (virtual clock)', () => {
    scheduler.run(({ cold, hot, expectObservable }) => {
      const executor = testExecutor({ m1: () => cold('--a|', { a: 1 }), m2: () => cold('a|', { a: 2 }) });
      const out = hot('-a|', { a: toEvent({ q: 1 }, { id: 'a', metadata: { trace: 't1' } }) }).pipe(
        modelRunner({ name: 'runner', models: [entry('m1'), entry('m2')], executor }),
        map((e: ServingEvent) => e.metadata),
      );
      expectObservable(out).toBe('---(x|)', {
        x: {
          trace: 't1',
          modelRunner: { name: 'runner', inputs: { q: 1 } },
          models: {
            m1: { when: '1970-01-01T00:00:00.001Z', latencyMs: 2 },
            m2: { when: '1970-01-01T00:00:00.001Z', latencyMs: 0 },
          },
        },
      });
    });
  });

  describe('operator checklist', () => {
    const executor = () => testExecutor({ m: () => 'x' });

    it('forwards a source error', () => {
      scheduler.run(({ hot, expectObservable }) => {
        const out = hot('a#', { a: ev('a', {}) }, new Error('src')).pipe(
          modelRunner({ models: [entry('m')], executor: executor() }),
          bodies(),
        );
        expectObservable(out).toBe('x#', { x: 'x' }, new Error('src'));
      });
    });

    it('completes on an empty source and never emits for a never source', () => {
      scheduler.run(({ cold, expectObservable }) => {
        expectObservable(cold<ServingEvent>('|').pipe(modelRunner({ models: [entry('m')], executor: executor() }))).toBe('|');
        expectObservable(cold<ServingEvent>('-').pipe(modelRunner({ models: [entry('m')], executor: executor() }))).toBe('-');
      });
    });

    it('waits for events in flight before completing', () => {
      scheduler.run(({ cold, hot, expectObservable }) => {
        const ex = testExecutor({ m: () => cold('----a|', { a: 'done' }) });
        expectObservable(hot('a|', { a: ev('a', {}) }).pipe(modelRunner({ models: [entry('m')], executor: ex }), bodies())).toBe(
          '----(a|)',
          { a: 'done' },
        );
      });
    });

    it('early unsubscribe cancels calls in flight, aborts their signals and closes the session', () => {
      const signals: AbortSignal[] = [];
      const ex = testExecutor({
        m: (_x, ctx) => {
          signals.push(ctx.signal);
          return scheduler.createColdObservable('------a|', { a: 1 });
        },
      });
      scheduler.run(({ hot, expectObservable, expectSubscriptions }) => {
        const source = hot('-a--', { a: ev('a', {}) });
        const out = source.pipe(modelRunner({ models: [entry('m')], executor: ex }));
        expectObservable(out, '^--!').toBe('----');
        expectSubscriptions(source.subscriptions).toBe('^--!');
      });
      expect(signals).toHaveLength(1);
      expect(signals[0].aborted).toBe(true);
      expect((signals[0].reason as Error).name).toBe('AbortError');
      expect(ex.opened).toBe(1);
      expect(ex.closed).toBe(1);
    });

    it('opens one session per subscription (state per subscription)', () => {
      const ex = testExecutor({ m: () => 1 });
      const op = modelRunner({ models: [entry('m')], executor: ex });
      scheduler.run(({ hot, expectObservable }) => {
        const src = hot('a|', { a: ev('a', {}) });
        expectObservable(src.pipe(op, bodies())).toBe('x|', { x: 1 });
        expectObservable(src.pipe(op, bodies())).toBe('x|', { x: 1 });
      });
      expect(ex.opened).toBe(2);
      expect(ex.closed).toBe(2);
    });

    it('errors the stream when the executor cannot open (a pipeline fault)', () => {
      scheduler.run(({ hot, expectObservable }) => {
        const ex = testExecutor({});
        const out: Observable<unknown> = hot('a|', { a: ev('a', {}) }).pipe(modelRunner({ models: [entry('m')], executor: ex }));
        expectObservable(out).toBe('#', undefined, expect.any(ConfigError));
      });
    });
  });

  it('works with a ModelSelector subclass instance', () => {
    class OnlyFirst extends ModelSelector {
      override select(_e: ServingEvent, available: readonly ModelEntry[]) {
        return [available[0]];
      }
    }
    scheduler.run(({ hot, expectObservable }) => {
      const executor = testExecutor({ m1: () => 1, m2: () => 2 });
      const out = hot('a|', { a: ev('a', {}) }).pipe(
        modelRunner({ models: [entry('m1'), entry('m2')], selector: new OnlyFirst(), executor }),
        bodies(),
      );
      expectObservable(out).toBe('x|', { x: { m1: 1 } });
    });
  });
});
