import { TestScheduler } from 'rxjs/testing';
import { filter, map, type OperatorFunction } from 'rxjs';
import { beforeEach, describe, expect, it } from 'vitest';
import { ConfigError, RouteNotFoundError, modelRouter, modelRunner, step, toEvent, type ServingEvent } from '../index.js';
import { bodies, testExecutor, type TestModel } from '../testing/index.js';

/** A route of one model whose stand-in is `model`. */
const one = (name: string, model: TestModel, extra: Record<string, unknown> = {}): OperatorFunction<ServingEvent, ServingEvent> =>
  modelRunner({
    name,
    models: [{ endpointName: name, modelClass: 'Model', executionMechanism: 'asyncio', ...extra }],
    executor: testExecutor({ [name]: model }),
  });
const req = (id: string, path: string | undefined, body: unknown = { inputs: [1] }) =>
  toEvent(body, { id, ...(path !== undefined ? { path } : {}) });
/** Frame n of the virtual clock as the envelope's timestamp. */
const ts = (frame: number) => new Date(frame).toISOString();

describe('modelRouter', () => {
  let scheduler: TestScheduler;
  beforeEach(() => {
    scheduler = new TestScheduler((actual, expected) => expect(actual).toEqual(expected));
  });

  it('routes infer by the path (versions first) and answers the V2 envelope when the route answers', () => {
    scheduler.run(({ cold, hot, expectObservable }) => {
      const routes = {
        m1: one('m1', (b: { inputs: number[] }) => cold('----a|', { a: b.inputs.map((x) => x * 10) })),
        'm1:v2': one('m1v2', (b: { inputs: number[] }) => cold('-a|', { a: b.inputs.map((x) => x * 20) })),
        m2: one('m2', () => cold('a|', { a: { model_name: 'm2', outputs: [{ name: 'y', data: [7] }] } })),
      };
      const source = hot('abcd|', {
        a: req('a', '/v2/models/m1/infer'),
        b: req('b', '/v2/models/m1/versions/v2/infer'),
        c: req('c', '/v2/models/m1/versions/v9/predict'), // no route 'm1:v9': route 'm1', version kept
        d: req('d', '/ml/v2/models/m2/infer'), // under a mount prefix; a V2 answer's outputs taken as they are
      });
      // answers leave as their routes give them: b (1 frame), d (at once), a and c (4 frames)
      expectObservable(source.pipe(modelRouter({ routes }), bodies())).toBe('--bda-(c|)', {
        a: { id: 'a', model_name: 'm1', outputs: [10], timestamp: ts(4) },
        b: { id: 'b', model_name: 'm1', model_version: 'v2', outputs: [20], timestamp: ts(2) },
        c: { id: 'c', model_name: 'm1', model_version: 'v9', outputs: [10], timestamp: ts(6) },
        d: { id: 'd', model_name: 'm2', outputs: [{ name: 'y', data: [7] }], timestamp: ts(3) },
      });
    });
  });

  it("without a model in the path: the body's model, else defaultRoute, else the first route; the body's operation", () => {
    scheduler.run(({ hot, expectObservable }) => {
      const echo =
        (name: string): TestModel =>
        (_b, ctx) =>
          `${name}:${ctx.operation ?? 'predict'}`;
      const routes = { a: one('a', echo('a')), b: one('b', echo('b')) };
      const source = hot('abcd|', {
        a: req('a', undefined, { inputs: [], model: 'b' }),
        b: req('b', undefined),
        c: req('c', '/', { inputs: [], operation: 'explain' }),
        d: req('d', undefined, { model: 'b', operation: 'hello' }),
      });
      const outputs = (e: ServingEvent) => (e.error ? e.error.message : ((e.body as { outputs?: unknown }).outputs ?? e.body));
      expectObservable(source.pipe(modelRouter({ routes }), map(outputs))).toBe('abcd|', {
        a: 'b:predict',
        b: 'a:predict',
        c: 'a:explain',
        d: 'b:hello',
      });
      expectObservable(source.pipe(modelRouter({ routes, defaultRoute: 'b' }), map(outputs))).toBe('abcd|', {
        a: 'b:predict',
        b: 'b:predict',
        c: 'b:explain',
        d: 'b:hello',
      });
    });
  });

  it('runs explain, custom operations, metadata and ready on the route, with their answers; the bare prefix lists the models', () => {
    scheduler.run(({ hot, expectObservable }) => {
      const model: TestModel = (b: { inputs?: number[] }, ctx) =>
        ctx.operation === 'explain'
          ? { why: b.inputs }
          : ctx.operation === 'metadata'
            ? {}
            : ctx.operation === 'hello'
              ? { hi: ctx.origin }
              : b.inputs;
      const routes = { m: one('m', model, { inputs: ['f1', 'f2'], outputs: ['label'] }) };
      const source = hot('abcdef|', {
        a: req('a', '/v2/models/m/explain', { inputs: [3] }),
        b: req('b', '/v2/models/m/hello', { any: 'body' }),
        c: req('c', '/v2/models/m/metadata', {}),
        d: req('d', '/v2/models/m/versions/v1/metadata', {}),
        e: req('e', '/v2/models/m/ready', {}),
        f: req('f', '/v2/models', {}),
      });
      expectObservable(source.pipe(modelRouter({ name: 'models', routes }), bodies())).toBe('abcdef|', {
        a: { id: 'a', model_name: 'm', outputs: { why: [3] } }, // explain: no timestamp, as MLRun
        b: { hi: 'm' },
        c: { name: 'm', version: '', inputs: ['f1', 'f2'], outputs: ['label'] },
        d: { name: 'm', version: 'v1', inputs: ['f1', 'f2'], outputs: ['label'] },
        e: { name: 'm', ready: true },
        f: { models: ['m'] },
      });
    });
  });

  it('the operation does not leak: the answer has no metadata.operation, a later step sees a plain event', () => {
    scheduler.run(({ hot, expectObservable }) => {
      const routes = { m: one('m', (_b, ctx) => ctx.operation ?? 'predict') };
      const out = hot('a|', { a: req('a', '/v2/models/m/hello', {}) }).pipe(
        modelRouter({ routes }),
        map((e) => [e.body, 'operation' in e.metadata, (e.metadata.modelRunner as { name: string }).name]),
      );
      expectObservable(out).toBe('a|', { a: ['hello', false, 'm'] });
    });
  });

  it('bad requests fail alone, each naming what was wrong, before any model runs', () => {
    const ran: string[] = [];
    scheduler.run(({ hot, expectObservable }) => {
      const routes = { m1: one('m1', (b) => (ran.push('m1'), b)), m2: one('m2', (b) => (ran.push('m2'), b)) };
      const source = hot('abcdefg|', {
        a: req('a', '/v2/models/m9/infer'),
        b: req('b', '/v2/models/m7/versions/v3/infer'),
        c: req('c', '/v1/chat/infer'),
        d: req('d', '/v2/models/m1/infer', { inputs: 'not a list' }),
        e: req('e', '/v2/models/m1/explain', { instances: [1] }),
        f: req('f', '/v2/models/m1/a/b', {}),
        g: req('g', '/v2/models/m1/infer', [1, 2]),
      });
      expectObservable(
        source.pipe(
          modelRouter({ name: 'r', routes }),
          map((e) => `${e.error?.name}: ${e.error?.message} @${e.origin}`),
        ),
      ).toBe('abcdefg|', {
        a: "RouteNotFoundError: router 'r': no route for key 'm9'; available routes: 'm1', 'm2' @r",
        b: "RouteNotFoundError: router 'r': no route for key 'm7:v3'; available routes: 'm1', 'm2' @r",
        c: "RouteNotFoundError: router 'r': path '/v1/chat/infer' is not under its prefix '/v2/models'; available routes: 'm1', 'm2' @r",
        d: "TypeError: router 'r': a V2 'infer' request to 'm1' needs 'inputs' as a list in its body; got inputs a string @r",
        e: "TypeError: router 'r': a V2 'explain' request to 'm1' needs 'inputs' as a list in its body; got inputs missing @r",
        f: "TypeError: router 'r': 'a/b' is not an operation of 'm1'; operations are infer, predict, explain, metadata, ready, or a custom operation's name (letters, digits, _) that calls the model's op_<name> @r",
        g: "TypeError: router 'r': a V2 'infer' request to 'm1' needs 'inputs' as a list in its body; got a body that is a list @r",
      });
    });
    expect(ran).toEqual([]);
  });

  it("a route's failure is the event's, as its step reported it; a route of several models answers infer only", () => {
    scheduler.run(({ cold, hot, expectObservable }) => {
      const pair = modelRunner({
        name: 'pair',
        models: [
          { endpointName: 'p1', modelClass: 'Model', executionMechanism: 'asyncio' },
          { endpointName: 'p2', modelClass: 'Model', executionMechanism: 'asyncio' },
        ],
        executor: testExecutor({ p1: () => 1, p2: () => 2 }),
      });
      const routes = { bad: one('bad', () => cold('-#', undefined, new RangeError('boom'))), pair };
      const source = hot('a-b-c|', {
        a: req('a', '/v2/models/bad/infer'),
        b: req('b', '/v2/models/pair/explain'),
        c: req('c', '/v2/models/pair/infer'),
      });
      expectObservable(source.pipe(modelRouter({ routes }), bodies())).toBe('-ab-c|', {
        a: { error: "ModelRunnerError: step 'bad': bad failed (RangeError: boom)" },
        b: {
          error:
            "TypeError: step 'pair' has 2 models ('p1', 'p2'): operation 'explain' needs a route of one model; several models answer 'infer' only",
        },
        c: { id: 'c', model_name: 'pair', outputs: { p1: 1, p2: 2 }, timestamp: ts(4) },
      });
    });
  });

  it('passes errored events untouched, forwards source errors, completes on empty, and unsubscribes its routes early', () => {
    const failed = toEvent({}, { id: 'f', error: new Error('earlier') });
    scheduler.run(({ hot, cold, expectObservable, expectSubscriptions }) => {
      const inner = cold<string>('-----x|');
      const routes = { m: one('m', () => inner) };
      expectObservable(
        hot('a|', { a: failed }).pipe(
          modelRouter({ routes }),
          map((e) => e === failed),
        ),
      ).toBe('a|', { a: true });
      expectObservable(hot<ServingEvent>('#').pipe(modelRouter({ routes }))).toBe('#');
      expectObservable(cold<ServingEvent>('|').pipe(modelRouter({ routes }))).toBe('|');
      const source = hot('-a---', { a: req('a', '/v2/models/m/infer') });
      expectObservable(source.pipe(modelRouter({ routes })), '^--!').toBe('----');
      expectSubscriptions(source.subscriptions).toBe('^--!');
      // the model's call started at frame 1 and was cancelled with the step at frame 3
      expectSubscriptions(inner.subscriptions).toBe('-^-!');
    });
  });

  it('a route whose stream errors (a fault of the pipeline) errors the step; a never source emits nothing', () => {
    scheduler.run(({ cold, hot, expectObservable }) => {
      const broken: OperatorFunction<ServingEvent, ServingEvent> = () => cold<ServingEvent>('--#', undefined, new Error('route broke'));
      expectObservable(hot('a---', { a: req('a', '/v2/models/m/infer') }).pipe(modelRouter({ routes: { m: broken } }))).toBe(
        '--#',
        undefined,
        new Error('route broke'),
      );
      expectObservable(cold<ServingEvent>('-').pipe(modelRouter({ routes: { m: one('m', (b) => b) } }))).toBe('-');
    });
  });

  it('a route that ends without answering answers the event errored when it completes, and later events too: never a hang', () => {
    scheduler.run(({ hot, expectObservable }) => {
      const routes = { drops: step((b: unknown) => b), silent: filter<ServingEvent>(() => false) };
      const out = hot('ab|', { a: req('a', '/v2/models/silent/infer'), b: req('b', '/v2/models/drops/infer', { inputs: [2] }) }).pipe(
        modelRouter({ name: 'r', routes }),
        map((e) => e.error?.message ?? (e.body as { outputs: unknown }).outputs),
      );
      expectObservable(out).toBe('-b(a|)', { a: "step 'r': route 'silent' completed without answering event 'a'", b: { inputs: [2] } });
    });
  });

  it('validates its configuration', () => {
    const r = step((b: unknown) => b);
    expect(() => modelRouter({ routes: {} })).toThrow(/modelRouter\.routes: expected at least one route/);
    expect(() => modelRouter({ routes: { a: r }, defaultRoute: 'b' })).toThrow(
      /modelRouter\.defaultRoute: expected one of the routes \('a'\), got 'b'/,
    );
    expect(() => modelRouter({ routes: { 'a/b': r } })).toThrow(
      /modelRouter\.routes: expected route names that are non-empty and have no '\/'/,
    );
    expect(() => modelRouter({ routes: { a: 'nope' as never } })).toThrow(/modelRouter\.routes\.a: expected an operator/);
    expect(() => modelRouter({ routes: { a: r }, prefix: '' })).toThrow(ConfigError);
    expect(() => modelRouter({ routes: { a: r }, extra: 1 } as never)).toThrow(ConfigError);
    expect(RouteNotFoundError).toBeDefined();
  });
});
