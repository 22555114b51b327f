import { fileURLToPath } from 'node:url';
import {
  EMPTY,
  firstValueFrom,
  from,
  lastValueFrom,
  map,
  NEVER,
  Observable,
  of,
  Subject,
  Subscriber,
  throwError,
  timer,
  toArray,
} from 'rxjs';
import { afterEach, describe, expect, it } from 'vitest';
import {
  ConfigError,
  Model,
  ModelLoadError,
  ModelRunnerError,
  asEvents,
  modelRunner,
  registerModel,
  registerSelector,
  toEvent,
  unregisterModel,
  type ModelEntry,
  type PredictContext,
  type ServingEvent,
} from '../index.js';
import { ModelSelector } from '../selector.js';
import { collectUnhandled } from '../../test/support/unhandled.js';

const fixture = fileURLToPath(new URL('../../test/fixtures/models.mjs', import.meta.url));
const run = (events: unknown[], op: ReturnType<typeof modelRunner>) => lastValueFrom(from(events).pipe(asEvents(), op, toArray()));

class Inc extends Model<{ n: number }, { n: number }> {
  override predict(body: { n: number }) {
    return { n: body.n + ((this.params.by as number) ?? 1) };
  }
}

describe('modelRunner with in-process mechanisms', () => {
  afterEach(() => {
    unregisterModel('Inc');
    unregisterModel('Scaler');
  });

  it('naive and asyncio give the same results; naive emits synchronously', async () => {
    const models = (mechanism: 'naive' | 'asyncio'): ModelEntry[] => [
      { endpointName: 'a', modelClass: Inc, executionMechanism: mechanism, params: { by: 1 } },
      { endpointName: 'b', modelClass: Inc, executionMechanism: mechanism, params: { by: 10 } },
    ];
    const naive = await run([{ n: 1 }, { n: 2 }], modelRunner({ models: models('naive') }));
    const asyncio = await run([{ n: 1 }, { n: 2 }], modelRunner({ models: models('asyncio') }));
    expect(naive.map((e) => e.body)).toEqual([
      { a: { n: 2 }, b: { n: 11 } },
      { a: { n: 3 }, b: { n: 12 } },
    ]);
    expect(asyncio.map((e) => e.body)).toEqual(naive.map((e) => e.body));

    const seen: unknown[] = [];
    of(toEvent({ n: 5 }))
      .pipe(modelRunner({ models: models('naive') }))
      .subscribe((e) => seen.push(e.body));
    expect(seen).toEqual([{ a: { n: 6 }, b: { n: 15 } }]); // no await: emitted inline
  });

  it('resolves a class by registered name, and by module reference (named and default export)', async () => {
    registerModel('Inc', Inc);
    registerModel('Scaler', { module: fixture, export: 'Scaler' });
    const out = await run(
      [{ n: 1, x: 3 }],
      modelRunner({
        models: [
          { endpointName: 'byName', modelClass: 'Inc', executionMechanism: 'naive' },
          { endpointName: 'registeredRef', modelClass: 'Scaler', executionMechanism: 'asyncio', params: { factor: 2 } },
          { endpointName: 'ref', modelClass: { module: fixture }, executionMechanism: 'asyncio' },
        ],
      }),
    );
    expect(out[0].body).toEqual({
      byName: { n: 2 },
      registeredRef: { y: 6 },
      ref: { echo: { n: 1, x: 3 }, origin: 'ref' },
    });
  });

  it("has 'Model' registered by default: it returns its input", async () => {
    const out = await run([{ q: 1 }], modelRunner({ models: [{ endpointName: 'id', modelClass: 'Model', executionMechanism: 'naive' }] }));
    expect(out[0].body).toEqual({ q: 1 });
  });

  it('holds events until async load() finished, loads once per subscription, closes on completion', async () => {
    const log: string[] = [];
    class Slow extends Model {
      override async load() {
        log.push('load:start');
        await new Promise((r) => setTimeout(r, 20));
        log.push('load:end');
      }
      override predict(body: unknown) {
        log.push('predict');
        return body;
      }
      override close() {
        log.push('close');
      }
    }
    const subject = new Subject<ServingEvent>();
    const outputs: unknown[] = [];
    const done = new Promise<void>((resolve) =>
      subject
        .pipe(modelRunner({ models: [{ endpointName: 's', modelClass: Slow, executionMechanism: 'asyncio' }] }))
        .subscribe({ next: (e) => outputs.push(e.body), complete: resolve }),
    );
    subject.next(toEvent(1));
    subject.next(toEvent(2));
    subject.complete();
    await done;
    expect(outputs).toEqual([1, 2]);
    expect(log).toEqual(['load:start', 'load:end', 'predict', 'predict', 'close']);
  });

  it('errors the stream with ModelLoadError naming the endpoint when a model cannot load', async () => {
    class Broken extends Model {
      // eslint-disable-next-line @typescript-eslint/require-await -- the case under test: a load that rejects
      override async load() {
        throw new Error('weights missing');
      }
    }
    const failing = run([1], modelRunner({ models: [{ endpointName: 'broken', modelClass: Broken, executionMechanism: 'asyncio' }] }));
    await expect(failing).rejects.toBeInstanceOf(ModelLoadError);
    await expect(failing).rejects.toThrow("model 'broken' could not be loaded: weights missing");

    const unknown = run([1], modelRunner({ models: [{ endpointName: 'x', modelClass: 'NoSuchModel', executionMechanism: 'naive' }] }));
    await expect(unknown).rejects.toThrow(/no model class is registered as 'NoSuchModel'.*registerModel/);

    const badExport = run(
      [1],
      modelRunner({ models: [{ endpointName: 'x', modelClass: { module: fixture, export: 'notAModel' }, executionMechanism: 'asyncio' }] }),
    );
    await expect(badExport).rejects.toThrow(/export 'notAModel' .* is not a model class/);
  });

  it('aborts a timed-out call through its AbortSignal and reports ModelTimeoutError for that model', async () => {
    let aborted: unknown;
    class Hanging extends Model {
      override predict(_body: unknown, ctx: PredictContext) {
        return new Promise((_resolve, reject) => {
          ctx.signal.addEventListener('abort', () => {
            aborted = ctx.signal.reason;
            reject(ctx.signal.reason);
          });
        });
      }
    }
    const out = await run(
      [{}],
      modelRunner({
        models: [
          { endpointName: 'hang', modelClass: Hanging, executionMechanism: 'asyncio', timeoutMs: 30 },
          { endpointName: 'ok', modelClass: 'Model', executionMechanism: 'naive' },
        ],
      }),
    );
    expect(out[0].error).toBeInstanceOf(ModelRunnerError);
    expect((out[0].error as ModelRunnerError).modelsErrors).toEqual({
      hang: "ModelTimeoutError: model 'hang' timed out after 30 ms",
      ok: null,
    });
    expect((aborted as Error).name).toBe('ModelTimeoutError');
  });

  it('unsubscribing aborts calls in flight and closes the models', async () => {
    const events: string[] = [];
    class Waits extends Model {
      override predict(_body: unknown, ctx: PredictContext) {
        return new Promise((resolve) => {
          ctx.signal.addEventListener('abort', () => {
            events.push(`aborted:${(ctx.signal.reason as Error).name}`);
            resolve('late');
          });
        });
      }
      override close() {
        events.push('closed');
      }
    }
    const subject = new Subject<ServingEvent>();
    const received: unknown[] = [];
    const sub = subject
      .pipe(modelRunner({ models: [{ endpointName: 'w', modelClass: Waits, executionMechanism: 'asyncio' }] }))
      .subscribe((e) => received.push(e));
    subject.next(toEvent(1));
    subject.next(toEvent(2));
    await new Promise((r) => setTimeout(r, 5));
    sub.unsubscribe();
    await new Promise((r) => setTimeout(r, 5));
    expect(events).toEqual(['aborted:AbortError', 'aborted:AbortError', 'closed']);
    expect(received).toEqual([]);
  });

  it('constructs a registered selector by name with selectorParams, once per subscription', async () => {
    let constructed = 0;
    class Pick extends ModelSelector {
      private readonly only: string;
      constructor({ only }: { only: string }) {
        super();
        this.only = only;
        constructed++;
      }
      override select() {
        return [this.only];
      }
    }
    registerSelector('Pick', Pick, { override: true });
    const op = modelRunner({
      models: [
        { endpointName: 'a', modelClass: 'Model', executionMechanism: 'naive' },
        { endpointName: 'b', modelClass: 'Model', executionMechanism: 'naive' },
      ],
      selector: 'Pick',
      selectorParams: { only: 'b' },
    });
    expect((await run([{ v: 1 }], op))[0].body).toEqual({ b: { v: 1 } });
    await run([{ v: 1 }], op);
    expect(constructed).toBe(2);
    await expect(
      run([1], modelRunner({ models: [{ endpointName: 'a', modelClass: 'Model', executionMechanism: 'naive' }], selector: 'Nope' })),
    ).rejects.toThrow(/model_runner\.selector: expected a registered selector .*got 'Nope'/);
  });

  it('fails a model whose inputPath is missing from the body, naming the path and event', async () => {
    const out = await run(
      [toEvent({ other: 1 }, { id: 'e1' })],
      modelRunner({
        models: [{ endpointName: 'm', modelClass: 'Model', executionMechanism: 'naive', inputPath: 'features' }],
        raiseException: false,
      }),
    );
    expect(out[0].body).toEqual({ error: "TypeError: inputPath 'features' is not in the body of event 'e1'" });
  });

  it('fails a model whose input cannot be copied (a function inside) without touching the others', async () => {
    const out = await run(
      [toEvent({ f: () => 1, ok: 2 }, { id: 'e1' })],
      modelRunner({
        models: [
          { endpointName: 'whole', modelClass: 'Model', executionMechanism: 'naive' },
          { endpointName: 'part', modelClass: 'Model', executionMechanism: 'naive', inputPath: 'ok' },
        ],
        raiseException: false,
      }),
    );
    expect(out[0].body).toEqual({
      whole: { error: 'TypeError: cannot copy the model input: input.f is a function, which structured clone cannot copy' },
      part: 2,
    });
  });

  it('writes results at resultPath into a copy, leaving the input event unchanged', async () => {
    class Upper extends Model<string, { answer: string }> {
      override predict(q: string) {
        return { answer: q.toUpperCase() };
      }
    }
    const input = toEvent({ question: 'q' });
    const out = await firstValueFrom(
      of(input).pipe(
        modelRunner({
          models: [{ endpointName: 'llm', modelClass: Upper, executionMechanism: 'naive', inputPath: 'question', resultPath: 'output' }],
        }),
      ),
    );
    expect(out.body).toEqual({ question: 'q', output: { answer: 'Q' } });
    expect(input.body).toEqual({ question: 'q' });
    expect(out).not.toBe(input);
    expect(Object.isFrozen(out)).toBe(true);
  });
});

// A model call that returns an Observable (what a worker pool's session returns for every call):
// its first value is the output and it is then unsubscribed, as onResult reads one.
describe('modelRunner with a call that returns an Observable', () => {
  /** Answers per body: `of(n, n + 1)`, `EMPTY`, an error, or a timer; counts unsubscriptions. */
  class Streams extends Model<{ kind: string; n?: number }, unknown> {
    static torndown = 0;
    override predict(body: { kind: string; n?: number }): never {
      const n = body.n ?? 0;
      const source =
        body.kind === 'two'
          ? of(n, n + 1)
          : body.kind === 'empty'
            ? EMPTY
            : body.kind === 'fail'
              ? throwError(() => new RangeError(`bad ${n}`))
              : body.kind === 'later'
                ? timer(1).pipe(map(() => n))
                : NEVER;
      return new Observable((subscriber) => {
        const inner = source.subscribe(subscriber);
        return () => {
          Streams.torndown++;
          inner.unsubscribe();
        };
      }) as never;
    }
  }
  const step = () =>
    modelRunner({ models: [{ endpointName: 's', modelClass: Streams, executionMechanism: 'naive' }], raiseException: false });

  it('takes the first value and unsubscribes; empty fails with EmptyError; an error fails that model only', async () => {
    Streams.torndown = 0;
    const out = await run([{ kind: 'two', n: 1 }, { kind: 'empty' }, { kind: 'fail', n: 3 }, { kind: 'later', n: 4 }], step());
    expect(out.map((e) => e.body)).toEqual([1, { error: 'EmptyError: no elements in sequence' }, { error: 'RangeError: bad 3' }, 4]);
    expect(Streams.torndown).toBe(4);
  });

  it('unsubscribes a call still running when the step is unsubscribed', async () => {
    Streams.torndown = 0;
    const input = new Subject<ServingEvent>();
    const seen: ServingEvent[] = [];
    const subscription = input.pipe(step()).subscribe((e) => seen.push(e));
    input.next(toEvent({ kind: 'never' }));
    await new Promise((resolve) => setTimeout(resolve, 5));
    expect(Streams.torndown).toBe(0);
    subscription.unsubscribe();
    expect(Streams.torndown).toBe(1);
    expect(seen).toEqual([]);
  });

  it('a subscriber that throws on an output is reported where RxJS reports it; the next events still flow', async () => {
    await collectUnhandled(async (reported) => {
      const input = new Subject<ServingEvent>();
      const seen: unknown[] = [];
      // A bare Subscriber (no SafeSubscriber of its own around it) whose next throws once: the
      // throw comes back through the step into the call's subscriber, which reports it (it would
      // otherwise reach the model's Observable, whose operators would swallow it).
      const subscriber = new Subscriber<ServingEvent>({
        next: (e: ServingEvent) => {
          seen.push(e.body);
          if (seen.length === 1) throw new Error('downstream broke');
        },
        error: () => undefined,
        complete: () => undefined,
      });
      input.pipe(modelRunner({ models: [{ endpointName: 's', modelClass: Streams, executionMechanism: 'naive' }] })).subscribe(subscriber);
      input.next(toEvent({ kind: 'later', n: 1 }));
      input.next(toEvent({ kind: 'later', n: 2 }));
      await new Promise((resolve) => setTimeout(resolve, 30));
      expect(seen).toEqual([1, 2]);
      expect(reported).toHaveLength(1);
      expect((reported[0] as Error).message).toBe('downstream broke');
    });
  });
});

describe('modelRunner configuration errors', () => {
  const ok: ModelEntry = { endpointName: 'm', modelClass: 'Model', executionMechanism: 'naive' };
  const cases: [string, unknown, RegExp][] = [
    [
      'unknown mechanism',
      { models: [ok, { ...ok, endpointName: 'x', executionMechanism: 'gpu' }] },
      /modelRunner\.models\[1\]\.executionMechanism: expected 'naive' \| 'asyncio'.*got "gpu"/,
    ],
    ['duplicate endpoint', { models: [ok, ok] }, /modelRunner\.models\[1\]\.endpointName: .*'m', already used by modelRunner\.models\[0\]/],
    ['no models', { models: [] }, /modelRunner\.models: expected a non-empty array/],
    ['unknown option', { models: [ok], maxInflight: 2 }, /modelRunner\.maxInflight: unknown field 'maxInflight'/],
    ['bad maxInFlight', { models: [ok], maxInFlight: 0 }, /modelRunner\.maxInFlight: expected a positive integer, got 0/],
    ['bad maxQueue', { models: [ok], maxQueue: -1 }, /modelRunner\.maxQueue: expected a non-negative integer or Infinity, got -1/],
    [
      'bad timeout',
      { models: [{ ...ok, timeoutMs: 'soon' }] },
      /modelRunner\.models\[0\]\.timeoutMs: expected a positive number of milliseconds, got "soon"/,
    ],
    [
      'bad modelClass',
      { models: [{ ...ok, modelClass: 7 }] },
      /modelRunner\.models\[0\]\.modelClass: expected a registered name, a Model class, \{ module, export\? \}, or a Model instance, got 7/,
    ],
    ['bad path', { models: [{ ...ok, inputPath: 'a..b' }] }, /modelRunner\.models\[0\]\.inputPath: expected a dot path/],
    [
      'class on a pool',
      { models: [{ ...ok, modelClass: Inc, executionMechanism: 'thread_pool' }] },
      /modelRunner\.models\[0\]\.modelClass: expected a registered name or \{ module, export \}.*registerModel\('Inc'/,
    ],
    ['name mismatch', { models: [{ ...ok, params: { name: 'other' } }] }, /modelRunner\.models\[0\]\.params\.name/],
    ['bad selector', { models: [ok], selector: 42 }, /modelRunner\.selector: expected a ModelSelector/],
  ];
  it.each(cases)('%s → ConfigError naming the field', (_label, config, message) => {
    const attempt = () => modelRunner(config as never);
    expect(attempt).toThrow(ConfigError);
    expect(attempt).toThrow(message);
  });

  it("refuses 'shared_executor' given by hand (proxies set it), naming the model", async () => {
    await expect(
      run([1], modelRunner({ models: [{ endpointName: 'proxy', modelClass: 'Model', executionMechanism: 'shared_executor' }] })),
    ).rejects.toThrow(/model_runner\.models\['proxy'\]\.executionMechanism: expected a step of the graph that made this proxy/);
  });
});
