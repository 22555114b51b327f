// requests.filter's operator on its own (marbles): what it passes, what it hands to skip, and that
// every event leaves exactly once — emitted or skipped, never both, never neither.
import { map } from 'rxjs';
import { TestScheduler } from 'rxjs/testing';
import { beforeEach, describe, expect, it } from 'vitest';
import { toEvent, type ServingEvent } from '../event.js';
import { filterOperator } from './filter.js';

const odd = (e: ServingEvent) => (e.body as number) % 2 === 1;
const ev = (n: number) => toEvent(n, { id: `m${n}` });
const values = { a: ev(1), b: ev(2), c: ev(3), d: ev(4) };

describe('filterOperator (requests.filter)', () => {
  let scheduler: TestScheduler;
  let skipped: string[];
  const skip = (e: ServingEvent) => skipped.push(e.id);
  beforeEach(() => {
    scheduler = new TestScheduler((actual, expected) => expect(actual).toEqual(expected));
    skipped = [];
  });

  it('passes what the predicate accepts, hands the rest to skip, in arrival order', () => {
    scheduler.run(({ hot, expectObservable }) => {
      expectObservable(hot('abcd|', values).pipe(filterOperator(odd, skip))).toBe('a-c-|', values);
    });
    expect(skipped).toEqual(['m2', 'm4']);
  });

  it('errored events pass without the predicate being asked', () => {
    const bad = toEvent('{oops', { id: 'bad', error: new TypeError('not JSON'), origin: 'redisStream' });
    let asked = 0;
    scheduler.run(({ hot, expectObservable }) => {
      const out = hot('xa|', { x: bad, a: values.a }).pipe(filterOperator((e) => (asked++, odd(e)), skip));
      expectObservable(out).toBe('xa|', { x: bad, a: values.a });
    });
    expect(asked).toBe(1);
    expect(skipped).toEqual([]);
  });

  it('a predicate that throws fails that event only (origin redisStream.filter); the next is asked as usual', () => {
    const boom = new RangeError('no');
    const predicate = (e: ServingEvent) => {
      if (e.body === 2) throw boom;
      return true;
    };
    scheduler.run(({ hot, expectObservable }) => {
      const out = hot('abc|', values).pipe(
        filterOperator(predicate, skip),
        map((e) => (e.error ? [e.id, e.error, e.origin] : e.id)),
      );
      expectObservable(out).toBe('abc|', { a: 'm1', b: ['m2', boom, 'redisStream.filter'], c: 'm3' });
    });
    expect(skipped).toEqual([]);
  });

  it('a thrown non-Error becomes an Error carrying it as cause', () => {
    scheduler.run(({ hot, expectObservable }) => {
      const out = hot('a|', values).pipe(
        filterOperator(() => {
          // eslint-disable-next-line @typescript-eslint/only-throw-error -- the case under test: a thrown non-Error
          throw 'nope';
        }, skip),
        map((e) => [e.error?.message, (e.error as Error & { cause?: unknown }).cause]),
      );
      expectObservable(out).toBe('a|', { a: ['nope', 'nope'] });
    });
  });

  it('passes a source error on; empty and never sources emit nothing and skip nothing', () => {
    scheduler.run(({ cold, hot, expectObservable }) => {
      expectObservable(hot('ab#', values).pipe(filterOperator(odd, skip))).toBe('a-#', values);
      expectObservable(cold<ServingEvent>('|').pipe(filterOperator(odd, skip))).toBe('|');
      expectObservable(cold<ServingEvent>('-').pipe(filterOperator(odd, skip))).toBe('-');
    });
    expect(skipped).toEqual(['m2']);
  });

  it('unsubscribing early unsubscribes from the source; later events are neither passed nor skipped', () => {
    scheduler.run(({ hot, expectObservable, expectSubscriptions }) => {
      const source = hot('ab-cd|', values);
      expectObservable(source.pipe(filterOperator(odd, skip)), '^--!').toBe('a--', values);
      expectSubscriptions(source.subscriptions).toBe('^--!');
    });
    expect(skipped).toEqual(['m2']);
  });
});
