// A linear flow runs in linear.ts (counts, no record per input); every other flow in run.ts. Each
// case here runs the same linear plan through both runners and expects the same marbles, answers,
// per-step counts, errors and accounting, so the fast path cannot drift from the general one.
import { TestScheduler } from 'rxjs/testing';
import { delay, filter, map, mergeMap, of, Subject, tap, type OperatorFunction } from 'rxjs';
import { beforeEach, describe, expect, it } from 'vitest';
import { choice, flow, QueueFullError, toEvent, withBody, withError, type ServingEvent } from '../index.js';
import { bodies } from '../testing/index.js';
import type { Flow } from './flow.js';
import { runLinear } from './linear.js';
import { runFlow } from './run.js';
import { FlowRuntime, flowRuntimeOf } from './runtime.js';

type Op = OperatorFunction<ServingEvent, ServingEvent>;
type Runner = typeof runFlow;
const ev = (id: string, body: unknown = {}) => toEvent(body, { id });
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- a test's lambda reads the body its events carry
const mapBody = (f: (body: any) => unknown): Op => map((e: ServingEvent) => (e.error ? e : withBody(e, f(e.body))));
/** Appends `name` to the body's text, after the number of frames the body asks for (`{ ms }`): answers can overtake one another. */
const after =
  (name: string): Op =>
  (source) =>
    source.pipe(
      mergeMap((e: ServingEvent) =>
        of(e.error ? e : withBody(e, { ...(e.body as object), text: `${textOf(e.body)}${name}` })).pipe(delay(msOf(e))),
      ),
    );
/** The text of a test body: a string, or `{ text, ms }`. */
const textOf = (body: unknown): string => String((body as { text?: string } | undefined)?.text ?? body);
const msOf = (e: ServingEvent) => (e.body as { ms?: number }).ms ?? 0;
/** Fails the events whose body is `bad` (as the step's own error). */
const failsOn = (bad: string, name: string): Op =>
  map((e: ServingEvent) => (e.body === bad ? withError(e, new RangeError(`${name} failed`), name) : e));

/** The flow's plan run by `runner`, with an accounting of its own. */
function runWith(runner: Runner, f: Flow, maxInFlight = 10_000): { op: Op; runtime: FlowRuntime } {
  const plan = flowRuntimeOf(f.build())!.plan;
  expect(plan.linear).toBe(true);
  const runtime = new FlowRuntime(plan);
  return { op: runner(plan, runtime, maxInFlight), runtime };
}

const counts = (runtime: FlowRuntime) =>
  runtime
    .stats()
    .map((s) => `${s.step}:${s.inFlight}/${s.errors}`)
    .join(' ');

describe('which flows are linear (run by linear.ts)', () => {
  const noop = () => mapBody((b) => b);
  const linear = (declare: (f: Flow) => void) => {
    const f = flow();
    declare(f);
    return flowRuntimeOf(f.build())!.plan.linear;
  };

  it('one chain from the only entry to the responder, with or without handlers that have no before', () => {
    expect(linear((f) => f.to('a', noop()).respond())).toBe(true);
    expect(linear((f) => f.to('a', noop()).to('b', noop()).to('c', noop()).respond())).toBe(true);
    expect(linear((f) => f.to('a', noop()).errorHandler('h', noop()).to('b', noop()).respond())).toBe(true);
    expect(linear((f) => f.errorHandler('all', noop()).to('a', noop()).to('b', noop()).respond())).toBe(true);
  });

  it('not: no responder, a responder before the end, a fan-out, two entries, a choice, a bound, a cycle, a handler with before', () => {
    expect(linear((f) => f.to('a', noop()).to('b', noop()))).toBe(false);
    expect(linear((f) => f.to('a', noop()).respond().to('b', noop()))).toBe(false);
    expect(
      linear((f) => {
        f.to('a', noop()).to('b', noop()).respond();
        f.add('side', noop(), { after: 'a' });
      }),
    ).toBe(false);
    expect(
      linear((f) => {
        f.to('a', noop());
        f.add('b', noop(), { after: [] });
        f.add('c', noop(), { after: ['a', 'b'] }).respond();
      }),
    ).toBe(false);
    expect(
      linear((f) =>
        f
          .to(
            'a',
            choice(() => 'b'),
          )
          .to('b', noop())
          .respond(),
      ),
    ).toBe(false);
    expect(linear((f) => f.to('a', noop(), { maxIterations: 2 }).to('b', noop()).respond())).toBe(false);
    expect(linear((f) => f.to('a', noop(), { maxIterations: 2 }).to('b', noop()).respond().cycleTo('a'))).toBe(false);
    expect(linear((f) => f.to('a', noop()).errorHandler('h', noop(), { before: 'c' }).to('b', noop()).to('c', noop()).respond())).toBe(
      false,
    );
  });
});

describe.each([
  ['run.ts (general)', runFlow],
  ['linear.ts', runLinear],
] as const)('a linear flow run by %s (marble)', (_name, runner) => {
  let scheduler: TestScheduler;
  beforeEach(() => {
    scheduler = new TestScheduler((actual, expected) => expect(actual).toEqual(expected));
  });

  it('answers each input once with the last step’s output, in the order they are ready; counts per step; completes after the last', () => {
    const f = flow();
    f.to('a', after('a'))
      .to('b', after('b'))
      .to(
        'c',
        mapBody((b) => `${textOf(b)}c`),
      )
      .respond();
    const { op, runtime } = runWith(runner, f);
    const seen: string[] = [];
    scheduler.run(({ hot, expectObservable }) => {
      // x: a 0–3, b 3–6; y: a 1–2, b 2–3 — y overtakes x.
      for (const frame of [0.5, 1.5, 2.5, 4, 7])
        scheduler.schedule(() => seen.push(`${frame} ${counts(runtime)} live:${runtime.live}`), frame);
      const out = hot('xy|', { x: ev('1', { text: 'x', ms: 3 }), y: ev('2', { text: 'y', ms: 1 }) }).pipe(op, bodies());
      expectObservable(out).toBe('---y--(x|)', { x: 'xabc', y: 'yabc' });
    });
    expect(seen).toEqual([
      '0.5 a:1/0 b:0/0 c:0/0 live:1',
      '1.5 a:2/0 b:0/0 c:0/0 live:2',
      '2.5 a:1/0 b:1/0 c:0/0 live:2',
      '4 a:0/0 b:1/0 c:0/0 live:1',
      '7 a:0/0 b:0/0 c:0/0 live:0',
    ]);
  });

  it('a step’s error passes the rest untouched as nobody else’s and is the answer, counted as that step’s; the last step’s too', () => {
    const f = flow();
    f.to('a', failsOn('x', 'a'))
      .to(
        'b',
        mapBody((b) => `${b}!`),
      )
      .to('c', failsOn('y!', 'c'))
      .respond();
    const { op, runtime } = runWith(runner, f);
    scheduler.run(({ hot, expectObservable }) => {
      const out = hot('xyz|', { x: ev('1', 'x'), y: ev('2', 'y'), z: ev('3', 'z') }).pipe(
        op,
        map((e) => [e.body, e.error?.message, e.origin]),
      );
      expectObservable(out).toBe('xyz|', { x: ['x', 'a failed', 'a'], y: ['y!', 'c failed', 'c'], z: ['z!', undefined, undefined] });
    });
    expect(counts(runtime)).toBe('a:0/1 b:0/0 c:0/1');
    expect(runtime.live).toBe(0);
  });

  it('a step’s own handler and the flow’s handler answer for the failing step (a fallback), also later than the chain', () => {
    const f = flow();
    f.errorHandler('all', (source) =>
      source.pipe(
        delay(2),
        mapBody(() => 'caught'),
      ),
    );
    f.to('a', failsOn('x', 'a'))
      .to('b', failsOn('y', 'b'))
      .errorHandler(
        'fix-b',
        mapBody(() => 'fixed'),
      )
      .to('c', failsOn('z', 'c'))
      .respond();
    const { op, runtime } = runWith(runner, f);
    const seen: string[] = [];
    scheduler.run(({ hot, expectObservable }) => {
      scheduler.schedule(() => seen.push(counts(runtime)), 1);
      const out = hot('xyzw|', { x: ev('1', 'x'), y: ev('2', 'y'), z: ev('3', 'z'), w: ev('4', 'w') }).pipe(
        op,
        map((e) => [e.body, (e.metadata.error as { step?: string } | undefined)?.step]),
      );
      // x fails in a (0), caught 2 frames later; y fails in b, fixed at once; z fails in c (2), caught at 4.
      expectObservable(out).toBe('-yxw(z|)', { x: ['caught', 'a'], y: ['fixed', 'b'], z: ['caught', 'c'], w: ['w', undefined] });
    });
    expect(seen).toEqual(['a:0/1 b:0/0 c:0/0 fix-b:0/0 all:1/0']);
    expect(counts(runtime)).toBe('a:0/1 b:0/1 c:0/1 fix-b:0/0 all:0/0');
    expect(runtime.live).toBe(0);
  });

  it('an input a step drops is held (never answered, still counted inside; the flow does not complete), as docs/design.md §17 says', async () => {
    const f = flow();
    f.to(
      'a',
      mapBody((b) => b),
    )
      .to(
        'drop',
        filter((e: ServingEvent) => e.body !== 'gone'),
      )
      .to(
        'c',
        mapBody((b) => b),
      )
      .respond();
    const { op, runtime } = runWith(runner, f);
    scheduler.run(({ hot, expectObservable }) => {
      expectObservable(hot('ab|', { a: ev('1', 'gone'), b: ev('2', 'kept') }).pipe(op, bodies())).toBe('-b-', { b: 'kept' });
    });
    expect(runtime.live).toBe(1);
    expect(counts(runtime)).toBe('a:0/0 drop:1/0 c:0/0');
    expect(await runtime.whenIdle(5)).toBe(false);
  });

  it('a step that emits an event twice: one answer, the extra dropped', () => {
    const f = flow();
    f.to(
      'twice',
      mergeMap((e: ServingEvent) => [e, e]),
    )
      .to(
        'b',
        mapBody((b) => `${b}!`),
      )
      .respond();
    const { op, runtime } = runWith(runner, f);
    scheduler.run(({ hot, expectObservable }) => {
      expectObservable(hot('ab|', { a: ev('1', 'a'), b: ev('2', 'b') }).pipe(op, bodies())).toBe('ab|', { a: 'a!', b: 'b!' });
    });
    expect(runtime.live).toBe(0);
  });

  it('answers two inputs that share an id; queues an input pushed from inside an answer; passes an errored input at once', () => {
    const f = flow();
    f.to('slow', after('!'))
      .to(
        'text',
        mapBody((b) => textOf(b)),
      )
      .respond();
    const { op, runtime } = runWith(runner, f);
    const errored = toEvent('e', { id: 'e', error: new Error('earlier') });
    scheduler.run(({ expectObservable }) => {
      const source = new Subject<ServingEvent>();
      const out = source.pipe(
        op,
        tap((e) => {
          if (e.body === 'a!') source.next(ev('n', 'nested'));
        }),
        map((e) => (e.error ? 'errored' : e.body)),
      );
      // 'same' a: 0–2; 'same' b: 1–7; the nested input enters when a's answer leaves (2, no delay).
      expectObservable(out).toBe('e-(an)-b', { e: 'errored', a: 'a!', b: 'b!', n: 'nested!' });
      scheduler.schedule(() => source.next(errored), 0);
      scheduler.schedule(() => source.next(ev('same', { text: 'a', ms: 2 })), 0);
      scheduler.schedule(() => source.next(ev('same', { text: 'b', ms: 6 })), 1);
    });
    expect(runtime.live).toBe(0);
  });

  it('answers past maxInFlight inputs inside at once with QueueFullError', () => {
    const f = flow({ name: 'small' });
    f.to('slow', after(''))
      .to(
        'text',
        mapBody((b) => textOf(b)),
      )
      .respond();
    const { op } = runWith(runner, f, 1);
    scheduler.run(({ hot, expectObservable }) => {
      const out = hot('ab|', { a: ev('1', { text: 'a', ms: 2 }), b: ev('2', { text: 'b', ms: 2 }) }).pipe(
        op,
        map((e) => (e.error instanceof QueueFullError ? 'full' : e.body)),
      );
      expectObservable(out).toBe('-b(a|)', { a: 'a', b: 'full' });
    });
  });

  it('chaos: 3,000 inputs with random delays, failures and handlers — each answered exactly once, nothing left inside', () => {
    let seed = 7;
    const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    const f = flow();
    f.errorHandler('all', (source) => source.pipe(mergeMap((e: ServingEvent) => of(withBody(e, 'caught')).pipe(delay(1)))));
    const chaotic =
      (name: string): Op =>
      (source) =>
        source.pipe(
          mergeMap((e: ServingEvent) => {
            const r = random();
            const out = e.error === undefined && r < 0.1 ? withError(e, new Error(`${name} failed`), name) : e;
            return r < 0.5 ? of(out) : of(out).pipe(delay(Math.floor(r * 10)));
          }),
        );
    f.to('a', chaotic('a'))
      .to('b', chaotic('b'))
      .errorHandler(
        'fix-b',
        mapBody(() => 'fixed'),
      )
      .to('c', chaotic('c'))
      .respond();
    const { op, runtime } = runWith(runner, f);
    const answers = new Map<string, number>();
    let completed = false;
    scheduler.run(() => {
      const source = new Subject<ServingEvent>();
      source.pipe(op).subscribe({ next: (e) => answers.set(e.id, (answers.get(e.id) ?? 0) + 1), complete: () => (completed = true) });
      for (let i = 0; i < 3000; i++) scheduler.schedule(() => source.next(ev(String(i), i)), Math.floor(i / 10));
      scheduler.schedule(() => source.complete(), 300);
    });
    expect(answers.size).toBe(3000);
    expect([...answers.values()].every((n) => n === 1)).toBe(true);
    expect(completed).toBe(true);
    expect(runtime.live).toBe(0);
    expect(runtime.stats().every((s) => s.inFlight === 0)).toBe(true);
    expect(runtime.stats().reduce((sum, s) => sum + s.errors, 0)).toBeGreaterThan(500);
  });
});

describe.each([
  ['run.ts (general)', runFlow],
  ['linear.ts', runLinear],
] as const)('a linear flow run by %s (real timers)', (_name, runner) => {
  it('whenIdle() (what close() waits on) resolves once the last input left, not before; a held input makes it time out', async () => {
    const f = flow();
    f.to('wait', (source) => source.pipe(mergeMap((e: ServingEvent) => of(e).pipe(delay(30)))))
      .to(
        'drop',
        filter((e: ServingEvent) => e.body !== 'gone'),
      )
      .respond();
    const { op, runtime } = runWith(runner, f);
    const source = new Subject<ServingEvent>();
    const answers: unknown[] = [];
    const subscription = source.pipe(op).subscribe((e) => answers.push(e.body));
    source.next(ev('1', 'kept'));
    const idle = runtime.whenIdle(1000).then((settled) => ({ settled, answers: [...answers] }));
    expect(runtime.live).toBe(1);
    expect(await idle).toEqual({ settled: true, answers: ['kept'] });
    source.next(ev('2', 'gone'));
    expect(await runtime.whenIdle(100)).toBe(false);
    expect(runtime.live).toBe(1);
    subscription.unsubscribe();
    expect(runtime.live).toBe(0);
    expect(await runtime.whenIdle(10)).toBe(true);
  });
});
