import { TestScheduler } from 'rxjs/testing';
import { map, type OperatorFunction } from 'rxjs';
import { beforeEach, describe, expect, it } from 'vitest';
import { ConfigError, ModelRunnerError, modelRunner, step, toEvent, votingEnsemble, type ServingEvent } from '../index.js';
import { bodies, testExecutor, type TestModel } from '../testing/index.js';

const one = (name: string, model: TestModel): OperatorFunction<ServingEvent, ServingEvent> =>
  modelRunner({
    name,
    models: [{ endpointName: name, modelClass: 'Model', executionMechanism: 'asyncio' }],
    executor: testExecutor({ [name]: model }),
  });
/** A route that always predicts `values` (one per row). */
const fixed = (name: string, values: unknown) => one(name, () => values);
const req = (id: string, path?: string, body: unknown = { inputs: [[0], [0], [0]] }) => toEvent(body, { id, ...(path ? { path } : {}) });

describe('votingEnsemble', () => {
  let scheduler: TestScheduler;
  beforeEach(() => {
    scheduler = new TestScheduler((actual, expected) => expect(actual).toEqual(expected));
  });

  it('classification: per row the class with the largest sum of weights; a tie goes to the smallest class', () => {
    scheduler.run(({ cold, hot, expectObservable }) => {
      const routes = {
        a: one('a', () => cold('--r|', { r: [1, 2, 0] })),
        b: fixed('b', [1, 1, 3]),
        c: one('c', () => cold('-r|', { r: [0, 2, 3] })),
      };
      const source = hot('e|', { e: req('e') });
      // equal weights: row 0 → 1 (two votes), row 1 → 2 beats... no: 2 (a, c) against 1 (b) → 2; row 2 → 3 (b, c)
      expectObservable(source.pipe(votingEnsemble({ name: 'ens', routes }), bodies())).toBe('--(e|)', {
        e: { id: 'e', model_name: 'ens', outputs: [1, 2, 3] },
      });
      // a weighs as much as b and c together: every row ties between a's class and the others' → the smallest
      expectObservable(source.pipe(votingEnsemble({ name: 'ens', routes, weights: { a: 2, b: 1, c: 1 } }), bodies())).toBe('--(e|)', {
        e: { id: 'e', model_name: 'ens', outputs: [1, 2, 0] },
      });
      // a route without a weight weighs 0
      expectObservable(source.pipe(votingEnsemble({ name: 'ens', routes, weights: { b: 1 } }), bodies())).toBe('--(e|)', {
        e: { id: 'e', model_name: 'ens', outputs: [1, 1, 3] },
      });
    });
  });

  it('ties of fractions that differ only by rounding are ties (0.1 + 0.2 against 0.3)', () => {
    scheduler.run(({ hot, expectObservable }) => {
      const routes = { a: fixed('a', [5]), b: fixed('b', [5]), c: fixed('c', [4]) };
      const out = hot('e|', { e: req('e', undefined, { inputs: [[0]] }) }).pipe(
        votingEnsemble({ routes, weights: { a: 0.1, b: 0.2, c: 0.3 } }),
        bodies(),
      );
      expectObservable(out).toBe('e|', { e: { id: 'e', model_name: 'voting_ensemble', outputs: [4] } });
    });
  });

  it('regression: the weighted mean, weights normalised to sum 1 (MLRun would leave { a: 2, b: 2 } unnormalised and double it)', () => {
    scheduler.run(({ hot, expectObservable }) => {
      const routes = { a: fixed('a', [1.5, 10]), b: fixed('b', [2.5, 20]) };
      const source = hot('e|', { e: req('e', undefined, { inputs: [[0], [0]] }) });
      expectObservable(source.pipe(votingEnsemble({ routes, weights: { a: 2, b: 2 } }), bodies())).toBe('e|', {
        e: { id: 'e', model_name: 'voting_ensemble', outputs: [2, 15] },
      });
      expectObservable(source.pipe(votingEnsemble({ routes, weights: { a: 3, b: 1 } }), bodies())).toBe('e|', {
        e: { id: 'e', model_name: 'voting_ensemble', outputs: [1.75, 12.5] },
      });
    });
  });

  it('infers the vote type from the first answers and keeps it for the subscription; an explicit type is kept', () => {
    scheduler.run(({ hot, expectObservable }) => {
      let call = 0;
      // first event: integers → classification; second: 1.5 is not a class → refused, not averaged
      const routes = { a: one('a', () => (call++ === 0 ? [1] : [1.5])), b: fixed('b', [1]), c: fixed('c', [0]) };
      const source = hot('ab|', { a: req('a', undefined, { inputs: [[0]] }), b: req('b', undefined, { inputs: [[0]] }) });
      expectObservable(source.pipe(votingEnsemble({ name: 'v', routes }), bodies())).toBe('ab|', {
        a: { id: 'a', model_name: 'v', outputs: [1] },
        b: { error: "TypeError: voting ensemble 'v': route 'a' predicted 1.5 for row 0; a classification vote needs integer classes" },
      });
      const integers = { a: fixed('a', [1]), b: fixed('b', [2]) };
      expectObservable(
        source.pipe(
          votingEnsemble({ routes: integers, voteType: 'regression' }),
          map((e) => (e.body as { outputs: number[] }).outputs),
        ),
      ).toBe('ab|', {
        a: [1.5],
        b: [1.5],
      });
    });
  });

  it("reads each route's predictions: a list, V2 outputs, outputs[predictionColName] (answered keyed), OnnxModel tensors", () => {
    scheduler.run(({ hot, expectObservable }) => {
      const routes = {
        list: fixed('list', [1, 0]),
        v2: fixed('v2', { model_name: 'v2', outputs: [1, 1] }),
        onnx: fixed('onnx', {
          model_name: 'onnx',
          outputs: [
            { name: 'probabilities', data: [0.2, 0.8] },
            { name: 'label', data: [0, 1] },
          ],
        }),
      };
      const source = hot('e|', { e: req('e', undefined, { inputs: [[0], [0]] }) });
      expectObservable(source.pipe(votingEnsemble({ routes, predictionColName: 'label' }), bodies())).toBe('e|', {
        e: { id: 'e', model_name: 'voting_ensemble', outputs: [1, 1] },
      });
      const keyed = { a: fixed('a', { outputs: { label: [3] } }), b: fixed('b', { label: [3] }) };
      expectObservable(source.pipe(votingEnsemble({ routes: keyed, predictionColName: 'label' }), bodies())).toBe('e|', {
        e: { id: 'e', model_name: 'voting_ensemble', outputs: { label: [3] } },
      });
    });
  });

  it("routes that fail are left out and listed in errors; the others' weights are renormalised; all failing fails the event", () => {
    scheduler.run(({ cold, hot, expectObservable }) => {
      const routes = {
        a: fixed('a', [10]),
        b: one('b', () => cold('-#', undefined, new RangeError('b is down'))),
        c: fixed('c', [20]),
        d: fixed('d', ['x']),
      };
      const source = hot('e|', { e: req('e', undefined, { inputs: [[0]] }) });
      expectObservable(
        source.pipe(votingEnsemble({ name: 'v', routes, voteType: 'regression', weights: { a: 1, b: 5, c: 3, d: 1 } }), bodies()),
      ).toBe('-(e|)', {
        e: {
          id: 'e',
          model_name: 'v',
          outputs: [17.5], // (10·1 + 20·3) / 4: b and d left out
          errors: {
            b: 'RangeError: b is down',
            d: 'TypeError: route \'d\': its prediction for row 0 is the string "x", not a finite number',
          },
        },
      });
      const down = { a: one('a', () => cold('#', undefined, new RangeError('a is down'))), b: fixed('b', 'nothing') };
      const out = source.pipe(
        votingEnsemble({ name: 'v', routes: down }),
        map((e) => [e.error instanceof ModelRunnerError, e.error?.message, e.origin]),
      );
      expectObservable(out).toBe('e|', {
        e: [
          true,
          "step 'v': a failed (RangeError: a is down), b failed (TypeError: route 'b': its answer holds no list of predictions (got the string \"nothing\"))",
          'v',
        ],
      });
      const zero = { a: fixed('a', [1]), b: one('b', () => cold('#', undefined, new RangeError('b is down'))) };
      expectObservable(source.pipe(votingEnsemble({ name: 'v', routes: zero, weights: { b: 1 } }), bodies())).toBe('e|', {
        e: { error: "ModelRunnerError: step 'v': b failed (RangeError: b is down); the routes that answered all weigh 0" },
      });
    });
  });

  it('paths: the ensemble name, <prefix>/infer and no path vote; a route alone by its name; the bare prefix lists; bad requests named', () => {
    scheduler.run(({ hot, expectObservable }) => {
      const routes = { a: fixed('a', [1]), b: fixed('b', [2]), c: fixed('c', [2]) };
      const source = hot('abcdefghi|', {
        a: req('a', '/v2/models/ens/infer', { inputs: [[0]] }),
        b: req('b', '/v2/models/predict', { inputs: [[0]] }),
        c: req('c', '/v2/models/a/infer', { inputs: [[0]] }),
        d: req('d', '/v2/models', {}),
        e: req('e', '/v2/models/zz/infer', { inputs: [[0]] }),
        f: req('f', '/v2/models/ens/infer', { inputs: 3 }),
        g: req('g', '/v2/models/ens/explain', { inputs: [[0]] }),
        h: req('h', undefined, { inputs: [[0]], model: 'b' }),
        i: req('i', '/v2/models/ens/ready', {}),
      });
      const out = source.pipe(
        votingEnsemble({ name: 'ens', routes, weights: { a: 2, b: 1, c: 1 } }),
        map((e) =>
          e.error
            ? `${e.error.name}: ${e.error.message}`
            : { ...(e.body as object), ...('timestamp' in (e.body as object) ? { timestamp: 'T' } : {}) },
        ),
      );
      expectObservable(out).toBe('abcdefghi|', {
        a: { id: 'a', model_name: 'ens', outputs: [1] },
        b: { id: 'b', model_name: 'ens', outputs: [1] },
        c: { id: 'c', model_name: 'a', outputs: [1], timestamp: 'T' },
        d: { models: ['a', 'b', 'c', 'ens'], weights: { a: 0.5, b: 0.25, c: 0.25 } },
        e: "RouteNotFoundError: router 'ens': no route for key 'zz'; available routes: 'a', 'b', 'c', 'ens'",
        f: "TypeError: router 'ens': a V2 'infer' request to 'ens' needs 'inputs' as a list in its body; got inputs a number",
        g: "TypeError: voting ensemble 'ens' answers infer, predict, metadata and ready; 'explain' needs one of its routes: /v2/models/<route>/explain (routes: 'a', 'b', 'c')",
        h: { id: 'h', model_name: 'b', outputs: [2], timestamp: 'T' },
        i: { name: 'ens', ready: true },
      });
    });
  });

  it("uneven row counts fail the event naming each route's count; errored events pass; early unsubscribe", () => {
    const failed = toEvent({}, { id: 'f', error: new Error('earlier') });
    scheduler.run(({ cold, hot, expectObservable, expectSubscriptions }) => {
      const uneven = { a: fixed('a', [1, 2]), b: fixed('b', [1]) };
      expectObservable(hot('e|', { e: req('e') }).pipe(votingEnsemble({ name: 'v', routes: uneven }), bodies())).toBe('e|', {
        e: { error: "TypeError: voting ensemble 'v': the routes predicted different numbers of rows ('a' 2, 'b' 1)" },
      });
      expectObservable(
        hot('f|', { f: failed }).pipe(
          votingEnsemble({ routes: uneven }),
          map((e) => e === failed),
        ),
      ).toBe('f|', { f: true });
      const slow = { a: one('a', () => cold('-----r|', { r: [1] })) };
      const source = hot('e---', { e: req('e') });
      expectObservable(source.pipe(votingEnsemble({ routes: slow })), '^-!').toBe('---');
      expectSubscriptions(source.subscriptions).toBe('^-!');
    });
  });

  it('validates its configuration', () => {
    const r = step((b: unknown) => b);
    expect(() => votingEnsemble({ routes: {} })).toThrow(/votingEnsemble\.routes: expected at least one route/);
    expect(() => votingEnsemble({ routes: { a: r }, weights: { z: 1 } })).toThrow(
      /votingEnsemble\.weights\.z: expected the weight of a route \('a'\), got no route 'z'/,
    );
    expect(() => votingEnsemble({ routes: { a: r }, weights: { a: -1 } })).toThrow(
      /votingEnsemble\.weights\.a: expected a finite number ≥ 0, got -1/,
    );
    expect(() => votingEnsemble({ routes: { a: r }, weights: { a: 0 } })).toThrow(
      /votingEnsemble\.weights: expected at least one weight above 0/,
    );
    expect(() => votingEnsemble({ routes: { a: r }, voteType: 'majority' as never })).toThrow(/votingEnsemble\.voteType/);
    expect(() => votingEnsemble({ name: 'a', routes: { a: r } })).toThrow(
      /votingEnsemble\.name: expected a name that is not one of its routes/,
    );
    expect(() => votingEnsemble({ routes: { a: r }, weights: { a: Number.NaN } })).toThrow(ConfigError);
  });
});
