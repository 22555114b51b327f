// Per-event cancellation (event.signal) and the error channel: an aborted event leaves each step at
// once, errored with the signal's reason, and its work is stopped (the model's ctx.signal fires, a
// worker call is cancelled); other events are untouched. Whatever goes wrong inside an operator
// ends where the subscriber can catch it, never as an uncaught exception.
import { from, lastValueFrom, of, Subject, toArray, type OperatorFunction } from 'rxjs';
import { getEventListeners } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import {
  Model,
  asEvents,
  modelRunner,
  onError,
  router,
  selectModels,
  step,
  toEvent,
  type PredictContext,
  type ServingEvent,
} from '../src/index.js';

const fixture = new URL('./fixtures/workerModels.mjs', import.meta.url).href;

/** Waits until its signal aborts (records that it saw it), or for `ms`. */
class Waits extends Model {
  static aborted: string[] = [];
  static reasons: string[] = [];
  override predict(body: { ms?: number }, ctx: PredictContext) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => resolve({ done: ctx.eventId }), body.ms ?? 10_000);
      ctx.signal.addEventListener('abort', () => {
        clearTimeout(timer);
        Waits.aborted.push(ctx.eventId);
        Waits.reasons.push((ctx.signal.reason as Error).message);
        reject(ctx.signal.reason);
      });
    });
  }
}

afterEach(() => {
  Waits.aborted = [];
  Waits.reasons = [];
});

describe('per-event cancellation (event.signal)', () => {
  it('modelRunner: aborting one event stops its model call and it leaves errored at once; the others finish', async () => {
    const controller = new AbortController();
    const source = new Subject<ServingEvent>();
    const out: ServingEvent[] = [];
    const done = new Promise<void>((resolve) =>
      source
        .pipe(modelRunner({ models: [{ endpointName: 'w', modelClass: Waits, executionMechanism: 'asyncio' }] }))
        .subscribe({ next: (e) => out.push(e), complete: resolve }),
    );
    source.next(toEvent({}, { id: 'slow', signal: controller.signal }));
    source.next(toEvent({ ms: 5 }, { id: 'fast' }));
    await new Promise((r) => setTimeout(r, 20));
    controller.abort(new Error('client went away'));
    source.complete();
    await done;
    const byId = Object.fromEntries(out.map((e) => [e.id, e]));
    expect(byId.slow.error?.message).toBe('client went away');
    expect(byId.slow.origin).toBe('model_runner');
    expect(byId.fast.error).toBeUndefined();
    expect(byId.fast.body).toEqual({ done: 'fast' });
    expect(Waits.aborted).toEqual(['slow']);
    expect(Waits.reasons).toEqual(['client went away']);
    expect(out).toHaveLength(2);
  });

  it('an event whose signal is already aborted leaves errored without running; the reason names it', async () => {
    const controller = new AbortController();
    controller.abort();
    let ran = 0;
    const [event] = await lastValueFrom(
      of(toEvent(1, { signal: controller.signal })).pipe(
        step(() => {
          ran++;
          return 2;
        }),
        toArray(),
      ),
    );
    expect(ran).toBe(0);
    expect(event.error?.name).toBe('AbortError');
  });

  it('an event waiting in the queue (maxInFlight reached) is dropped from it when aborted', async () => {
    const controller = new AbortController();
    const started: number[] = [];
    const source = new Subject<ServingEvent>();
    const out: ServingEvent[] = [];
    const done = new Promise<void>((resolve) =>
      source
        .pipe(
          step(
            async (n: number) => {
              started.push(n);
              await new Promise((r) => setTimeout(r, 20));
              return n;
            },
            { maxInFlight: 1 },
          ),
        )
        .subscribe({ next: (e) => out.push(e), complete: resolve }),
    );
    source.next(toEvent(1));
    source.next(toEvent(2, { signal: controller.signal }));
    source.next(toEvent(3));
    controller.abort('stop');
    source.complete();
    await done;
    expect(started).toEqual([1, 3]);
    expect(out.map((e) => (e.error ? `${e.body}:${e.error.name}:${e.error.message}` : e.body))).toEqual(['2:AbortError:stop', 1, 3]);
  });

  it('a thread_pool call is cancelled in its worker when its event aborts', async () => {
    const controller = new AbortController();
    const pending = lastValueFrom(
      of(toEvent({ do: 'hang' }, { signal: controller.signal }), toEvent({ value: 1 })).pipe(
        modelRunner({
          models: [{ endpointName: 'f', modelClass: { module: fixture, export: 'Faulty' }, executionMechanism: 'thread_pool' }],
          pool: { maxThreads: 1 },
        }),
        toArray(),
      ),
    );
    setTimeout(() => controller.abort(new Error('cancelled by test')), 300);
    const [first, second] = await pending;
    expect(first.error?.message).toBe('cancelled by test');
    expect(second.error).toBeUndefined();
    expect(second.body).toEqual({ ok: 1 });
  });
});

describe('a signal shared by many events keeps no listener once they left', () => {
  // One request-scoped AbortSignal on thousands of events is ordinary; a step that forgot to stop
  // listening would grow the signal's listener list with every event (and keep each event alive).
  const abortListeners = (signal: AbortSignal) => getEventListeners(signal, 'abort').length;

  it('answered (sync and async), queued behind maxInFlight, and torn down while waiting', async () => {
    const shared = new AbortController();
    const events = Array.from({ length: 200 }, (_, i) => toEvent({ i }, { id: `s${i}`, signal: shared.signal }));
    // Synchronous work, then asynchronous work with a queue (maxInFlight 2): every event leaves.
    const sync = await lastValueFrom(
      from(events).pipe(
        step((body: { i: number }) => body.i),
        toArray(),
      ),
    );
    expect(sync).toHaveLength(200);
    expect(abortListeners(shared.signal)).toBe(0);
    const later = await lastValueFrom(
      from(events).pipe(
        step(async (body: { i: number }) => body.i, { maxInFlight: 2 }),
        toArray(),
      ),
    );
    expect(later.map((e) => e.body)).toEqual(events.map((_, i) => i));
    expect(abortListeners(shared.signal)).toBe(0);
    // Torn down with events running and queued: their listeners go with the subscription.
    const intake = new Subject<ServingEvent>();
    const subscription = intake.pipe(step(() => new Promise(() => undefined), { maxInFlight: 2 })).subscribe();
    for (const event of events.slice(0, 10)) intake.next(event);
    expect(abortListeners(shared.signal)).toBe(10);
    subscription.unsubscribe();
    expect(abortListeners(shared.signal)).toBe(0);
  });

  it('cancelled: the aborted events leave errored and the signal keeps nothing', async () => {
    const shared = new AbortController();
    const intake = new Subject<ServingEvent>();
    const out: ServingEvent[] = [];
    intake.pipe(step(() => new Promise(() => undefined), { maxInFlight: 1 })).subscribe((e) => out.push(e));
    for (let i = 0; i < 5; i++) intake.next(toEvent({ i }, { id: `c${i}`, signal: shared.signal }));
    shared.abort(new Error('the request went away'));
    expect(out.map((e) => e.error?.message)).toEqual(Array(5).fill('the request went away'));
    expect(abortListeners(shared.signal)).toBe(0);
  });
});

describe('nothing escapes the error channel (issue: a plain value crashed the process)', () => {
  const notEvents: [string, OperatorFunction<ServingEvent, unknown>, RegExp][] = [
    [
      'modelRunner',
      modelRunner({ models: [{ endpointName: 'm', modelClass: 'Model', executionMechanism: 'naive' }] }),
      /modelRunner 'model_runner' received a plain object, not a ServingEvent: pipe asEvents\(\) first/,
    ],
    ['step', step((x) => x), /step 'step' received a plain object, not a ServingEvent: pipe asEvents\(\) first/],
    ['onError', onError(() => 1), /onError 'on_error' received a plain object, not a ServingEvent/],
    ['router', router({ key: () => 'a', routes: { a: step((x) => x) } }), /router 'router' received a plain object, not a ServingEvent/],
    [
      'selectModels',
      selectModels(undefined, [{ endpointName: 'm', modelClass: 'Model', executionMechanism: 'naive' }]),
      /selectModels 'model_runner' received a plain object/,
    ],
  ];
  it.each(notEvents)(
    '%s given a plain object errors the stream with a TypeError saying to pipe asEvents()',
    async (_name, operator, message) => {
      const run = lastValueFrom(from([{ text: 'hi', models: ['m'] }] as unknown as ServingEvent[]).pipe(operator));
      await expect(run).rejects.toThrow(message);
      await expect(run).rejects.toBeInstanceOf(TypeError);
    },
  );

  it('a number, null and an array are named too', async () => {
    for (const [value, what] of [
      [42, 'a number'],
      [null, 'null'],
      [[1], 'an array'],
    ] as const) {
      await expect(lastValueFrom(of(value as unknown as ServingEvent).pipe(step((x) => x)))).rejects.toThrow(
        `received ${what}, not a ServingEvent`,
      );
    }
  });

  it('a throwing selector, router key, step callback and error handler each fail their event, caught downstream', async () => {
    const out = await lastValueFrom(
      from([{ n: 1 }]).pipe(
        asEvents(),
        modelRunner({
          models: [{ endpointName: 'm', modelClass: 'Model', executionMechanism: 'naive' }],
          selector: () => {
            throw new Error('selector broke');
          },
        }),
        toArray(),
      ),
    );
    expect(out[0].error?.message).toMatch(/the selector threw Error: selector broke/);
    const routed = await lastValueFrom(
      of(toEvent(1)).pipe(
        router({
          key: () => {
            throw new Error('key broke');
          },
          routes: { a: step((x) => x) },
        }),
        toArray(),
      ),
    );
    expect(routed[0].error?.message).toBe('key broke');
    const stepped = await lastValueFrom(
      of(toEvent(1)).pipe(
        step(() => {
          throw new Error('step broke');
        }),
        onError(() => {
          throw new Error('handler broke');
        }),
        toArray(),
      ),
    );
    expect(stepped[0].error?.message).toBe('handler broke');
  });
});
