// batchHttpRequests against real loopback HTTP servers: one request per item, answers in the items'
// order whatever order they arrive in, the step's bound across events, failures and aborts.
import { from, lastValueFrom, Subject, toArray, type OperatorFunction } from 'rxjs';
import { describe, expect, it } from 'vitest';
import { json, serversPerTest, type Handler, type TestServer } from '../../test/support/httpServer.js';
import { ModelTimeoutError, RemoteStepError, batchHttpRequests, toEvent, type ServingEvent } from '../index.js';

const server = serversPerTest();
const run = (events: ServingEvent[], op: OperatorFunction<ServingEvent, ServingEvent>) => lastValueFrom(from(events).pipe(op, toArray()));

// Answers after `delay` ms (from the item), so later items can answer first.
const delayed: Handler = (req, res) => {
  const item = JSON.parse(req.body) as { n: number; delay: number };
  setTimeout(() => json(res, 200, { n: item.n * 10 }), item.delay);
};

describe('batchHttpRequests', () => {
  it('one request per item, answers in the items’ order (not arrival order), x-request-id = the event id', async () => {
    const s = await server(delayed);
    const items = [60, 5, 40, 0, 20].map((delay, n) => ({ n, delay }));
    const [out] = await run(
      [toEvent({ items, keep: 1 }, { id: 'batch-1' })],
      batchHttpRequests({ url: s.url, inputPath: 'items', resultPath: 'answers' }),
    );
    expect(out.error).toBeUndefined();
    expect(out.body).toEqual({ items, keep: 1, answers: [0, 10, 20, 30, 40].map((n) => ({ n })) });
    expect(s.requests).toHaveLength(5);
    expect(s.requests.every((r) => r.headers['x-request-id'] === 'batch-1')).toBe(true);
    // The answers did arrive out of order: the order is the step's doing.
    expect(s.requests.map((r) => (JSON.parse(r.body) as { n: number }).n).sort()).toEqual([0, 1, 2, 3, 4]);
  });

  it('urlExpression and bodyExpression receive the item and the event', async () => {
    const s = await server((req, res) => json(res, 200, { url: req.url, body: JSON.parse(req.body) as unknown }));
    const [out] = await run(
      [
        toEvent({
          tenant: 't1',
          list: [
            { id: 'a', v: 1 },
            { id: 'b', v: 2 },
          ],
        }),
      ],
      batchHttpRequests({
        inputPath: 'list',
        urlExpression: (item, event) => `${s.url}/${(event.body as { tenant: string }).tenant}/${(item as { id: string }).id}`,
        bodyExpression: (item) => ({ value: (item as { v: number }).v }),
      }),
    );
    expect(out.body).toEqual([
      { url: '/t1/a', body: { value: 1 } },
      { url: '/t1/b', body: { value: 2 } },
    ]);
  });

  it('maxInFlight bounds the requests of all events together; every item answered', async () => {
    const s = await server(delayed);
    const events = [0, 1, 2].map((e) => toEvent(Array.from({ length: 8 }, (_, i) => ({ n: e * 100 + i, delay: 10 }))));
    const out = await run(events, batchHttpRequests({ url: s.url, maxInFlight: 3 }));
    expect(out.map((e) => (e.body as { n: number }[]).map((a) => a.n))).toEqual(
      [0, 1, 2].map((e) => Array.from({ length: 8 }, (_, i) => (e * 100 + i) * 10)),
    );
    expect(s.requests).toHaveLength(24);
    expect(s.maxInFlight).toBe(3);
  });

  it('the bound holds across origins too (each origin has its own connections): never more than maxInFlight in all', async () => {
    let most = 0;
    const pair: TestServer[] = [];
    const counting: Handler = (req, res) => {
      most = Math.max(
        most,
        pair.reduce((sum, x) => sum + x.inFlight, 0),
      );
      void delayed(req, res, 0);
    };
    pair.push(await server(counting), await server(counting));
    const items = Array.from({ length: 12 }, (_, n) => ({ n, delay: 15 }));
    const [out] = await run(
      [toEvent(items)],
      batchHttpRequests({ urlExpression: (item) => pair[(item as { n: number }).n % 2].url, maxInFlight: 3 }),
    );
    expect((out.body as { n: number }[]).map((a) => a.n)).toEqual(items.map((i) => i.n * 10));
    expect(most).toBe(3);
  });

  it('an empty list answers [] without a request; a body that is not a list fails the event', async () => {
    const s = await server(delayed);
    const out = await run([toEvent([]), toEvent({ not: 'a list' }), toEvent({ items: 'x' })], batchHttpRequests({ url: s.url, name: 'b' }));
    expect(out[0].body).toEqual([]);
    expect(out[1].error).toBeInstanceOf(TypeError);
    expect(out[1].error!.message).toBe(`batch step 'b': expects a list as the body, got {"not":"a list"}`);
    expect(out[2].error!.message).toMatch(/expects a list as the body/);
    expect(s.requests).toHaveLength(0);
  });

  it('an item that cannot be sent fails the event before any request goes out', async () => {
    const s = await server(delayed);
    const [out] = await run([toEvent([{ n: 1, delay: 0 }, { n: 2n }])], batchHttpRequests({ url: s.url }));
    expect(out.error!.message).toMatch(/cannot be sent as JSON/);
    expect(s.requests).toHaveLength(0);
  });

  it('the first item that fails fails the event (not retried for a 404), and the other requests are aborted', async () => {
    const s = await server((req, res) => {
      const item = JSON.parse(req.body) as { n: number };
      if (item.n === 1) setTimeout(() => json(res, 404, { missing: item.n }), 30);
      // the others never answer
    });
    const [out] = await run([toEvent([{ n: 0 }, { n: 1 }, { n: 2 }])], batchHttpRequests({ url: s.url, backoff: { baseDelayMs: 1 } }));
    const error = out.error as RemoteStepError;
    expect(error).toBeInstanceOf(RemoteStepError);
    expect(error.status).toBe(404);
    expect(error.answer).toBe('{"missing":1}');
    await s.waitForAborted(2);
    expect(s.requests).toHaveLength(3);
  });

  it('timeoutMs bounds the whole event: ModelTimeoutError, the requests aborted', async () => {
    const s = await server(() => undefined);
    const [out] = await run([toEvent([{ n: 0 }, { n: 1 }])], batchHttpRequests({ url: s.url, timeoutMs: 100 }));
    expect(out.error).toBeInstanceOf(ModelTimeoutError);
    await s.waitForAborted(2);
  });

  it("cancelling an event aborts its requests, frees their permits for the next event's items", async () => {
    const s = await server((req, res) => {
      const item = JSON.parse(req.body) as { hang?: boolean; n: number };
      if (!item.hang) json(res, 200, { n: item.n });
    });
    const controller = new AbortController();
    const input = new Subject<ServingEvent>();
    const outputs: ServingEvent[] = [];
    const done = new Promise<void>((resolve) =>
      input
        .pipe(batchHttpRequests({ url: s.url, maxInFlight: 2, ordered: false }))
        .subscribe({ next: (e) => outputs.push(e), complete: resolve }),
    );
    input.next(
      toEvent(
        [
          { hang: true, n: 0 },
          { hang: true, n: 1 },
          { hang: true, n: 2 },
        ],
        { id: 'stuck', signal: controller.signal },
      ),
    );
    input.next(toEvent([{ n: 5 }, { n: 6 }, { n: 7 }], { id: 'next' }));
    await s.waitForRequests(2);
    expect(s.requests.every((r) => (JSON.parse(r.body) as { hang?: boolean }).hang)).toBe(true); // both permits held by 'stuck'
    controller.abort(new Error('gone'));
    input.complete();
    await done;
    expect(outputs.map((e) => [e.id, e.error?.message ?? e.body])).toEqual([
      ['stuck', 'gone'],
      ['next', [{ n: 5 }, { n: 6 }, { n: 7 }]],
    ]);
    await s.waitForAborted(2);
    expect(s.requests).toHaveLength(5); // the third 'stuck' item was never sent
  });
});
