import { TestScheduler } from 'rxjs/testing';
import { map, Observable, pipe } from 'rxjs';
import { beforeEach, describe, expect, it } from 'vitest';
import { ConfigError, RouteNotFoundError, modelRunner, router, step, toEvent, type ServingEvent } from '../index.js';
import { bodies, testExecutor } from '../testing/index.js';

const at = (id: string, route: string | undefined, body: unknown = {}) =>
  toEvent(body, { id, ...(route ? { path: `/v2/models/${route}/infer` } : {}) });
const keyOf = (e: ServingEvent) => e.path?.split('/')[3];

describe('router', () => {
  let scheduler: TestScheduler;
  beforeEach(() => {
    scheduler = new TestScheduler((actual, expected) => expect(actual).toEqual(expected));
  });

  it('sends each event down the route of its key (routes marble-tested with testExecutor)', () => {
    scheduler.run(({ cold, hot, expectObservable }) => {
      const m1 = testExecutor({ m1: () => cold('-a|', { a: 'from m1' }) });
      const m2 = testExecutor({ m2: () => cold('---b|', { b: 'from m2' }) });
      const source = hot('ab-c|', { a: at('a', 'm2'), b: at('b', 'm1'), c: at('c', 'm1') });
      const out = source.pipe(
        router({
          key: keyOf,
          routes: {
            m1: modelRunner({ models: [{ endpointName: 'm1', modelClass: 'Model', executionMechanism: 'asyncio' }], executor: m1 }),
            m2: modelRunner({ models: [{ endpointName: 'm2', modelClass: 'Model', executionMechanism: 'asyncio' }], executor: m2 }),
          },
        }),
        map((e) => `${e.id}:${e.body as string}`),
      );
      // order is kept within a route, not across routes
      expectObservable(out).toBe('--ba(c|)', { a: 'a:from m2', b: 'b:from m1', c: 'c:from m1' });
    });
  });

  it('fails an event with no route (and no default) with RouteNotFoundError listing the routes', () => {
    scheduler.run(({ hot, expectObservable }) => {
      const out = hot('ab|', { a: at('a', 'nope'), b: at('b', undefined) }).pipe(
        router({ name: 'models', key: keyOf, routes: { m1: step((b: unknown) => b), m2: step((b: unknown) => b) } }),
        map((e) => [e.error instanceof RouteNotFoundError, e.error?.message, e.origin]),
      );
      expectObservable(out).toBe('ab|', {
        a: [true, "router 'models': no route for key 'nope'; available routes: 'm1', 'm2'", 'models'],
        b: [true, "router 'models': no route for key undefined; available routes: 'm1', 'm2'", 'models'],
      });
    });
  });

  it('uses defaultRoute for unknown and missing keys', () => {
    scheduler.run(({ hot, expectObservable }) => {
      const out = hot('abc|', { a: at('a', 'nope'), b: at('b', undefined), c: at('c', 'special') }).pipe(
        router({
          key: keyOf,
          routes: { general: step(() => 'general'), special: step(() => 'special') },
          defaultRoute: 'general',
        }),
        bodies(),
      );
      expectObservable(out).toBe('abc|', { a: 'general', b: 'general', c: 'special' });
    });
  });

  it('fails the event when the key function throws, and passes errored events untouched', () => {
    const failed = toEvent({}, { id: 'f', error: new Error('earlier') });
    scheduler.run(({ hot, expectObservable }) => {
      const out = hot('ab|', { a: at('a', 'm1'), b: failed }).pipe(
        router({
          key: (e) => {
            if (e.id === 'a') throw new TypeError('no key here');
            return 'm1';
          },
          routes: { m1: step(() => 'routed') },
        }),
        map((e) => (e === failed ? 'untouched' : `${e.error?.name}: ${e.error?.message}`)),
      );
      expectObservable(out).toBe('ab|', { a: 'TypeError: no key here', b: 'untouched' });
    });
  });

  it('releases a route idle for idleMs and resubscribes its pipeline on the next event', () => {
    let subscriptions = 0;
    const counting = (source: Observable<ServingEvent>) =>
      new Observable<ServingEvent>((subscriber) => {
        subscriptions++;
        return source.subscribe(subscriber);
      });
    scheduler.run(({ hot, expectObservable }) => {
      const out = hot('a-b------c|', { a: at('a', 'r'), b: at('b', 'r'), c: at('c', 'r') }).pipe(
        router({ key: keyOf, routes: { r: pipe(counting) }, idleMs: 3 }),
        map((e) => e.id),
      );
      expectObservable(out).toBe('a-b------c|');
    });
    // a and b share one subscription (b arrives before 3 idle frames); c comes after release
    expect(subscriptions).toBe(2);
  });

  it('forwards source errors, completes on empty, and unsubscribes routes early', () => {
    scheduler.run(({ hot, cold, expectObservable, expectSubscriptions }) => {
      const routes = { r: step(() => 'x') };
      expectObservable(hot('a#', { a: at('a', 'r') }).pipe(router({ key: keyOf, routes }), bodies())).toBe('a#', { a: 'x' });
      expectObservable(cold<ServingEvent>('|').pipe(router({ key: keyOf, routes }))).toBe('|');
      const source = hot('-a-a-a', { a: at('a', 'r') });
      expectObservable(source.pipe(router({ key: keyOf, routes }), bodies()), '^--!').toBe('-x--', { x: 'x' });
      expectSubscriptions(source.subscriptions).toBe('^--!');
    });
  });

  it('validates its configuration', () => {
    expect(() => router({ key: keyOf, routes: {} })).toThrow(/router\.routes: expected at least one route/);
    expect(() => router({ key: keyOf, routes: { a: step((b: unknown) => b) }, defaultRoute: 'b' })).toThrow(
      /router\.defaultRoute: expected one of the routes \(a\), got 'b'/,
    );
    expect(() => router({ key: 'path' as never, routes: { a: step((b: unknown) => b) } })).toThrow(ConfigError);
    expect(() => router({ key: keyOf, routes: { a: 'nope' as never } })).toThrow(/router\.routes\.a: expected an operator/);
  });
});
