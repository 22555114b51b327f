// remoteStep against real loopback HTTP servers (node:http): request rules, retries, Retry-After,
// timeouts, aborts, bounds, hostile answers and paths, and end to end through serve().
import { firstValueFrom, from, lastValueFrom, Subject, toArray, type OperatorFunction } from 'rxjs';
import { describe, expect, it } from 'vitest';
import { json, serversPerTest, type Handler, type TestServer } from '../../test/support/httpServer.js';
import {
  ConfigError,
  ModelTimeoutError,
  QueueFullError,
  RemoteStepError,
  invoker,
  remoteStep,
  serve,
  step,
  toEvent,
  withError,
  type ServingEvent,
} from '../index.js';

const server = serversPerTest();

const run = (events: ServingEvent[], op: OperatorFunction<ServingEvent, ServingEvent>) => lastValueFrom(from(events).pipe(op, toArray()));
const echo: Handler = (req, res) =>
  json(res, 200, { method: req.method, url: req.url, body: req.body === '' ? null : (JSON.parse(req.body) as unknown) });
const fast = { baseDelayMs: 1, maxDelayMs: 5 };

describe('remoteStep: the request', () => {
  it('POSTs the body as JSON to url + subpath, x-request-id = the event id, answer at resultPath', async () => {
    const s = await server(echo);
    const [out] = await run(
      [toEvent({ features: [1, 2], keep: true }, { id: 'ev-1' })],
      remoteStep({ url: `${s.url}/api/`, subpath: '/score', inputPath: 'features', resultPath: 'answer', headers: { 'X-Tenant': 'acme' } }),
    );
    expect(out.error).toBeUndefined();
    expect(out.body).toEqual({ features: [1, 2], keep: true, answer: { method: 'POST', url: '/api/score', body: [1, 2] } });
    const [req] = s.requests;
    expect(req.headers['x-request-id']).toBe('ev-1');
    expect(req.headers['content-type']).toBe('application/json');
    expect(req.headers['x-tenant']).toBe('acme');
  });

  it("'$path' appends the event's path (the url's query string kept); without resultPath the answer is the body", async () => {
    const s = await server(echo);
    const [a, b] = await run(
      [toEvent({ n: 1 }, { path: '/v2/models/m1/infer' }), toEvent({ n: 2 })],
      remoteStep({ url: `${s.url}/base?key=k`, subpath: '$path' }),
    );
    expect((a.body as { url: string }).url).toBe('/base/v2/models/m1/infer?key=k');
    expect((b.body as { url: string }).url).toBe('/base?key=k');
  });

  it('a hostile event path (dot segments, encoded ones, encoded slashes, odd characters) fails the event; nothing is sent', async () => {
    const s = await server(echo);
    const paths = ['/../admin', '/a/%2e%2E/admin', '/a%2fb', '/a b', '/a\\..\\b', '/%zz'];
    const out = await run(
      paths.map((path) => toEvent({}, { path })),
      remoteStep({ url: `${s.url}/svc`, subpath: '$path', name: 'fwd' }),
    );
    for (const event of out) {
      expect(event.error).toBeInstanceOf(TypeError);
      expect(event.error!.message).toMatch(/remote step 'fwd': the event's path .* cannot be appended/);
      expect(event.origin).toBe('fwd');
    }
    expect(s.requests).toHaveLength(0);
  });

  it("method: the option, else the event's method, else POST; GET and HEAD send no body", async () => {
    const s = await server((req, res) =>
      json(res, 200, { method: req.method, body: req.body, length: req.headers['content-length'] ?? null }),
    );
    const events = [toEvent({ a: 1 }), toEvent({ a: 2 }, { method: 'put' }), toEvent({ a: 3 }, { method: 'GET' })];
    const byEvent = await run(events, remoteStep({ url: s.url }));
    expect(byEvent.map((e) => e.body)).toEqual([
      { method: 'POST', body: '{"a":1}', length: '7' },
      { method: 'PUT', body: '{"a":2}', length: '7' },
      { method: 'GET', body: '', length: null },
    ]);
    const byOption = await run(events, remoteStep({ url: s.url, method: 'get' }));
    expect(byOption.map((e) => (e.body as { method: string }).method)).toEqual(['GET', 'GET', 'GET']);
    expect(byOption.every((e) => (e.body as { body: string }).body === '')).toBe(true);
  });

  it('urlExpression wins over url; bodyExpression builds the body; strings are sent as text', async () => {
    const s = await server((req, res) => json(res, 200, { url: req.url, body: req.body, type: req.headers['content-type'] }));
    const [out] = await run(
      [toEvent({ user: 'ann', text: 'hello' })],
      remoteStep({
        url: 'http://127.0.0.1:9/never',
        urlExpression: (e) => `${s.url}/users/${(e.body as { user: string }).user}`,
        bodyExpression: (e) => (e.body as { text: string }).text,
      }),
    );
    expect(out.body).toEqual({ url: '/users/ann', body: 'hello', type: 'text/plain; charset=utf-8' });
  });

  it('a urlExpression that returns no http(s) URL, or that throws, fails that event only', async () => {
    const s = await server(echo);
    const out = await run(
      [toEvent({ u: 'file:///etc/passwd' }), toEvent({ u: 'boom' }), toEvent({ u: `${s.url}/ok` })],
      remoteStep({
        urlExpression: (e) => {
          const u = (e.body as { u: string }).u;
          if (u === 'boom') throw new RangeError('no url for you');
          return u;
        },
      }),
    );
    expect(out[0].error?.message).toMatch(/urlExpression returned "file:\/\/\/etc\/passwd", not an 'http:\/\/' or 'https:\/\/' URL/);
    expect(out[1].error).toBeInstanceOf(RangeError);
    expect(out[2].body).toEqual({ method: 'POST', url: '/ok', body: { u: `${s.url}/ok` } });
    expect(s.requests).toHaveLength(1);
  });

  it('a missing inputPath, or a body JSON cannot carry, fails the event before sending', async () => {
    const s = await server(echo);
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    const out = await run([toEvent({ other: 1 }), toEvent({ x: cyclic })], remoteStep({ url: s.url, inputPath: 'x' }));
    expect(out[0].error?.message).toMatch(/inputPath 'x' is not in the body/);
    expect(out[1].error?.message).toMatch(/cannot be sent as JSON/);
    expect(s.requests).toHaveLength(0);
  });

  it('errored events pass untouched, nothing sent', async () => {
    const s = await server(echo);
    const failed = withError(toEvent({ a: 1 }), new Error('earlier'), 'before');
    const [out] = await run([failed], remoteStep({ url: s.url }));
    expect(out).toBe(failed);
    expect(s.requests).toHaveLength(0);
  });
});

describe('remoteStep: the answer', () => {
  it('returnJson false gives text, unless the answer says it is JSON; an empty JSON answer is null', async () => {
    const s = await server((req, res) => {
      if (req.url === '/text') return void res.end('plain words');
      if (req.url === '/json') return json(res, 200, { ok: 1 });
      res.writeHead(204).end();
    });
    const text = await run([toEvent({})], remoteStep({ url: `${s.url}/text`, returnJson: false }));
    const typed = await run([toEvent({})], remoteStep({ url: `${s.url}/json`, returnJson: false }));
    const empty = await run([toEvent({})], remoteStep({ url: `${s.url}/none` }));
    expect(text[0].body).toBe('plain words');
    expect(typed[0].body).toEqual({ ok: 1 });
    expect(empty[0].body).toBeNull();
  });

  it('an answer that is not JSON fails the event with RemoteStepError (status, first 200 bytes), not retried', async () => {
    const s = await server((_req, res) => res.end(`<html>${'x'.repeat(500)}</html>`));
    const [out] = await run([toEvent({})], remoteStep({ url: s.url, backoff: fast }));
    const error = out.error as RemoteStepError;
    expect(error).toBeInstanceOf(RemoteStepError);
    expect(error.status).toBe(200);
    expect(error.answer).toBe(`<html>${'x'.repeat(194)}`);
    expect(error.message).toMatch(/is not JSON/);
    expect(s.requests).toHaveLength(1);
  });

  it('a JSON answer with __proto__ or constructor.prototype keys is refused, as a request body would be', async () => {
    const s = await server((req, res) => {
      res.setHeader('content-type', 'application/json');
      res.end(req.url === '/a' ? '{"ok":{"__proto__":{"admin":true}}}' : '{"constructor":{"prototype":{"x":1}}}');
    });
    const out = await run(
      [toEvent({}), toEvent({})].map((e, i) => toEvent(e.body, { path: i === 0 ? '/a' : '/b' })),
      remoteStep({ url: s.url, subpath: '$path' }),
    );
    expect(out[0].error?.message).toMatch(/was refused: answer has a '__proto__' key/);
    expect(out[1].error?.message).toMatch(/was refused: answer has a 'constructor.prototype' key/);
    expect(({} as Record<string, unknown>).admin).toBeUndefined();
  });

  it('an answer over maxAnswerBytes fails the event and is not retried', async () => {
    const s = await server((_req, res) => json(res, 200, { big: 'y'.repeat(10_000) }));
    const [out] = await run([toEvent({})], remoteStep({ url: s.url, maxAnswerBytes: 1_000, backoff: fast }));
    expect(out.error).toBeInstanceOf(RemoteStepError);
    expect(out.error!.message).toMatch(/over maxAnswerBytes \(1000\)/);
    expect(s.requests).toHaveLength(1);
  });
});

describe('remoteStep: redirects', () => {
  it('307 repeats the request at the new place; 303 after a POST becomes a GET without a body', async () => {
    const s = await server((req, res) => {
      if (req.url === '/old') return void res.writeHead(307, { location: '/new' }).end();
      if (req.url === '/done') return void res.writeHead(303, { location: `${s.url}/result?x=1` }).end();
      json(res, 200, { method: req.method, url: req.url, body: req.body, id: req.headers['x-request-id'] });
    });
    const [a] = await run([toEvent({ n: 1 }, { id: 'r7' })], remoteStep({ url: `${s.url}/old` }));
    expect(a.body).toEqual({ method: 'POST', url: '/new', body: '{"n":1}', id: 'r7' });
    const [b] = await run([toEvent({ n: 2 }, { id: 'r3' })], remoteStep({ url: `${s.url}/done` }));
    expect(b.body).toEqual({ method: 'GET', url: '/result?x=1', body: '', id: 'r3' });
  });

  it('to another origin, credentials are dropped and the other headers kept', async () => {
    const other = await server((req, res) =>
      json(res, 200, {
        auth: req.headers.authorization ?? null,
        cookie: req.headers.cookie ?? null,
        tenant: req.headers['x-tenant'],
        id: req.headers['x-request-id'],
      }),
    );
    const s = await server((req, res) => json(res, 200, { sameOriginAuth: req.headers.authorization }));
    const first = await server((req, res) => res.writeHead(302, { location: req.url === '/same' ? `${s.url}/x` : `${other.url}/y` }).end());
    const headers = { authorization: 'Bearer secret', cookie: 'a=b', 'x-tenant': 'acme' };
    const [out] = await run([toEvent({}, { id: 'c1' })], remoteStep({ url: first.url, method: 'GET', headers }));
    expect(out.body).toEqual({ auth: null, cookie: null, tenant: 'acme', id: 'c1' });
    expect(other.requests).toHaveLength(1);
  });

  it('more than 5 redirects, or one to a non-http URL, fail the event without a retry', async () => {
    const loop = await server((req, res) => res.writeHead(302, { location: req.url === '/bad' ? 'ftp://x/y' : '/again' }).end());
    const [out] = await run([toEvent({})], remoteStep({ url: loop.url, backoff: fast }));
    expect(out.error).toBeInstanceOf(RemoteStepError);
    expect(out.error!.message).toMatch(/more than 5 redirects/);
    expect(loop.requests).toHaveLength(6);
    const [bad] = await run([toEvent({})], remoteStep({ url: `${loop.url}/bad`, backoff: fast }));
    expect(bad.error!.message).toMatch(/was redirected to "ftp:\/\/x\/y", not an http\(s\) URL/);
  });
});

describe('remoteStep: retries', () => {
  it('retries 5xx, 408 and 429 until an answer comes', async () => {
    const statuses = [503, 408, 429, 500];
    const s = await server((_req, res, n) =>
      n <= statuses.length ? json(res, statuses[n - 1], { busy: true }) : json(res, 200, { ok: n }),
    );
    const [out] = await run([toEvent({ q: 1 }, { id: 'r1' })], remoteStep({ url: s.url, backoff: fast }));
    expect(out.body).toEqual({ ok: 5 });
    expect(s.requests.map((r) => r.headers['x-request-id'])).toEqual(['r1', 'r1', 'r1', 'r1', 'r1']);
    expect(s.requests.every((r) => r.body === '{"q":1}')).toBe(true);
  });

  it('gives up after `retries` (default 6: 7 attempts): RemoteStepError with the status, attempts and the first 200 bytes', async () => {
    const s = await server((_req, res) => {
      res.writeHead(502, { 'content-type': 'text/plain' });
      res.end(`bad gateway ${'z'.repeat(1_000)}`);
    });
    const [out] = await run([toEvent({})], remoteStep({ url: `${s.url}/x`, backoff: fast, name: 'scorer' }));
    const error = out.error as RemoteStepError;
    expect(error).toBeInstanceOf(RemoteStepError);
    expect(error.name).toBe('RemoteStepError');
    expect(error.status).toBe(502);
    expect(error.attempts).toBe(7);
    expect(error.answer).toBe(`bad gateway ${'z'.repeat(188)}`);
    expect(error.url).toBe(`${s.url}/x`);
    expect(error.message).toMatch(new RegExp(`^remote step 'scorer': HTTP 502 from POST ${s.url}/x after 7 attempts: bad gateway z+$`));
    expect(out.origin).toBe('scorer');
    expect(s.requests).toHaveLength(7);
  });

  it('does not retry other 4xx', async () => {
    for (const status of [400, 401, 404, 409, 422]) {
      const s = await server((_req, res) => json(res, status, { error: 'no' }));
      const [out] = await run([toEvent({})], remoteStep({ url: s.url, backoff: fast }));
      expect((out.error as RemoteStepError).status).toBe(status);
      expect((out.error as RemoteStepError).attempts).toBe(1);
      expect(s.requests).toHaveLength(1);
    }
  });

  it('backoff doubles between attempts (with up to 25% jitter) and stops at maxDelayMs', async () => {
    const s = await server((_req, res) => json(res, 503, {}));
    await run([toEvent({})], remoteStep({ url: s.url, retries: 4, backoff: { baseDelayMs: 40, maxDelayMs: 100 } }));
    const gaps = s.requests.slice(1).map((r, i) => r.at - s.requests[i].at);
    // 40, 80, 100 (capped), 100, each less up to 25%, plus a round trip.
    expect(gaps[0]).toBeGreaterThanOrEqual(29);
    expect(gaps[1]).toBeGreaterThanOrEqual(59);
    expect(gaps[2]).toBeGreaterThanOrEqual(74);
    expect(gaps[3]).toBeGreaterThanOrEqual(74);
    expect(gaps[3]).toBeLessThan(160);
  });

  it('honours Retry-After (seconds) over its own backoff', async () => {
    const s = await server((_req, res, n) =>
      n === 1 ? json(res, 429, { slow: 'down' }, { 'retry-after': '1' }) : json(res, 200, { ok: true }),
    );
    const [out] = await run([toEvent({})], remoteStep({ url: s.url, backoff: fast }));
    expect(out.body).toEqual({ ok: true });
    expect(s.requests[1].at - s.requests[0].at).toBeGreaterThanOrEqual(950);
  });

  it('a Retry-After longer than the time left fails at once with the answer (not a timeout)', async () => {
    const s = await server((_req, res) => json(res, 503, { maintenance: true }, { 'retry-after': '30' }));
    const started = performance.now();
    const [out] = await run([toEvent({})], remoteStep({ url: s.url, timeoutMs: 2_000 }));
    expect(performance.now() - started).toBeLessThan(1_000);
    const error = out.error as RemoteStepError;
    expect(error).toBeInstanceOf(RemoteStepError);
    expect(error.status).toBe(503);
    expect(error.message).toMatch(/no retry: waiting 30000 ms would pass timeoutMs 2000/);
    expect(s.requests).toHaveLength(1);
  });

  it('a network error (nothing listening) is retried, then fails with status undefined and the cause', async () => {
    const s = await server(echo);
    const url = s.url;
    await s.close();
    const [out] = await run([toEvent({})], remoteStep({ url, retries: 2, backoff: fast }));
    const error = out.error as RemoteStepError;
    expect(error).toBeInstanceOf(RemoteStepError);
    expect(error.status).toBeUndefined();
    expect(error.attempts).toBe(3);
    expect(error.answer).toBe('');
    expect(error.message).toMatch(/ECONNREFUSED/);
    expect((error.cause as { code?: string }).code).toBe('ECONNREFUSED');
  });

  it('a connection cut before the answer is retried, and the retry answers', async () => {
    const s = await server((_req, res, n) => (n === 1 ? res.socket!.destroy() : json(res, 200, { second: true })));
    const [out] = await run([toEvent({})], remoteStep({ url: s.url, backoff: fast }));
    expect(out.body).toEqual({ second: true });
    expect(s.requests).toHaveLength(2);
  });
});

describe('remoteStep: timeouts, cancellation, bounds, connections', () => {
  const hang: Handler = () => undefined; // never answers

  it('timeoutMs: ModelTimeoutError, and the request is aborted at the server', async () => {
    const s = await server(hang);
    const started = performance.now();
    const [out] = await run([toEvent({})], remoteStep({ url: s.url, timeoutMs: 150, name: 'slow' }));
    expect(out.error).toBeInstanceOf(ModelTimeoutError);
    expect(out.error!.message).toMatch(/'slow' timed out after 150 ms/);
    expect(performance.now() - started).toBeLessThan(1_500);
    await s.waitForAborted(1);
    expect(s.inFlight).toBe(0);
  });

  it("the event's signal aborts its request; the step goes on with the next events", async () => {
    const s = await server((req, res) => ((JSON.parse(req.body) as { hang?: boolean }).hang ? undefined : json(res, 200, { ok: true })));
    const controller = new AbortController();
    const input = new Subject<ServingEvent>();
    const outputs: ServingEvent[] = [];
    const done = new Promise<void>((resolve) =>
      input.pipe(remoteStep({ url: s.url, maxInFlight: 1 })).subscribe({ next: (e) => outputs.push(e), complete: resolve }),
    );
    input.next(toEvent({ hang: true }, { id: 'a', signal: controller.signal }));
    input.next(toEvent({ hang: false }, { id: 'b' }));
    await s.waitForRequests(1);
    controller.abort(new Error('client went away'));
    input.complete();
    await done;
    expect(outputs.map((e) => [e.id, e.error?.message ?? e.body])).toEqual([
      ['a', 'client went away'],
      ['b', { ok: true }],
    ]);
    await s.waitForAborted(1);
  });

  it('unsubscribing aborts every request in flight and closes the connections', async () => {
    const s = await server(hang);
    const input = new Subject<ServingEvent>();
    const subscription = input.pipe(remoteStep({ url: s.url })).subscribe();
    for (let i = 0; i < 5; i++) input.next(toEvent({ i }));
    await s.waitForRequests(5);
    subscription.unsubscribe();
    await s.waitForAborted(5);
    for (let i = 0; s.openSockets > 0 && i < 200; i++) await new Promise((r) => setTimeout(r, 10));
    expect(s.openSockets).toBe(0);
  });

  it('never more than maxInFlight requests at the server; all answered, in order', async () => {
    const s = await server((req, res) => setTimeout(() => json(res, 200, JSON.parse(req.body)), 20));
    const events = Array.from({ length: 30 }, (_, i) => toEvent({ i }));
    const out = await run(events, remoteStep({ url: s.url, maxInFlight: 4 }));
    expect(out.map((e) => (e.body as { i: number }).i)).toEqual(events.map((_, i) => i));
    expect(s.maxInFlight).toBe(4);
    expect(s.sockets).toBeLessThanOrEqual(4); // keep-alive: connections reused
  });

  it('over maxInFlight + maxQueue, an event leaves at once with QueueFullError', async () => {
    const s = await server((req, res) => setTimeout(() => json(res, 200, JSON.parse(req.body)), 20));
    const out = await run(
      [1, 2, 3].map((i) => toEvent({ i })),
      remoteStep({ url: s.url, maxInFlight: 1, maxQueue: 1, name: 'r' }),
    );
    expect(out.map((e) => e.error?.name ?? (e.body as { i: number }).i)).toEqual(['QueueFullError', 1, 2]);
    expect(out[0].error).toBeInstanceOf(QueueFullError);
    expect(s.requests).toHaveLength(2);
  });

  it('one Agent per subscription: each has its own connections, closed when it completes', async () => {
    const s = await server(echo);
    const op = remoteStep({ url: s.url, maxInFlight: 2 });
    await run([toEvent({ a: 1 }), toEvent({ a: 2 }), toEvent({ a: 3 })], op);
    const afterFirst = s.sockets;
    await run([toEvent({ a: 4 })], op);
    expect(afterFirst).toBeLessThanOrEqual(2);
    expect(s.sockets).toBe(afterFirst + 1); // the second subscription did not reuse the first one's
    for (let i = 0; s.openSockets > 0 && i < 200; i++) await new Promise((r) => setTimeout(r, 10));
    expect(s.openSockets).toBe(0);
  });
});

describe('remoteStep: the stream', () => {
  it('an empty source completes; a source error reaches the subscriber and aborts the requests in flight', async () => {
    const s = await server(() => undefined);
    expect(await run([], remoteStep({ url: s.url }))).toEqual([]);
    const input = new Subject<ServingEvent>();
    const failed = new Promise<unknown>((resolve) => input.pipe(remoteStep({ url: s.url })).subscribe({ error: resolve }));
    input.next(toEvent({ a: 1 }));
    await s.waitForRequests(1);
    input.error(new Error('source broke'));
    expect(((await failed) as Error).message).toBe('source broke');
    await s.waitForAborted(1);
  });

  it('a value that is not an event errors the stream with a TypeError saying what to pipe first', async () => {
    const s = await server(echo);
    await expect(lastValueFrom(from([{ plain: true }] as never[]).pipe(remoteStep({ url: s.url, name: 'r' })))).rejects.toThrow(
      /remoteStep 'r' received a plain object, not a ServingEvent: pipe asEvents\(\) first/,
    );
  });
});

describe('remoteStep: options', () => {
  it('bad options are ConfigErrors naming the field', () => {
    const bad: [unknown, RegExp][] = [
      [{}, /remoteStep\.options\.url: is required/],
      [{ url: 'ftp://x' }, /remoteStep\.options\.url: expected an 'http:\/\/' or 'https:\/\/' URL/],
      [{ url: 'http://x', retries: -1 }, /remoteStep\.options\.retries/],
      [{ url: 'http://x', headers: { a: 'b\r\nc: d' } }, /remoteStep\.options\.headers/],
      [{ url: 'http://x', method: 'GET /' }, /remoteStep\.options\.method/],
      [{ urlExpression: () => 'http://x', subpath: '/a' }, /remoteStep\.options\.subpath: applies to 'url' only/],
      [{ url: 'http://x', timeoutMs: 0 }, /remoteStep\.options\.timeoutMs/],
      [{ url: 'http://x', backoff: { baseDelayMs: -1 } }, /remoteStep\.options\.backoff\.baseDelayMs/],
      [{ url: 'http://x', retrys: 2 }, /unknown field 'retrys'/],
    ];
    for (const [options, message] of bad) {
      expect(() => remoteStep(options as never), JSON.stringify(options)).toThrow(ConfigError);
      expect(() => remoteStep(options as never)).toThrow(message);
    }
  });
});

describe('remoteStep behind serve()', () => {
  it("a client's request reaches the remote service with its x-request-id and path; the answer comes back", async () => {
    const s = await server((req, res) =>
      json(res, 200, { echoed: JSON.parse(req.body) as unknown, url: req.url, id: req.headers['x-request-id'] }),
    );
    const front = await serve(pipeline(s), { port: 0 });
    try {
      const res = await fetch(`${front.url}/score/it`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-request-id': 'req-42' },
        body: JSON.stringify({ user: 'ann' }),
      });
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({
        user: 'ann',
        tagged: true,
        remote: { echoed: { user: 'ann', tagged: true }, url: '/svc/score/it', id: 'req-42' },
      });
      expect(s.requests[0].method).toBe('POST');
    } finally {
      await front.close();
    }
  });

  function pipeline(s: TestServer): OperatorFunction<ServingEvent, ServingEvent> {
    return (source) =>
      source.pipe(
        step((body: Record<string, unknown>) => ({ ...body, tagged: true })),
        remoteStep({ url: `${s.url}/svc`, subpath: '$path', resultPath: 'remote' }),
      );
  }

  it('a failed remote call is the HTTP answer: 400 with the RemoteStepError', async () => {
    const s = await server((_req, res) => json(res, 404, { error: 'no such user' }));
    const front = await serve(remoteStep({ url: s.url }), { port: 0 });
    try {
      const res = await fetch(`${front.url}/x`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
      expect(res.status).toBe(400);
      expect(await res.json()).toEqual({
        error: expect.stringMatching(
          /^RemoteStepError: remote step 'remote_step': HTTP 404 from POST .*: \{"error":"no such user"\}$/,
        ) as unknown,
      });
    } finally {
      await front.close();
    }
  });

  it("invoker(): the request's method becomes the event's, and remoteStep sends with it", async () => {
    const s = await server((req, res) => json(res, 200, { method: req.method, body: req.body }));
    const client = invoker(remoteStep({ url: s.url }));
    try {
      expect(await client.test({ a: 1 }, { method: 'GET' })).toEqual({ method: 'GET', body: '' });
      expect(await client.test({ a: 1 }, { method: 'DELETE' })).toEqual({ method: 'DELETE', body: '{"a":1}' });
      expect(await client.test({ a: 1 })).toEqual({ method: 'POST', body: '{"a":1}' });
    } finally {
      await client.close();
    }
  });

  it('first value only: a synchronous subscriber gets the answer', async () => {
    const s = await server(echo);
    const out = await firstValueFrom(from([toEvent({ z: 1 })]).pipe(remoteStep({ url: s.url })));
    expect(out.body).toEqual({ method: 'POST', url: '/', body: { z: 1 } });
  });
});
