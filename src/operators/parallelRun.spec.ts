import { TestScheduler } from 'rxjs/testing';
import { filter, map, type OperatorFunction } from 'rxjs';
import { beforeEach, describe, expect, it } from 'vitest';
import { ConfigError, ModelRunnerError, modelRunner, parallelRun, step, toEvent, withBody, type ServingEvent } from '../index.js';
import { bodies, testExecutor, type TestModel } from '../testing/index.js';

const one = (name: string, model: TestModel): OperatorFunction<ServingEvent, ServingEvent> =>
  modelRunner({
    name,
    models: [{ endpointName: name, modelClass: 'Model', executionMechanism: 'asyncio' }],
    executor: testExecutor({ [name]: model }),
  });
const ev = (id: string, body: unknown = { x: 8 }) => toEvent(body, { id });

describe('parallelRun', () => {
  let scheduler: TestScheduler;
  beforeEach(() => {
    scheduler = new TestScheduler((actual, expected) => expect(actual).toEqual(expected));
  });

  it("runs every route at once and merges their bodies in route order, whatever order they answer in (MLRun's { x: 8 } test)", () => {
    scheduler.run(({ cold, hot, expectObservable }) => {
      const routes = {
        a: one('a', () => cold('---r|', { r: { a: 1, shared: 'a' } })),
        b: one('b', () => cold('-r|', { r: { b: 2, shared: 'b' } })),
        c: step((body: { x: number }) => ({ c: 7, mul: body.x * 2 })),
      };
      const source = hot('e|', { e: ev('e') });
      // the event leaves when its slowest route answered (frame 3); a later route's field wins
      expectObservable(source.pipe(parallelRun({ routes }), bodies())).toBe('---(e|)', { e: { a: 1, shared: 'b', b: 2, c: 7, mul: 16 } });
      expectObservable(source.pipe(parallelRun({ routes, extendEvent: true }), bodies())).toBe('---(e|)', {
        e: { x: 8, a: 1, shared: 'b', b: 2, c: 7, mul: 16 },
      });
    });
  });

  it("keeps every route's model figures in metadata.models", () => {
    scheduler.run(({ hot, expectObservable }) => {
      const routes = { a: one('a', () => ({ a: 1 })), b: one('b', () => ({ b: 2 })) };
      const out = hot('e|', { e: ev('e') }).pipe(
        parallelRun({ routes }),
        map((e) => Object.keys(e.metadata.models as object).sort()),
      );
      expectObservable(out).toBe('e|', { e: ['a', 'b'] });
    });
  });

  it('fails the event with ModelRunnerError naming the route that failed or answered no object; the others run, nothing is dropped', () => {
    scheduler.run(({ cold, hot, expectObservable }) => {
      const routes = {
        ok: one('ok', () => ({ ok: true })),
        bad: one('bad', () => cold('-#', undefined, new RangeError('boom'))),
        text: step(() => 'just text'),
      };
      const out = hot('e|', { e: ev('e') }).pipe(
        parallelRun({ name: 'fan', routes }),
        map((e) => [e.error instanceof ModelRunnerError, (e.error as ModelRunnerError).modelsErrors, e.error?.message, e.origin, e.body]),
      );
      expectObservable(out).toBe('-(e|)', {
        e: [
          true,
          { ok: null, bad: 'RangeError: boom', text: "TypeError: route 'text' answered a string; parallelRun merges objects" },
          "step 'fan': bad failed (RangeError: boom), text failed (TypeError: route 'text' answered a string; parallelRun merges objects)",
          'fan',
          { x: 8 },
        ],
      });
    });
  });

  it('a route that builds its answers afresh (no ticket) is matched by event id', () => {
    scheduler.run(({ hot, expectObservable }) => {
      const fresh = map((e: ServingEvent) => toEvent({ fresh: e.id }, { id: e.id }));
      const out = hot('ab|', { a: ev('a'), b: ev('b') }).pipe(
        parallelRun({ routes: { fresh, kept: step(() => ({ kept: true })) } }),
        bodies(),
      );
      expectObservable(out).toBe('ab|', { a: { fresh: 'a', kept: true }, b: { fresh: 'b', kept: true } });
    });
  });

  it('answers two events with the same id each with its own answers', () => {
    scheduler.run(({ cold, hot, expectObservable }) => {
      // an unordered route answers the second event first
      const a = modelRunner({
        name: 'a',
        ordered: false,
        models: [{ endpointName: 'a', modelClass: 'Model', executionMechanism: 'asyncio' }],
        executor: testExecutor({ a: (b: { x: number }) => cold(b.x === 1 ? '---r|' : '-r|', { r: { a: b.x } }) }),
      });
      const routes = { a, b: step((b: { x: number }) => ({ b: b.x })) };
      const out = hot('ab|', { a: ev('same', { x: 1 }), b: ev('same', { x: 2 }) }).pipe(parallelRun({ routes }), bodies());
      expectObservable(out).toBe('--b(a|)', { a: { a: 1, b: 1 }, b: { a: 2, b: 2 } });
    });
  });

  it('sends an event to its routes as it came, and a copy only while another event with its id waits; each same-id event gets its own answers', () => {
    const seen: ServingEvent[] = [];
    const inputs = [1, 2, 3, 4].map((x) => ev('same', { x }));
    scheduler.run(({ cold, hot, expectObservable }) => {
      // 'slow' answers x = 1 after 5 frames and the others after 1: two, then three, events with id 'same' wait at once.
      const slow = modelRunner({
        name: 'slow',
        ordered: false,
        models: [{ endpointName: 'slow', modelClass: 'Model', executionMechanism: 'asyncio' }],
        executor: testExecutor({ slow: (b: { x: number }) => cold(b.x === 1 ? '-----r|' : '-r|', { r: { slow: b.x } }) }),
      });
      const watch = map((e: ServingEvent) => (seen.push(e), withBody(e, { seen: (e.body as { x: number }).x })));
      const routes = { slow, watch };
      const source = hot('abc-----d|', { a: inputs[0], b: inputs[1], c: inputs[2], d: inputs[3] });
      expectObservable(source.pipe(parallelRun({ routes }), bodies())).toBe('--bc-a---(d|)', {
        a: { slow: 1, seen: 1 },
        b: { slow: 2, seen: 2 },
        c: { slow: 3, seen: 3 },
        d: { slow: 4, seen: 4 },
      });
    });
    // a and d were alone with their id: the routes got those very events; b and c waited beside a: copies.
    expect(seen.map((e) => e.body)).toEqual([{ x: 1 }, { x: 2 }, { x: 3 }, { x: 4 }]);
    expect(seen.map((e, i) => e === inputs[i])).toEqual([true, false, false, true]);
  });

  it('a route that never answers fails the event when the routes complete; errored events pass; source errors; empty; early unsubscribe', () => {
    const failed = toEvent({}, { id: 'f', error: new Error('earlier') });
    scheduler.run(({ cold, hot, expectObservable, expectSubscriptions }) => {
      const silent = { a: step(() => ({ a: 1 })), silent: filter<ServingEvent>(() => false) };
      expectObservable(hot('e-|', { e: ev('e') }).pipe(parallelRun({ name: 'p', routes: silent }), bodies())).toBe('--(e|)', {
        e: {
          error: "ModelRunnerError: step 'p': silent failed (RxServeError: step 'p': route 'silent' completed without answering event 'e')",
        },
      });
      const routes = { a: one('a', () => cold('----r|', { r: { a: 1 } })) };
      expectObservable(
        hot('f|', { f: failed }).pipe(
          parallelRun({ routes }),
          map((e) => e === failed),
        ),
      ).toBe('f|', { f: true });
      expectObservable(hot<ServingEvent>('-#').pipe(parallelRun({ routes }))).toBe('-#');
      expectObservable(cold<ServingEvent>('|').pipe(parallelRun({ routes }))).toBe('|');
      const source = hot('e---', { e: ev('e') });
      expectObservable(source.pipe(parallelRun({ routes })), '^-!').toBe('---');
      expectSubscriptions(source.subscriptions).toBe('^-!');
    });
  });

  it('validates its configuration', () => {
    expect(() => parallelRun({ routes: {} })).toThrow(/parallelRun\.routes: expected at least one route/);
    expect(() => parallelRun({ routes: { a: step((b: unknown) => b) }, extendEvent: 'yes' as never })).toThrow(/parallelRun\.extendEvent/);
    expect(() => parallelRun({ routes: { a: 1 as never } })).toThrow(ConfigError);
  });
});
