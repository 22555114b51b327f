import { filter, map, Observable, pipe, type OperatorFunction } from 'rxjs';
import { afterEach, describe, expect, it } from 'vitest';
import { until } from '../../test/support/until.js';
import {
  ConfigError,
  createGraph,
  invoker,
  Model,
  ModelRunnerError,
  ModelTimeoutError,
  QueueFullError,
  step,
  type Invoker,
  type PredictContext,
  type ServingEvent,
} from '../index.js';

/** What the test models did, read by the tests. */
const probe = { started: 0, finished: 0, aborted: [] as string[], closed: 0 };

/** Answers `{ tag }` after `body.ms`; its call rejects when its signal aborts. */
class Sleepy extends Model<{ tag: string; ms?: number; fail?: boolean }, { tag: string }> {
  override predict(body: { tag: string; ms?: number; fail?: boolean }, ctx: PredictContext): Promise<{ tag: string }> {
    probe.started++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        probe.finished++;
        if (body.fail) reject(new TypeError(`'${body.tag}' failed`));
        else resolve({ tag: body.tag });
      }, body.ms ?? 0);
      ctx.signal.addEventListener('abort', () => {
        clearTimeout(timer);
        probe.aborted.push(ctx.eventId);
        reject(ctx.signal.reason);
      });
    });
  }
  override close() {
    probe.closed++;
  }
}

const sleepy = (options: { maxInFlight?: number; maxQueue?: number } = {}) => {
  const graph = createGraph();
  const pipeline = graph.modelRunner({
    models: [{ endpointName: 'sleepy', modelClass: Sleepy, executionMechanism: 'asyncio' }],
    ordered: false,
    ...options,
  });
  return { graph, pipeline };
};

let open: Invoker[] = [];
const track = (client: Invoker): Invoker => {
  open.push(client);
  return client;
};

afterEach(async () => {
  await Promise.all(open.map((c) => c.close()));
  open = [];
  Object.assign(probe, { started: 0, finished: 0, aborted: [], closed: 0 });
});

describe('invoker', () => {
  it('invoke() resolves with the output event of the same id; test() with its body', async () => {
    const { graph, pipeline } = sleepy();
    const client = track(invoker(pipeline, { graph }));
    const out = await client.invoke<{ tag: string }>({ tag: 'a' }, { id: 'r1', path: '/score', headers: { 'x-a': '1' } });
    expect(out.id).toBe('r1');
    expect(out.path).toBe('/score');
    expect(out.headers).toEqual({ 'x-a': '1' });
    expect(out.body).toEqual({ tag: 'a' });
    expect(out.error).toBeUndefined();
    expect(await client.test({ tag: 'b' })).toEqual({ tag: 'b' });
    expect(client.inFlight).toBe(0);
  });

  it('answers concurrent requests each with its own answer, out of order too', async () => {
    const { graph, pipeline } = sleepy();
    const client = track(invoker(pipeline, { graph }));
    const tags = Array.from({ length: 50 }, (_, i) => `t${i}`);
    const answers = await Promise.all(tags.map((tag, i) => client.test<{ tag: string }>({ tag, ms: (i * 7) % 20 })));
    expect(answers.map((a) => a.tag)).toEqual(tags);
  });

  it('answers a synchronous (naive) pipeline', async () => {
    const client = track(invoker(step((b: { n: number }) => ({ n: b.n + 1 }))));
    expect(await client.test({ n: 1 })).toEqual({ n: 2 });
  });

  it("test() throws the answer's error; invoke() resolves with the errored event", async () => {
    const { graph, pipeline } = sleepy();
    const client = track(invoker(pipeline, { graph }));
    await expect(client.test({ tag: 'x', fail: true })).rejects.toThrow(ModelRunnerError);
    const out = await client.invoke({ tag: 'y', fail: true });
    expect(out.error).toBeInstanceOf(ModelRunnerError);
    expect(out.error?.message).toContain("'y' failed");
  });

  it('a full step answers QueueFullError at once: nothing is buffered in front of the pipeline', async () => {
    const { graph, pipeline } = sleepy({ maxInFlight: 1, maxQueue: 1 });
    const client = track(invoker(pipeline, { graph }));
    await graph.ready();
    const first = client.invoke({ tag: 'a', ms: 200 });
    const second = client.invoke({ tag: 'b', ms: 0 });
    const t0 = Date.now();
    const third = await client.invoke({ tag: 'c' });
    expect(Date.now() - t0).toBeLessThan(150); // before the first call finished
    expect(third.error).toBeInstanceOf(QueueFullError);
    expect((await first).body).toEqual({ tag: 'a' });
    expect((await second).body).toEqual({ tag: 'b' });
  });

  it('an event the pipeline filters out is answered with ModelTimeoutError, and forgotten', async () => {
    const pipeline = filter((e: ServingEvent<{ keep: boolean }>) => e.body.keep) as OperatorFunction<ServingEvent, ServingEvent>;
    const client = track(invoker(pipeline, { timeoutMs: 50 }));
    const [dropped, kept] = await Promise.all([client.invoke({ keep: false }, { id: 'gone' }), client.invoke({ keep: true })]);
    expect(dropped.id).toBe('gone');
    expect(dropped.error).toBeInstanceOf(ModelTimeoutError);
    expect(dropped.error?.message).toBe("no answer for event 'gone' within 50 ms; its work was aborted");
    expect(kept.error).toBeUndefined();
    expect(client.inFlight).toBe(0);
    // the id is free again
    expect((await client.invoke({ keep: true }, { id: 'gone' })).error).toBeUndefined();
  });

  it('a late answer (after its timeout) is ignored and leaves nothing pending', async () => {
    const delay = (source: Observable<ServingEvent>) =>
      new Observable<ServingEvent>((subscriber) => {
        const timers = new Set<ReturnType<typeof setTimeout>>();
        const sub = source.subscribe((e) => {
          const timer = setTimeout(() => (timers.delete(timer), subscriber.next(e)), 80);
          timers.add(timer);
        });
        return () => (sub.unsubscribe(), timers.forEach(clearTimeout));
      });
    const client = track(invoker(delay, { timeoutMs: 20 }));
    const out = await client.invoke({ n: 1 });
    expect(out.error).toBeInstanceOf(ModelTimeoutError);
    await new Promise((r) => setTimeout(r, 120)); // the late answer has come and gone
    expect(client.inFlight).toBe(0);
  });

  it('rejects a request id already in flight, naming it', async () => {
    const { graph, pipeline } = sleepy();
    const client = track(invoker(pipeline, { graph }));
    const first = client.invoke({ tag: 'a', ms: 50 }, { id: 'same' });
    await expect(client.invoke({ tag: 'b' }, { id: 'same' })).rejects.toThrow("request id 'same' is already in flight");
    expect((await first).body).toEqual({ tag: 'a' });
  });

  it("init.signal: aborting rejects invoke with the signal's reason; an aborted signal never reaches the pipeline", async () => {
    let seen = 0;
    const { graph, pipeline } = sleepy();
    const client = track(
      invoker(
        pipe(
          map((e: ServingEvent) => (seen++, e)),
          pipeline,
        ),
        { graph },
      ),
    );
    const controller = new AbortController();
    const pending = client.invoke({ tag: 'a', ms: 500 }, { signal: controller.signal });
    await until(() => probe.started === 1);
    const reason = new Error('caller gave up');
    controller.abort(reason);
    await expect(pending).rejects.toBe(reason);
    expect(client.inFlight).toBe(0);
    await expect(client.invoke({ tag: 'b' }, { signal: AbortSignal.abort('already') })).rejects.toBe('already');
    expect(seen).toBe(1);
  });

  it("a timeout aborts the event's work: the model's signal fires and the call never finishes", async () => {
    const { graph, pipeline } = sleepy();
    const client = track(invoker(pipeline, { graph, timeoutMs: 30 }));
    const out = await client.invoke({ tag: 'slow', ms: 10_000 }, { id: 'slow-1' });
    expect(out.error).toBeInstanceOf(ModelTimeoutError);
    await until(() => probe.aborted.includes('slow-1'));
    expect(probe.finished).toBe(0);
    expect((await client.invoke({ tag: 'next' })).body).toEqual({ tag: 'next' });
  });

  it("aborting init.signal aborts the event's work", async () => {
    const { graph, pipeline } = sleepy();
    const client = track(invoker(pipeline, { graph }));
    const controller = new AbortController();
    const pending = client.invoke({ tag: 'a', ms: 10_000 }, { id: 'mine', signal: controller.signal });
    await until(() => probe.started === 1);
    controller.abort(new Error('stop'));
    await expect(pending).rejects.toThrow('stop');
    await until(() => probe.aborted.includes('mine'));
    expect(probe.finished).toBe(0);
  });

  it('close(): later invokes reject, in-flight answers come first, then the graph closes', async () => {
    const { graph, pipeline } = sleepy();
    const client = invoker(pipeline, { graph });
    const order: string[] = [];
    const answers = ['a', 'b', 'c'].map((tag, i) =>
      client.test<{ tag: string }>({ tag, ms: 50 + i * 30 }).then((a) => (order.push(a.tag), a)),
    );
    await until(() => probe.started === 3);
    const closed = client.close().then(() => order.push(`closed:${graph.closed}:${probe.closed}`));
    expect(client.closed).toBe(true);
    await expect(client.invoke({ tag: 'late' })).rejects.toThrow('the invoker is closed');
    await closed;
    expect(order).toEqual(['a', 'b', 'c', 'closed:true:1']);
    expect((await Promise.all(answers)).map((a) => a.tag)).toEqual(['a', 'b', 'c']);
    await client.close(); // idempotent
  });

  it('close() aborts work whose request already ended (timed out)', async () => {
    const { graph, pipeline } = sleepy();
    const client = invoker(pipeline, { graph, timeoutMs: 30 });
    const out = await client.invoke({ tag: 'slow', ms: 10_000 }, { id: 'ended' });
    expect(out.error).toBeInstanceOf(ModelTimeoutError);
    await client.close();
    expect(probe.aborted).toContain('ended');
    expect(probe.finished).toBe(0);
  });

  it('a synchronous pipeline that calls the invoker from inside (re-entrant): each request gets its own answer, and ids being dispatched are in flight', async () => {
    let client!: Invoker;
    const refusals: Promise<unknown>[] = [];
    const inner: Promise<ServingEvent>[] = [];
    const inFlight: number[] = [];
    const reentrant = map((e: ServingEvent) => {
      const { depth } = e.body as { depth: number };
      inFlight.push(client.inFlight);
      // This request is still being dispatched (not answered): its id is taken.
      refusals.push(client.invoke({ depth: 0 }, { id: e.id }).then(String, (error: Error) => error.message));
      if (depth > 0) inner.push(client.invoke({ depth: depth - 1 }, { id: `${e.id}-in` }));
      return { ...e, body: { depth, answered: e.id } };
    });
    client = track(invoker(reentrant));
    const outer = await client.invoke({ depth: 2 }, { id: 'o' });
    expect(outer.body).toEqual({ depth: 2, answered: 'o' });
    // The innermost invoke returns first, so it was pushed first.
    expect((await Promise.all(inner)).map((x) => x.body)).toEqual([
      { depth: 0, answered: 'o-in-in' },
      { depth: 1, answered: 'o-in' },
    ]);
    expect(await Promise.all(refusals)).toEqual(
      ['o', 'o-in', 'o-in-in'].map((id) => `request id '${id}' is already in flight; ids of concurrent requests must differ`),
    );
    expect(inFlight).toEqual([1, 2, 3]);
    expect(client.inFlight).toBe(0);
    // Answered during dispatch: the ids are free again.
    expect((await client.invoke({ depth: 0 }, { id: 'o' })).body).toEqual({ depth: 0, answered: 'o' });
  });

  it('a synchronously answered request cannot be cancelled afterwards, and a request answered later still times out', async () => {
    const half = pipe(
      filter((e: ServingEvent) => (e.body as { keep: boolean }).keep),
      map((e: ServingEvent) => e),
    );
    const client = track(invoker(half, { timeoutMs: 50 }));
    const controller = new AbortController();
    const answered = await client.invoke({ keep: true }, { signal: controller.signal });
    controller.abort(new Error('too late'));
    expect(answered.error).toBeUndefined();
    const dropped = await client.invoke({ keep: false });
    expect(dropped.error).toBeInstanceOf(ModelTimeoutError);
    expect(client.inFlight).toBe(0);
  });

  it('a pipeline that errors answers the waiting requests with that error; the next request subscribes again', async () => {
    let subscriptions = 0;
    const fragile: OperatorFunction<ServingEvent, ServingEvent> = (source) =>
      new Observable<ServingEvent>((subscriber) => {
        subscriptions++;
        return source.subscribe((e) => {
          if ((e.body as { crash?: boolean }).crash) subscriber.error(new ConfigError('the pipeline broke'));
          else setTimeout(() => subscriber.next(e), 20);
        });
      });
    const client = track(invoker(fragile));
    const waiting = client.invoke({ n: 1 });
    const crash = await client.invoke({ crash: true });
    expect(crash.error).toBeInstanceOf(ConfigError);
    expect((await waiting).error?.message).toBe('the pipeline broke');
    expect((await client.invoke({ n: 2 })).body).toEqual({ n: 2 });
    expect(subscriptions).toBe(2);
  });

  it('a pipeline that fails when subscribed answers each request with its ConfigError', async () => {
    const broken: OperatorFunction<ServingEvent, ServingEvent> = () =>
      new Observable<ServingEvent>((subscriber) => subscriber.error(new ConfigError([{ path: 'x', expected: 'y' }])));
    const client = track(invoker(broken));
    await expect(client.test({})).rejects.toThrow('x: expected y');
    await expect(client.test({})).rejects.toThrow(ConfigError);
  });

  it('validates its arguments with errors naming the field', () => {
    expect(() => invoker(42 as never)).toThrow('invoker(pipeline): expected an operator');
    expect(() =>
      invoker(
        map((e: ServingEvent) => e),
        { timeoutMs: -1 },
      ),
    ).toThrow(/invoker\.timeoutMs/);
    expect(() =>
      invoker(
        map((e: ServingEvent) => e),
        { graph: {} as never },
      ),
    ).toThrow(/invoker\.graph/);
    expect(() =>
      invoker(
        map((e: ServingEvent) => e),
        { timeout: 5 } as never,
      ),
    ).toThrow(/timeout/);
  });
});
