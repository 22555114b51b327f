import { TestScheduler } from 'rxjs/testing';
import { from, lastValueFrom, map, Subject, Subscriber, toArray } from 'rxjs';
import { beforeEach, describe, expect, it, vi } from 'vitest';
import { ConfigError, QueueFullError, onError, step, toEvent, withBody, type ServingEvent } from '../index.js';
import { bodies } from '../testing/index.js';
import { collectUnhandled } from '../../test/support/unhandled.js';

describe('step', () => {
  let scheduler: TestScheduler;
  beforeEach(() => {
    scheduler = new TestScheduler((actual, expected) => expect(actual).toEqual(expected));
  });

  it('maps bodies with inputPath/resultPath (MLRun rules) into new events', () => {
    const input = toEvent({ req: { text: ' Hi ' } }, { id: 'a' });
    scheduler.run(({ hot, expectObservable }) => {
      const out = hot('a|', { a: input }).pipe(
        step((t: string) => t.trim(), { inputPath: 'req.text', resultPath: 'clean' }),
        step((b: { clean: string }) => b.clean.length),
        bodies(),
      );
      expectObservable(out).toBe('a|', { a: 2 });
    });
    expect(input.body).toEqual({ req: { text: ' Hi ' } });
  });

  it('waits for async functions, keeping order by default; emits as done with ordered: false', () => {
    scheduler.run(({ cold, hot, expectObservable }) => {
      const delays: Record<number, string> = { 1: '---x|', 2: '-x|' };
      const fn = (n: number) => cold(delays[n], { x: n * 10 });
      const source = hot('ab|', { a: toEvent(1), b: toEvent(2) });
      expectObservable(source.pipe(step(fn), bodies())).toBe('---(ab|)', { a: 10, b: 20 });
      expectObservable(source.pipe(step(fn, { ordered: false }), bodies())).toBe('--b(a|)', { a: 10, b: 20 });
    });
  });

  it('a throw fails that event only (error kept as thrown, origin = step name); errored events pass', () => {
    const boom = new RangeError('too big');
    const earlier = toEvent(0, { error: new Error('earlier'), origin: 'x' });
    scheduler.run(({ hot, expectObservable }) => {
      const out = hot('abc|', { a: toEvent(1), b: toEvent(99), c: earlier }).pipe(
        step(
          (n: number) => {
            if (n > 10) throw boom;
            return n + 1;
          },
          { name: 'inc' },
        ),
        map((e) => (e.error ? [e.error, e.origin] : e.body)),
      );
      expectObservable(out).toBe('abc|', { a: 2, b: [boom, 'inc'], c: [earlier.error, 'x'] });
    });
  });

  it('fails an event whose inputPath is missing, naming the path', () => {
    scheduler.run(({ hot, expectObservable }) => {
      const out = hot('a|', { a: toEvent({}, { id: 'e1' }) }).pipe(
        step((x: unknown) => x, { name: 's', inputPath: 'a.b' }),
        bodies(),
      );
      expectObservable(out).toBe('a|', { a: { error: "TypeError: step 's': inputPath 'a.b' is not in the body of event 'e1'" } });
    });
  });

  it('operator checklist: source error, empty, never, early unsubscribe aborts the running call', () => {
    scheduler.run(({ hot, cold, expectObservable, expectSubscriptions }) => {
      expectObservable(
        hot('a#', { a: toEvent(1) }).pipe(
          step((n: number) => n),
          bodies(),
        ),
      ).toBe('a#', { a: 1 });
      expectObservable(cold<ServingEvent>('|').pipe(step((n: number) => n))).toBe('|');
      expectObservable(cold<ServingEvent>('-').pipe(step((n: number) => n))).toBe('-');
      const source = hot('-a--', { a: toEvent(1) });
      expectObservable(source.pipe(step(() => cold('-----x|'))), '^--!').toBe('----');
      expectSubscriptions(source.subscriptions).toBe('^--!');
    });
    let signal: AbortSignal | undefined;
    const subject = new Subject<ServingEvent>();
    const sub = subject.pipe(step((_b, ctx) => new Promise(() => void (signal = ctx.signal)))).subscribe();
    subject.next(toEvent(1));
    sub.unsubscribe();
    expect(signal?.aborted).toBe(true);
    expect((signal?.reason as Error | undefined)?.name).toBe('AbortError');
  });

  it('is bounded: past maxInFlight + maxQueue events leave with QueueFullError', async () => {
    const out = await lastValueFrom(
      from(Array.from({ length: 50 }, (_, i) => toEvent(i))).pipe(
        step((n: number) => Promise.resolve(n), { maxInFlight: 2, maxQueue: 3 }),
        toArray(),
      ),
    );
    expect(out.filter((e) => e.error instanceof QueueFullError)).toHaveLength(45);
    expect(out.filter((e) => !e.error).map((e) => e.body)).toEqual([0, 1, 2, 3, 4]);
  });

  it('validates its arguments', () => {
    expect(() => step('x' as never)).toThrow(/step\.fn: expected a function/);
    expect(() => step((x: unknown) => x, { resultPath: '' })).toThrow(ConfigError);
    expect(() => step((x: unknown) => x, { inputpath: 'a' } as never)).toThrow(/step\.options\.inputpath: unknown field/);
  });

  it('a downstream that throws from next loses that event only: the events behind it still start and leave, the throw is reported', async () => {
    // A bare Subscriber (as a flow's links are) lets its throw reach the step; before, the throw
    // left the step's drain with the next event still waiting (maxInFlight 1), and nothing woke it.
    await collectUnhandled(async (reported) => {
      const source = new Subject<ServingEvent>();
      const seen: unknown[] = [];
      let completed = false;
      const boom = new Error('downstream broke');
      const sink = new Subscriber<ServingEvent>({
        next: (e: ServingEvent) => {
          seen.push(e.body);
          if (e.body === 10) throw boom;
        },
        error: (error: unknown) => void reported.push(error),
        complete: () => void (completed = true),
      });
      source.pipe(step((n: number) => Promise.resolve(n * 10), { maxInFlight: 1 })).subscribe(sink);
      source.next(toEvent(1));
      source.next(toEvent(2));
      source.next(toEvent(3));
      source.complete();
      await vi.waitFor(() => expect(completed).toBe(true), { timeout: 2_000 });
      expect(seen).toEqual([10, 20, 30]);
      expect(reported).toEqual([boom]);
    });
  });
});

describe('onError', () => {
  let scheduler: TestScheduler;
  beforeEach(() => {
    scheduler = new TestScheduler((actual, expected) => expect(actual).toEqual(expected));
  });

  it('recovers errored events (a body, or a whole event); others pass untouched', () => {
    const ok = toEvent('fine', { id: 'ok' });
    scheduler.run(({ hot, expectObservable }) => {
      const out = hot('abc|', {
        a: toEvent('x', { id: 'a', error: new Error('bad'), origin: 'model_runner' }),
        b: ok,
        c: toEvent('y', { id: 'c', error: new Error('worse') }),
      }).pipe(
        onError((e) => (e.id === 'a' ? { recovered: e.error.message, from: e.origin } : withBody(e, 'replaced'))),
        map((e) => [e.id, e.body, e.error?.message ?? null]),
      );
      expectObservable(out).toBe('abc|', {
        a: ['a', { recovered: 'bad', from: 'model_runner' }, null],
        b: ['ok', 'fine', null],
        c: ['c', 'replaced', 'worse'], // returning the event (still errored) keeps it errored
      });
    });
  });

  it('a throwing handler leaves the event errored with the new error; async handlers are awaited', async () => {
    const out = await lastValueFrom(
      from([toEvent(1, { error: new Error('first') }), toEvent(2, { error: new Error('second') })]).pipe(
        onError(
          // eslint-disable-next-line @typescript-eslint/require-await -- the case under test: an async handler that throws
          async (e) => {
            if (e.body === 1) throw new TypeError('handler failed');
            return 'ok';
          },
          { name: 'handler' },
        ),
        toArray(),
      ),
    );
    expect(out.map((e) => [e.body, e.error?.message, e.origin])).toEqual([
      [1, 'handler failed', 'handler'],
      ['ok', undefined, undefined],
    ]);
  });

  it('operator checklist: source error, empty, never', () => {
    scheduler.run(({ hot, cold, expectObservable }) => {
      expectObservable(
        hot('a#', { a: toEvent(1, { error: new Error('e') }) }).pipe(
          onError(() => 2),
          bodies(),
        ),
      ).toBe('a#', { a: 2 });
      expectObservable(cold<ServingEvent>('|').pipe(onError(() => 1))).toBe('|');
      expectObservable(cold<ServingEvent>('-').pipe(onError(() => 1))).toBe('-');
    });
    expect(() => onError(null as never)).toThrow(/onError\.handler: expected a function/);
  });
});
