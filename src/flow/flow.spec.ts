import { TestScheduler } from 'rxjs/testing';
import { bufferCount, delay, map, mergeMap, Observable, Subject, take, tap, type OperatorFunction } from 'rxjs';
import { beforeEach, describe, expect, it } from 'vitest';
import {
  choice,
  choiceByField,
  ConfigError,
  CycleLimitError,
  flow,
  QueueFullError,
  RouteNotFoundError,
  step,
  toEvent,
  withBody,
  type ServingEvent,
} from '../index.js';
import { bodies } from '../testing/index.js';
import { flowRuntimeOf } from './runtime.js';
import { QUEUE_STEP } from '../operators/internal/queueMarker.js';

type Op = OperatorFunction<ServingEvent, ServingEvent>;
const ev = (id: string, body: unknown = {}) => toEvent(body, { id });
/** Maps bodies; errored events pass untouched, as rxserve's steps do. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- a test's lambda reads the body its events carry
const mapBody = (f: (body: any) => unknown): Op => map((e: ServingEvent) => (e.error ? e : withBody(e, f(e.body))));
/** The same after `frames` virtual frames. */
const later =
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- as mapBody (above)
  (frames: number, f: (body: any) => unknown = (b) => b): Op =>
    (source) =>
      source.pipe(delay(frames), mapBody(f));
const fail = (message: string) => ({ error: message });
/** Each step's copies inside now, as `step:count` pairs. */
const insideEach = (runtime: NonNullable<ReturnType<typeof flowRuntimeOf>>) =>
  runtime
    .stats()
    .map((s) => `${s.step}:${s.inFlight}`)
    .join(' ');
/** A step that takes `ms` and fails the event whose body is 'x' ('b failed'), passing the others. */
const failsX =
  (ms: number): Op =>
  (source) =>
    source.pipe(
      delay(ms),
      map((e: ServingEvent) => (e.body === 'x' ? toEvent(e.body, { id: e.id, error: new RangeError('b failed') }) : e)),
    );

describe('flow (marble)', () => {
  let scheduler: TestScheduler;
  beforeEach(() => {
    scheduler = new TestScheduler((actual, expected) => expect(actual).toEqual(expected));
  });

  it('a linear flow answers each input with the responder’s output, then completes', () => {
    scheduler.run(({ hot, expectObservable }) => {
      const f = flow();
      f.to(
        'x',
        later(2, (b) => `${b}x`),
      )
        .to(
          'y',
          mapBody((b) => `${b}y`),
        )
        .respond();
      const out = hot('a-b|', { a: ev('1', 'a'), b: ev('2', 'b') }).pipe(f.build(), bodies());
      expectObservable(out).toBe('--a-(b|)', { a: 'axy', b: 'bxy' });
    });
  });

  it('fans out: a side branch runs on after the response, and the flow completes once every copy left', () => {
    const audited: string[] = [];
    scheduler.run(({ hot, expectObservable }) => {
      const f = flow();
      f.to(
        'in',
        mapBody((b) => b),
      );
      f.add(
        'reply',
        later(1, (b) => `reply:${b}`),
        { after: 'in' },
      ).respond();
      f.add(
        'audit',
        (source) =>
          source.pipe(
            delay(4),
            tap((e) => audited.push(`${e.body as string}@${scheduler.now()}`)),
          ),
        { after: 'in' },
      );
      expectObservable(hot('a|', { a: ev('1', 'a') }).pipe(f.build(), bodies())).toBe('-a--|', { a: 'reply:a' });
    });
    expect(audited).toEqual(['a@4']);
  });

  it('without a responder emits each input at once, as it came, and the work goes on', () => {
    const done: string[] = [];
    const a = ev('1', 'a');
    const b = ev('2', 'b');
    scheduler.run(({ hot, expectObservable }) => {
      const f = flow();
      f.to(
        'work',
        later(3, (x) => done.push(`${x}@${scheduler.now()}`)),
      );
      expectObservable(hot('-a-b|', { a, b }).pipe(f.build())).toBe('-a-b--|', { a, b });
    });
    expect(done).toEqual(['a@4', 'b@6']);
  });

  it('merges as storey does: a step after two steps gets each one’s events (no join); the first to reach the responder answers', () => {
    const joined: string[] = [];
    scheduler.run(({ hot, expectObservable }) => {
      const f = flow();
      f.to(
        'split',
        mapBody((b) => b),
      );
      f.add(
        'left',
        later(1, (b) => `${b}L`),
        { after: 'split' },
      );
      f.add(
        'right',
        later(3, (b) => `${b}R`),
        { after: 'split' },
      );
      f.add(
        'join',
        tap((e: ServingEvent) => joined.push(String(e.body))),
        { after: ['left', 'right'] },
      ).respond();
      expectObservable(hot('a|', { a: ev('1', 'a') }).pipe(f.build(), bodies())).toBe('-a-|', { a: 'aL' });
    });
    expect(joined).toEqual(['aL', 'aR']);
  });

  it('answers an event that never reaches the responder with RouteNotFoundError naming where it ended (never silence, never a hang)', () => {
    scheduler.run(({ hot, expectObservable }) => {
      const f = flow({ name: 'router' });
      f.to(
        'route',
        choice((e) => e.body as string[]),
      );
      f.add(
        'reply',
        mapBody(() => 'ok'),
        { after: 'route' },
      ).respond();
      f.add('log', later(2), { after: 'route' });
      const out = hot('abc|', { a: ev('a', ['reply']), b: ev('b', []), c: ev('c', ['log']) }).pipe(f.build());
      expectObservable(out.pipe(map((e) => [e.body, e.error instanceof RouteNotFoundError ? e.error.message : e.error, e.origin]))).toBe(
        'ab--(c|)',
        {
          a: ['ok', undefined, undefined],
          b: [[], "flow 'router': event 'b' never reached the responder 'reply'; it ended at 'route'", 'router'],
          c: [['log'], "flow 'router': event 'c' never reached the responder 'reply'; it ended at 'log'", 'router'],
        },
      );
    });
  });

  it('choice: names pick next steps, null picks all; an unknown or twice-named step and a throwing select fail the event as the choice’s error', () => {
    scheduler.run(({ hot, expectObservable }) => {
      const f = flow();
      f.to(
        'route',
        choice((e) => {
          if (e.body === 'throw') throw new TypeError('bad pick');
          if (e.body === 'all') return null;
          return e.body === 'twice' ? ['x', 'x'] : (e.body as string);
        }),
      );
      f.add(
        'x',
        mapBody(() => 'went x'),
        { after: 'route' },
      );
      f.add(
        'y',
        mapBody(() => 'went y'),
        { after: 'route' },
      );
      f.add(
        'reply',
        mapBody((b) => b),
        { after: ['x', 'y'] },
      ).respond();
      const out = hot('abcde|', { a: ev('1', 'y'), b: ev('2', 'nope'), c: ev('3', 'throw'), d: ev('4', 'all'), e: ev('5', 'twice') }).pipe(
        f.build(),
        bodies(),
      );
      expectObservable(out).toBe('abcde|', {
        a: 'went y',
        b: fail("RouteNotFoundError: choice 'route': no next step 'nope' for event '2'; its next steps: 'x', 'y'"),
        c: fail('TypeError: bad pick'),
        d: 'went x',
        e: fail("RouteNotFoundError: choice 'route': next step 'x' named twice for event '5'; its next steps: 'x', 'y'"),
      });
    });
  });

  it('choiceByField reads the names from a dot path, and fails events whose field is missing or not names', () => {
    scheduler.run(({ hot, expectObservable }) => {
      const f = flow();
      f.to('route', choiceByField('body.to'));
      f.add(
        'a',
        mapBody(() => 'A'),
        { after: 'route' },
      ).respond();
      const out = hot('abc|', { a: ev('1', { to: 'a' }), b: ev('2', {}), c: ev('3', { to: [] }) }).pipe(f.build(), bodies());
      expectObservable(out).toBe('abc|', {
        a: 'A',
        b: fail(
          "TypeError: choiceByField('body.to'): expected a step name or a non-empty list of step names at 'body.to' of event '2', got nothing",
        ),
        c: fail(
          "TypeError: choiceByField('body.to'): expected a step name or a non-empty list of step names at 'body.to' of event '3', got an empty list",
        ),
      });
    });
  });

  it('an errored event passes untouched through later steps to the responder; side-branch errors never reach the caller', () => {
    const f = flow();
    f.to(
      'a',
      step(
        (b: unknown) => {
          if (b === 'fail') throw new RangeError('a failed');
          return b;
        },
        { name: 'a' },
      ),
    );
    f.add(
      'side',
      step(() => {
        throw new Error('side failed');
      }),
      { after: 'a' },
    );
    f.add(
      'b',
      step((b) => `${b}!`),
      { after: 'a' },
    ).respond();
    const pipeline = f.build();
    scheduler.run(({ hot, expectObservable }) => {
      const out = hot('ab|', { a: ev('1', 'ok'), b: ev('2', 'fail') }).pipe(
        pipeline,
        map((e) => [e.body, e.error?.message, e.origin]),
      );
      expectObservable(out).toBe('ab|', { a: ['ok!', undefined, undefined], b: ['fail', 'a failed', 'a'] });
    });
    const errors = Object.fromEntries(
      flowRuntimeOf(pipeline)!
        .stats()
        .map((s) => [s.step, s.errors]),
    );
    expect(errors).toEqual({ a: 1, side: 1, b: 0 });
  });

  it('a step’s error handler without before: on the responder’s path its output is the response; elsewhere it ends the branch', () => {
    const sideHandled: unknown[] = [];
    scheduler.run(({ hot, expectObservable }) => {
      const f = flow();
      f.to(
        'model',
        step(
          (b: { q: string; fail?: boolean }) => {
            if (b.fail) throw new TypeError('model down');
            return { answer: b.q };
          },
          { name: 'model' },
        ),
      )
        .errorHandler(
          'fallback',
          step(() => ({ answer: 'sorry, try later' })),
        )
        .to(
          'reply',
          mapBody((b) => b),
        )
        .respond();
      f.add(
        'audit',
        step(() => {
          throw new Error('audit store down');
        }),
        { after: 'model' },
      ).errorHandler(
        'audit-errors',
        tap((e: ServingEvent) => sideHandled.push(e.metadata.error)),
      );
      const out = hot('ab|', { a: ev('1', { q: 'hi' }), b: ev('2', { q: 'hi', fail: true }) }).pipe(
        f.build(),
        map((e) => ({ body: e.body, error: e.error, errorMeta: e.metadata.error })),
      );
      expectObservable(out).toBe('ab|', {
        a: { body: { answer: 'hi' }, error: undefined, errorMeta: undefined },
        b: { body: { answer: 'sorry, try later' }, error: undefined, errorMeta: { step: 'model', error: 'TypeError: model down' } },
      });
    });
    // Only 'a' reached the audit step ('b' failed before it and its error went to the fallback).
    expect(sideHandled).toEqual([{ step: 'audit', error: 'Error: audit store down' }]);
  });

  it('a step’s error handler with before: its output goes on to those steps', () => {
    scheduler.run(({ hot, expectObservable }) => {
      const f = flow();
      f.to(
        'parse',
        step((b: unknown) => {
          if (typeof b !== 'string') throw new TypeError('not text');
          return b;
        }),
      )
        .errorHandler(
          'coerce',
          step((b: { value?: number }) => String(b.value)),
          { before: 'answer' },
        )
        .to(
          'enrich',
          mapBody((b) => `${b}+`),
        )
        .to(
          'answer',
          mapBody((b) => `answer:${b}`),
        )
        .respond();
      expectObservable(hot('ab|', { a: ev('1', 'hi'), b: ev('2', { value: 5 }) }).pipe(f.build(), bodies())).toBe('ab|', {
        a: 'answer:hi+',
        b: 'answer:5',
      });
    });
  });

  it('flow.errorHandler handles every step without its own (a step’s own wins); a side step’s failure ends there', () => {
    const caught: unknown[] = [];
    scheduler.run(({ hot, expectObservable }) => {
      const f = flow();
      f.errorHandler(
        'catch-all',
        step((_b, { event }) => (caught.push(event.metadata.error), 'caught')),
      );
      f.to(
        'a',
        step((b: unknown) => {
          if (b === 'a') throw new Error('A');
          return b;
        }),
      )
        .to(
          'b',
          step((b: unknown) => {
            if (b === 'b') throw new Error('B');
            return b;
          }),
        )
        .errorHandler(
          'b-handler',
          step(() => 'b handled'),
        )
        .to(
          'reply',
          mapBody((b) => b),
        )
        .respond();
      f.add(
        'side',
        step((b: unknown) => {
          if (b === 'c') throw new Error('C');
          return b;
        }),
        { after: 'a' },
      );
      expectObservable(hot('abc|', { a: ev('1', 'a'), b: ev('2', 'b'), c: ev('3', 'c') }).pipe(f.build(), bodies())).toBe('abc|', {
        a: 'caught',
        b: 'b handled',
        c: 'c',
      });
    });
    expect(caught).toEqual([
      { step: 'a', error: 'Error: A' },
      { step: 'side', error: 'Error: C' },
    ]);
  });

  it('a cycle runs its bounded step exactly maxIterations times, then fails the event with CycleLimitError (its handler takes it)', () => {
    const runs = new Map<string, number>();
    const generate = mapBody((b: { tries: number; needs: number }) => ({ ...b, tries: b.tries + 1 }));
    const counted: Op = (source) =>
      source.pipe(
        tap((e) => runs.set(e.id, (runs.get(e.id) ?? 0) + 1)),
        generate,
      );
    const build = (handled: boolean) => {
      const f = flow();
      const gen = f.to('generate', counted, { maxIterations: 3 });
      if (handled)
        gen.errorHandler(
          'give-up',
          step((_b, { event }) => `gave up: ${String((event.metadata.error as { error: string }).error).split(':')[0]}`),
        );
      gen
        .to(
          'judge',
          choice((e: ServingEvent<{ tries: number; needs: number }>) => (e.body.tries >= e.body.needs ? 'reply' : 'generate')),
        )
        .cycleTo('generate');
      f.add(
        'reply',
        mapBody((b: { tries: number }) => `after ${b.tries}`),
        { after: 'judge' },
      ).respond();
      return f.build();
    };
    scheduler.run(({ hot, expectObservable }) => {
      const input = { a: ev('a', { tries: 0, needs: 1 }), b: ev('b', { tries: 0, needs: 3 }), c: ev('c', { tries: 0, needs: 4 }) };
      expectObservable(
        hot('abc|', input).pipe(
          build(false),
          map((e) => (e.error instanceof CycleLimitError ? `${e.error.message} [${e.origin}]` : e.body)),
        ),
      ).toBe('abc|', {
        a: 'after 1',
        b: 'after 3',
        c: "step 'generate' already ran maxIterations (3) times for event 'c': the cycle stops here (end the loop sooner with a choice, or raise the step's maxIterations) [generate]",
      });
    });
    expect(Object.fromEntries(runs)).toEqual({ a: 1, b: 3, c: 3 });
    new TestScheduler((actual, expected) => expect(actual).toEqual(expected)).run(({ hot, expectObservable }) => {
      expectObservable(hot('a|', { a: ev('d', { tries: 0, needs: 9 }) }).pipe(build(true), bodies())).toBe('a|', {
        a: 'gave up: CycleLimitError',
      });
    });
  });

  it('forwards a source error at once, completes on empty, stays open on never', () => {
    scheduler.run(({ hot, cold, expectObservable }) => {
      const build = () => {
        const f = flow();
        f.to('slow', later(5)).respond();
        return f.build();
      };
      expectObservable(hot('a-#', { a: ev('1', 'a') }).pipe(build(), bodies())).toBe('--#');
      expectObservable(cold<ServingEvent>('|').pipe(build())).toBe('|');
      expectObservable(cold<ServingEvent>('-').pipe(build())).toBe('-');
    });
  });

  it('an early unsubscribe unsubscribes the source and every step; each step is subscribed once per flow subscription', () => {
    let subscribed = 0;
    let unsubscribed = 0;
    const watched: Op = (source) =>
      new Observable<ServingEvent>((subscriber) => {
        subscribed++;
        const s = source.pipe(delay(10)).subscribe(subscriber);
        return () => {
          unsubscribed++;
          s.unsubscribe();
        };
      });
    const f = flow();
    f.to('a', watched).to('b', watched).respond();
    const pipeline = f.build();
    scheduler.run(({ hot, expectObservable, expectSubscriptions }) => {
      const source = hot('-a-a-a', { a: ev('1', 'a') });
      expectObservable(source.pipe(pipeline), '^--!').toBe('----');
      expectSubscriptions(source.subscriptions).toBe('^--!');
    });
    expect([subscribed, unsubscribed]).toEqual([2, 2]);
    expect(flowRuntimeOf(pipeline)!.live).toBe(0);
  });

  it('a user callback that throws fails that event only (a step’s function, a choice’s select)', () => {
    scheduler.run(({ hot, expectObservable }) => {
      const f = flow();
      f.to(
        'work',
        step((b: unknown) => {
          if (b === 'boom') throw new SyntaxError('step threw');
          return b;
        }),
      ).to(
        'route',
        choice((e) => {
          if (e.body === 'pick') throw new EvalError('select threw');
          return 'reply';
        }),
      );
      f.add(
        'reply',
        mapBody((b) => `ok ${b}`),
        { after: 'route' },
      ).respond();
      expectObservable(hot('abc|', { a: ev('1', 'boom'), b: ev('2', 'pick'), c: ev('3', 'x') }).pipe(f.build(), bodies())).toBe('abc|', {
        a: fail('SyntaxError: step threw'),
        b: fail('EvalError: select threw'),
        c: 'ok x',
      });
    });
  });

  it('keeps the steps’ own concurrency limits (QueueFullError as the answer) and its own bound on inputs inside', () => {
    scheduler.run(({ hot, cold, expectObservable }) => {
      const f = flow();
      f.to(
        'one-at-a-time',
        step(() => cold('--r|', { r: 'done' }), { maxInFlight: 1, maxQueue: 0 }),
      ).respond();
      expectObservable(
        hot('ab|', { a: ev('1'), b: ev('2') }).pipe(
          f.build(),
          map((e) => (e.error instanceof QueueFullError ? 'full' : e.body)),
        ),
      ).toBe('-b(a|)', {
        a: 'done',
        b: 'full',
      });
      const g = flow({ name: 'small', maxInFlight: 1 });
      g.to('slow', later(3)).respond();
      expectObservable(
        hot('ab|', { a: ev('1', 'a'), b: ev('2', 'b') }).pipe(
          g.build(),
          map((e) => e.error?.message ?? e.body),
        ),
      ).toBe('-b-(a|)', {
        a: 'a',
        b: "step 'small' is full (maxInFlight 1, maxQueue 0); event rejected: raise maxQueue or maxInFlight, or slow the source (backpressure)",
      });
    });
  });

  it('passes errored inputs untouched, answers two inputs that share an id, and errors the stream on a value that is not an event', () => {
    const errored = toEvent('x', { id: 'e', error: new Error('earlier') });
    scheduler.run(({ hot, expectObservable }) => {
      const f = flow();
      f.to(
        'slow',
        later(2, (b) => `${b}!`),
      ).respond();
      expectObservable(hot('ab|', { a: errored, b: ev('e', 'y') }).pipe(f.build())).toBe('a--(b|)', {
        a: errored,
        b: expect.objectContaining({ body: 'y!' }) as unknown,
      });
      const g = flow();
      g.to(
        'slow',
        later(2, (b) => `${b}!`),
      ).respond();
      expectObservable(hot('ab|', { a: ev('same', '1'), b: ev('same', '2') }).pipe(g.build(), bodies())).toBe('--a(b|)', {
        a: '1!',
        b: '2!',
      });
      const h = flow();
      h.to(
        'x',
        mapBody((b) => b),
      ).respond();
      expectObservable(hot('a', { a: { not: 'an event' } as never }).pipe(h.build())).toBe(
        '#',
        undefined,
        new TypeError("flow 'flow' received a plain object, not a ServingEvent: pipe asEvents() first (or make events with toEvent())"),
      );
    });
  });

  it('counts the copies inside each step, also along a chain of steps piped into one another', () => {
    const f = flow();
    f.to('a', later(2)).to('b', later(3)).respond();
    const pipeline = f.build();
    const seen: string[] = [];
    const runtime = flowRuntimeOf(pipeline)!;
    const at = () => insideEach(runtime);
    scheduler.run(({ hot, expectObservable }) => {
      for (const frame of [1, 3, 6]) scheduler.schedule(() => seen.push(`${frame} ${at()}`), frame);
      expectObservable(hot('a|', { a: ev('1', 'x') }).pipe(pipeline, bodies())).toBe('-----(a|)', { a: 'x' });
    });
    expect(seen).toEqual(['1 a:1 b:0', '3 a:0 b:1', '6 a:0 b:0']);
  });

  it('a chain’s links count each copy across and pass an event errored upstream on as nobody’s own error', () => {
    // a → b → c → d piped into one another (no other way in): b fails 'x', which passes c and d
    // untouched, is b's error only, and leaves b's count when it leaves b.
    const f = flow();
    f.to('a', later(2))
      .to('b', failsX(4))
      .to(
        'c',
        later(6, (b) => `${b}c`),
      )
      .to(
        'd',
        step((b) => `${b}d`),
      )
      .respond();
    const pipeline = f.build();
    const runtime = flowRuntimeOf(pipeline)!;
    const at = () => insideEach(runtime);
    const seen: string[] = [];
    scheduler.run(({ hot, expectObservable }) => {
      // x: a 0–2, b 2–6 (fails), c 6–12; y: a 1–3, b 3–7, c 7–13
      for (const frame of [1.5, 5, 10, 20]) scheduler.schedule(() => seen.push(`${frame} ${at()}`), frame);
      const out = hot('xy|', { x: ev('1', 'x'), y: ev('2', 'y') }).pipe(
        pipeline,
        map((e) => [e.body, e.error?.message]),
      );
      expectObservable(out).toBe('12ms x (y|)', { x: ['x', 'b failed'], y: ['ycd', undefined] });
    });
    expect(seen).toEqual(['1.5 a:2 b:0 c:0 d:0', '5 a:0 b:2 c:0 d:0', '10 a:0 b:0 c:2 d:0', '20 a:0 b:0 c:0 d:0']);
    expect(Object.fromEntries(runtime.stats().map((s) => [s.step, [s.inFlight, s.errors]]))).toEqual({
      a: [0, 0],
      b: [0, 1],
      c: [0, 0],
      d: [0, 0],
    });
  });

  it('counts a chain’s copies that leave it for a step’s handler out of that step, and not into the next', () => {
    // a → b → c piped into one another; b fails 'x' to its handler 'fix' (out of the chain between
    // b and c, whose link counts only the copies that cross it).
    const f = flow();
    f.to('a', later(2))
      .to('b', failsX(2))
      .errorHandler(
        'fix',
        later(3, () => 'fixed'),
      )
      .to('c', later(3))
      .respond();
    const pipeline = f.build();
    const runtime = flowRuntimeOf(pipeline)!;
    const at = () => insideEach(runtime);
    const seen: string[] = [];
    scheduler.run(({ hot, expectObservable }) => {
      // x: a 0–2, b 2–4 (fails), fix 4–7 (answers); y: a 1–3, b 3–5, c 5–8 (answers)
      for (const frame of [1.5, 3.5, 6, 8.5, 20]) scheduler.schedule(() => seen.push(`${frame} ${at()}`), frame);
      const out = hot('xy|', { x: ev('1', 'x'), y: ev('2', 'y') }).pipe(pipeline, bodies());
      expectObservable(out).toBe('7ms x (y|)', { x: 'fixed', y: 'y' });
    });
    expect(seen).toEqual([
      '1.5 a:2 b:0 c:0 fix:0',
      '3.5 a:0 b:2 c:0 fix:0',
      '6 a:0 b:0 c:1 fix:1',
      '8.5 a:0 b:0 c:0 fix:0',
      '20 a:0 b:0 c:0 fix:0',
    ]);
    expect(runtime.stats().map((s) => s.errors)).toEqual([0, 1, 0, 0]);
  });

  it('finds an older input’s copy that a step emits while a newer input runs, and an input pushed from inside an answer', () => {
    scheduler.run(({ expectObservable }) => {
      const f = flow();
      // Holds an event until the next one arrives, then lets both go, synchronously.
      f.to('pairs', (source) =>
        source.pipe(
          bufferCount(2),
          mergeMap((pair) => pair),
        ),
      )
        .to(
          'mark',
          mapBody((b) => `${b}!`),
        )
        .respond();
      const source = new Subject<ServingEvent>();
      const out = source.pipe(
        f.build(),
        tap((e) => {
          if (e.id === 'a') {
            source.next(ev('c', 'c'));
            source.next(ev('d', 'd'));
          }
        }),
        bodies(),
      );
      expectObservable(out).toBe('(abcd)', { a: 'a!', b: 'b!', c: 'c!', d: 'd!' });
      scheduler.schedule(() => {
        source.next(ev('a', 'a'));
        source.next(ev('b', 'b'));
      }, 0);
    });
  });

  it('errors the stream when a step completes while the flow runs, or emits something that is not an event', () => {
    scheduler.run(({ hot, expectObservable }) => {
      const f = flow();
      f.to('once', take(1)).respond();
      expectObservable(hot('ab', { a: ev('1', 'a'), b: ev('2', 'b') }).pipe(f.build(), bodies())).toBe(
        '(a#)',
        { a: 'a' },
        new TypeError("flow 'flow': step 'once' completed while the flow was running; a flow step must take events until the flow ends"),
      );
      const g = flow();
      g.to(
        'bad',
        map(() => 42 as never),
      ).respond();
      expectObservable(hot('a', { a: ev('1') }).pipe(g.build())).toBe(
        '#',
        undefined,
        new TypeError("flow 'flow': step 'bad' emitted 42, not a ServingEvent; a flow step must emit events"),
      );
    });
  });
});

describe('flow build rules (ConfigError naming the step path)', () => {
  const noop = mapBody((b) => b);
  const message = (fn: () => unknown): string => {
    try {
      fn();
    } catch (error) {
      expect(error).toBeInstanceOf(ConfigError);
      return (error as Error).message;
    }
    throw new Error('no ConfigError was thrown');
  };

  it('a duplicate step name (steps and handlers share one namespace)', () => {
    const f = flow();
    f.to('a', noop).errorHandler('h', noop);
    expect(message(() => f.to('a', noop))).toBe(
      "flow.steps['a']: 'a' is already a step of the flow; names are unique among steps and handlers",
    );
    expect(message(() => f.to('h', noop))).toBe(
      "flow.steps['h']: 'h' is already a step of the flow; names are unique among steps and handlers",
    );
  });

  it('an unknown after target', () => {
    const f = flow();
    f.to('a', noop);
    f.add('b', noop, { after: ['a', 'nope'] });
    expect(message(() => f.build())).toBe("flow.steps['b'].after: 'nope' is not a step of the flow (steps: 'a', 'b')");
  });

  it('an unknown before target, and a before upstream of the failing step', () => {
    const f = flow();
    f.to('a', noop).to('b', noop).errorHandler('h', noop, { before: 'zzz' });
    expect(message(() => f.build())).toBe("flow.steps['b'].errorHandler.before: 'zzz' is not a step of the flow (steps: 'a', 'b')");
    const g = flow();
    g.to('a', noop)
      .to('b', noop)
      .errorHandler('h', noop, { before: ['a'] });
    expect(message(() => g.build())).toBe(
      "flow.steps['b'].errorHandler.before: 'a' is upstream of 'b': a handler's output goes on to steps after the failing one only (as in MLRun)",
    );
    const h = flow();
    h.to('a', noop).to('b', noop).errorHandler('h', noop, { before: 'b' });
    expect(message(() => h.build())).toMatch(/^flow\.steps\['b'\]\.errorHandler\.before: 'b' is upstream of 'b'/);
  });

  it('an unknown cycleTo target, and one that is not upstream', () => {
    const f = flow();
    f.to('a', noop, { maxIterations: 2 }).cycleTo('nope');
    expect(message(() => f.build())).toBe("flow.steps['a'].cycleTo: 'nope' is not a step of the flow (steps: 'a')");
    const g = flow();
    const a = g.to('a', noop, { maxIterations: 2 });
    g.to('b', noop);
    a.cycleTo('b');
    expect(message(() => g.build())).toBe(
      "flow.steps['a'].cycleTo: 'b' is not upstream of 'a': cycleTo loops back to an earlier step (use .to() or after for a later one)",
    );
  });

  it('an unbounded cycle (and one closed through a handler’s before), but not a bounded one', () => {
    const f = flow();
    f.to('models', noop)
      .to(
        'judge',
        choice(() => 'models'),
      )
      .cycleTo('models');
    expect(message(() => f.build())).toBe(
      "flow.steps['judge'].cycleTo: the cycle models → judge → models has no bound: give one of its steps maxIterations (how many times it may run for one event)",
    );
    // a → b → c → a is bounded by b, but a's failures loop round through its handler: a → h → c → a.
    const g = flow();
    g.to('a', noop).errorHandler('h', noop, { before: 'c' });
    g.to('b', noop, { maxIterations: 3 }).to('c', noop).cycleTo('a');
    expect(message(() => g.build())).toBe(
      "flow.steps['c'].cycleTo: the cycle a → h → c → a has no bound: give one of its steps maxIterations (how many times it may run for one event)",
    );
    const ok = flow();
    ok.to('models', noop, { maxIterations: 5 })
      .to(
        'judge',
        choice(() => 'models'),
      )
      .cycleTo('models');
    expect(() => ok.build()).not.toThrow();
  });

  it('steps placed after one another in a loop (loops are declared with cycleTo)', () => {
    const f = flow();
    f.add('a', noop, { after: [] });
    f.add('b', noop, { after: ['a', 'c'] });
    f.add('c', noop, { after: 'b' });
    expect(message(() => f.build())).toBe(
      "flow.steps['c'].after: the steps come after one another in a loop (b → c → b): declare a loop with cycleTo and bound it with maxIterations",
    );
  });

  it('two responders', () => {
    const f = flow();
    f.to('a', noop).respond();
    expect(message(() => f.to('b', noop).respond())).toBe("flow.steps['b'].respond: 'a' already responds; a flow has one responder");
  });

  it('a step after a queue step, or a queue step that responds (docs/design.md §19)', () => {
    // A queue step's operator as queueStep() marks it (rxserve/streams; no Redis is reached at build).
    const hop: typeof noop = (source) => noop(source);
    (hop as unknown as Record<symbol, unknown>)[QUEUE_STEP] = { stream: 'jobs' };
    const after = flow();
    after.to('a', noop).to('hop', hop).to('b', noop);
    expect(message(() => after.build())).toBe(
      "flow.steps['b']: 'b' comes after queue step 'hop' (stream 'jobs'): steps after a queue run in the consumer's process: start them with redisStream()",
    );
    const responds = flow();
    responds.to('a', noop).to('hop', hop).respond();
    expect(message(() => responds.build())).toBe(
      "flow.steps['hop'].respond: queue step 'hop' cannot respond: its events' answers come from the consumer's process; put it on a side branch",
    );
    const side = flow();
    side.to('a', noop).to('reply', noop).respond();
    side.add('hop', hop, { after: 'a' });
    expect(() => side.build()).not.toThrow();
  });

  it('any change after build()', () => {
    const f = flow({ name: 'done' });
    const a = f.to('a', noop);
    const built = f.build();
    expect(f.build()).toBe(built);
    const final = "flow 'done' was built: build() makes it final (declare a new flow to change it)";
    expect(message(() => f.to('b', noop))).toBe(`flow.steps['b']: ${final}`);
    expect(message(() => f.add('b', noop, { after: 'a' }))).toBe(`flow.steps['b']: ${final}`);
    expect(message(() => a.respond())).toBe(`flow.steps['a']: ${final}`);
    expect(message(() => a.cycleTo('a'))).toBe(`flow.steps['a']: ${final}`);
    expect(message(() => a.errorHandler('h', noop))).toBe(`flow.steps['a']: ${final}`);
    expect(message(() => f.errorHandler('h', noop))).toBe(`flow.errorHandler: ${final}`);
  });

  it('bad arguments: an empty flow, a step that is no operator, a bad bound, a second handler, an unknown handle', () => {
    expect(message(() => flow().build())).toBe("flow 'flow': a flow needs at least one step: add one with flow.to(name, operator)");
    expect(message(() => flow().to('a', 'nope' as never))).toBe(
      'flow.steps[\'a\']: expected an operator (events$) => events$, or a choice(), got "nope"',
    );
    expect(message(() => flow().to('a', noop, { maxIterations: 0 }))).toBe(
      "flow.steps['a'].maxIterations: expected a positive integer, got 0",
    );
    expect(message(() => flow().add('a', noop, { after: 3 as never }))).toBe(
      "flow.steps['a'].after: expected a step name or a list of step names, got 3",
    );
    expect(message(() => flow().to('', noop))).toMatch(/^flow\.steps\[''\]: expected a non-empty string/);
    const f = flow();
    f.to('a', noop).errorHandler('h1', noop);
    expect(message(() => f.step('a').errorHandler('h2', noop))).toBe(
      "flow.steps['a'].errorHandler: step 'a' already has an error handler ('h1')",
    );
    expect(message(() => f.step('zz'))).toBe("flow.steps['zz']: no step 'zz' in the flow (steps: a)");
    f.errorHandler('all', noop);
    expect(message(() => f.errorHandler('all2', noop))).toBe("flow.errorHandler: the flow already has an error handler ('all')");
    expect(message(() => flow({ maxInFlight: -1 }))).toBe('flow.maxInFlight: expected a positive integer or Infinity, got -1');
    expect(message(() => choice('x' as never))).toBe('choice.select: expected a function (event) => step names, got "x"');
    expect(message(() => choiceByField('a..b'))).toBe('choiceByField.path: expected a dot path like \'a.b.c\', got "a..b"');
  });
});
