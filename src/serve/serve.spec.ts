// serve() and rxservePlugin over real HTTP on loopback (port 0): statuses, bad input, health,
// /v2/models, API keys, overload, timeouts, disconnects, graceful close.
import { Agent, request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import Fastify from 'fastify';
import { map, pipe, type OperatorFunction } from 'rxjs';
import { afterEach, describe, expect, it } from 'vitest';
import { until } from '../../test/support/until.js';
import {
  ConfigError,
  createGraph,
  Model,
  ModelTimeoutError,
  QueueFullError,
  RouteNotFoundError,
  rxservePlugin,
  serve,
  step,
  v2ModelName,
  type Graph,
  type ModelEntry,
  type PredictContext,
  type Server,
  type ServingEvent,
} from '../index.js';

/** What the test models did, read by the tests. */
const probe = { started: 0, finished: 0, aborted: [] as string[], closed: 0, seen: [] as ServingEvent[], order: [] as string[] };

type Body = { tag: string; ms?: number };

/** Answers `{ tag, by }` after `body.ms`; its call rejects when its signal aborts. */
class Sleepy extends Model<Body, { tag: string; by: string }> {
  override predict(body: Body, ctx: PredictContext): Promise<{ tag: string; by: string }> {
    probe.started++;
    // Cancelled before the call ran (a client gone before its request started): no work at all.
    if (ctx.signal.aborted) {
      probe.aborted.push(ctx.eventId);
      return Promise.reject(ctx.signal.reason as Error);
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        probe.finished++;
        resolve({ tag: body.tag, by: this.name });
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
    probe.order.push('model closed');
  }
}

const entry = (endpointName: string, extra: Partial<ModelEntry> = {}): ModelEntry => ({
  endpointName,
  modelClass: Sleepy,
  executionMechanism: 'asyncio',
  ...extra,
});

/** A graph with one Sleepy model, every event recorded in probe.seen on its way in. */
function sleepyPipeline(options: { maxInFlight?: number; maxQueue?: number } = {}): {
  graph: Graph;
  pipeline: OperatorFunction<ServingEvent, ServingEvent>;
} {
  const graph = createGraph({ name: 'test' });
  const runner = graph.modelRunner({
    name: 'runner',
    models: [entry('sleepy', { inputs: ['tag', 'ms'], outputs: ['tag'] })],
    ordered: false,
    ...options,
  });
  return {
    graph,
    pipeline: pipe(
      map((e: ServingEvent) => (probe.seen.push(e), e)),
      runner,
    ),
  };
}

let servers: Server[] = [];
const start = async (...args: Parameters<typeof serve>): Promise<Server> => {
  const server = await serve(args[0], { port: 0, ...args[1] });
  servers.push(server);
  return server;
};

afterEach(async () => {
  await Promise.all(servers.map((s) => s.close()));
  servers = [];
  Object.assign(probe, { started: 0, finished: 0, aborted: [], closed: 0, seen: [], order: [] });
});

/** The fields of a JSON answer the assertions read one by one (the rest is compared whole). */
interface JsonAnswer {
  readonly error?: string;
  readonly tag?: string;
  readonly inputs?: unknown;
  readonly models?: unknown;
  readonly id?: string;
}

interface Answer {
  status: number;
  headers: Headers;
  json: JsonAnswer;
}

async function call(
  url: string,
  init: {
    method?: string;
    body?: unknown;
    raw?: string;
    contentType?: string;
    headers?: Record<string, string>;
    signal?: AbortSignal;
  } = {},
): Promise<Answer> {
  const body = init.raw ?? (init.body === undefined ? undefined : JSON.stringify(init.body));
  const headers: Record<string, string> = { ...init.headers };
  if (body !== undefined) headers['content-type'] = init.contentType ?? 'application/json';
  const response = await fetch(url, { method: init.method ?? (body === undefined ? 'GET' : 'POST'), headers, body, signal: init.signal });
  const text = await response.text();
  return { status: response.status, headers: response.headers, json: (text ? JSON.parse(text) : undefined) as JsonAnswer };
}

describe('serve(): POST', () => {
  it('answers 200 with the output body; the event has the path, lower-case headers and the x-request-id, echoed', async () => {
    const { graph, pipeline } = sleepyPipeline();
    const server = await start(pipeline, { graph });
    expect(server.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const a = await call(`${server.url}/score/now?verbose=1`, {
      body: { tag: 'a' },
      headers: { 'X-Request-Id': 'req-1', 'X-Custom': 'Yes' },
    });
    expect(a.status).toBe(200);
    expect(a.headers.get('content-type')).toBe('application/json; charset=utf-8');
    expect(a.json).toEqual({ tag: 'a', by: 'sleepy' });
    expect(a.headers.get('x-request-id')).toBe('req-1');
    const seen = probe.seen[0];
    expect(seen.id).toBe('req-1');
    expect(seen.path).toBe('/score/now');
    expect(seen.headers?.['x-custom']).toBe('Yes');
    expect(seen.body).toEqual({ tag: 'a' });
    // without the header: a new id, echoed
    const b = await call(`${server.url}/`, { body: { tag: 'b' } });
    expect(b.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
    expect(probe.seen[1].id).toBe(b.headers.get('x-request-id'));
  });

  it('sends any JSON answer as JSON (strings, numbers, null)', async () => {
    const server = await start(step((b: { v: unknown }) => b.v));
    for (const v of ['text', 3, null, [1, 'x'], false]) {
      const a = await call(server.url, { body: { v } });
      expect(a.status).toBe(200);
      expect(a.json).toEqual(v);
    }
  });

  it('maps every errored answer to its status with { error: "<Name>: <message>" }', async () => {
    const failing = step(
      (b: { kind: string }) => {
        switch (b.kind) {
          case 'route':
            throw new RouteNotFoundError('x', ['a'], 'r');
          case 'queue':
            throw new QueueFullError('s', 1, 0);
          case 'timeout':
            throw new ModelTimeoutError('m', 5);
          case 'config':
            throw new ConfigError([{ path: 'p', expected: 'q' }]);
          case 'type':
            throw new TypeError('bad input');
          default:
            return b;
        }
      },
      { name: 'failing' },
    );
    const server = await start(failing);
    const expected: [string, number, string][] = [
      ['route', 404, `RouteNotFoundError: ${new RouteNotFoundError('x', ['a'], 'r').message}`],
      ['queue', 503, `QueueFullError: ${new QueueFullError('s', 1, 0).message}`],
      ['timeout', 504, `ModelTimeoutError: ${new ModelTimeoutError('m', 5).message}`],
      ['config', 500, 'ConfigError: p: expected q'],
      ['type', 400, 'TypeError: bad input'],
    ];
    for (const [kind, status, error] of expected) {
      const a = await call(server.url, { body: { kind } });
      expect([kind, a.status, a.json]).toEqual([kind, status, { error }]);
      expect(a.headers.get('retry-after')).toBe(status === 503 ? '1' : null);
    }
  });

  it('a ModelRunnerError is 400 whatever its models failed with (a model timeout included)', async () => {
    const graph = createGraph();
    const server = await start(graph.modelRunner({ models: [entry('slow', { timeoutMs: 20 })] }), { graph });
    const a = await call(server.url, { body: { tag: 'a', ms: 1_000 } });
    expect(a.status).toBe(400);
    expect(a.json.error).toMatch(/^ModelRunnerError: step 'model_runner': slow failed \(ModelTimeoutError: /);
  });

  it('a full step answers 503 with Retry-After: 1 (maxInFlight 1, maxQueue 1)', async () => {
    const { graph, pipeline } = sleepyPipeline({ maxInFlight: 1, maxQueue: 1 });
    const server = await start(pipeline, { graph });
    const first = call(server.url, { body: { tag: 'a', ms: 300 } });
    await until(() => probe.started === 1);
    const second = call(server.url, { body: { tag: 'b' } });
    await until(() => probe.seen.length === 2);
    const third = await call(server.url, { body: { tag: 'c' } });
    expect(third.status).toBe(503);
    expect(third.headers.get('retry-after')).toBe('1');
    expect(third.json.error).toBe(`QueueFullError: ${new QueueFullError('runner', 1, 1).message}`);
    expect((await first).json).toEqual({ tag: 'a', by: 'sleepy' });
    expect((await second).json).toEqual({ tag: 'b', by: 'sleepy' });
  });

  it('no answer within timeoutMs → 504 with ModelTimeoutError; an event the pipeline drops as well', async () => {
    const { graph, pipeline } = sleepyPipeline();
    const server = await start(pipeline, { graph, timeoutMs: 50 });
    const a = await call(server.url, { body: { tag: 'a', ms: 5_000 }, headers: { 'x-request-id': 'slow-1' } });
    expect(a.status).toBe(504);
    expect(a.json).toEqual({ error: "ModelTimeoutError: no answer for event 'slow-1' within 50 ms; its work was aborted" });
    // answers under another id: nobody's answer
    const dropping = await start(
      map((e: ServingEvent) => ({ ...e, id: `other-${e.id}` })),
      { timeoutMs: 30 },
    );
    expect((await call(dropping.url, { body: {} })).status).toBe(504);
    expect(server.inFlight).toBe(0);
    expect(dropping.inFlight).toBe(0);
  });

  it('two requests with the same x-request-id in flight: the second gets 409', async () => {
    const { graph, pipeline } = sleepyPipeline();
    const server = await start(pipeline, { graph });
    const first = call(server.url, { body: { tag: 'a', ms: 200 }, headers: { 'x-request-id': 'dup' } });
    await until(() => probe.started === 1);
    const second = await call(server.url, { body: { tag: 'b' }, headers: { 'x-request-id': 'dup' } });
    expect(second.status).toBe(409);
    expect(second.json.error).toBe("RxServeError: request id 'dup' is already in flight; ids of concurrent requests must differ");
    // The same refusal on the event-stream route: refused before any partial, so a 409 reply, not a stream.
    const streamed = await fetch(server.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/event-stream', 'x-request-id': 'dup' },
      body: JSON.stringify({ tag: 'c' }),
    });
    expect(streamed.status).toBe(409);
    expect(streamed.headers.get('content-type')).toMatch(/^application\/json/);
    expect(((await streamed.json()) as { error: string }).error).toMatch(/already in flight/);
    expect((await first).status).toBe(200);
  });
});

describe('serve(): bad requests never reach the pipeline and do not disturb others', () => {
  const bad: [string, { raw?: string; contentType?: string; body?: unknown }, number, string | RegExp][] = [
    ['malformed JSON', { raw: '{"tag": "a",' }, 400, /^SyntaxError: the request body is not valid JSON \(/],
    [
      'a __proto__ key',
      { raw: '{"tag":"a","__proto__":{"admin":true}}' },
      400,
      "SyntaxError: the request body has a '__proto__' key (at body.__proto__); refused (prototype poisoning)",
    ],
    ['a nested, escaped __proto__ key', { raw: '{"a":{"\\u005f_proto__":{"admin":true}}}' }, 400, /prototype poisoning/],
    ['a constructor.prototype key', { raw: '{"constructor":{"prototype":{"admin":true}}}' }, 400, /prototype poisoning/],
    [
      'a body over maxBodyBytes',
      { body: { tag: 'x'.repeat(2_000) } },
      413,
      'PayloadTooLargeError: the request body is larger than the limit of 1024 bytes',
    ],
    [
      'text/plain',
      { raw: 'hello', contentType: 'text/plain' },
      415,
      "UnsupportedMediaTypeError: content type 'text/plain' is not JSON; send 'Content-Type: application/json'",
    ],
    [
      'a form',
      { raw: 'a=1', contentType: 'application/x-www-form-urlencoded' },
      415,
      /^UnsupportedMediaTypeError: content type 'application\/x-www-form-urlencoded' is not JSON/,
    ],
    [
      'an empty JSON body',
      { raw: '' },
      400,
      "SyntaxError: the request body is empty; send a JSON value with 'Content-Type: application/json'",
    ],
  ];

  it.each(bad)('%s', async (_name, init, status, error) => {
    const { graph, pipeline } = sleepyPipeline();
    const server = await start(pipeline, { graph, maxBodyBytes: 1024 });
    // good requests in flight while the bad one is refused
    const good = ['g1', 'g2', 'g3', 'g4'].map((tag) => call(server.url, { body: { tag, ms: 100 } }));
    await until(() => probe.started === 4);
    const a = await call(`${server.url}/score`, { ...init, headers: { 'x-request-id': 'bad-1' } });
    expect(a.status).toBe(status);
    expect(a.headers.get('x-request-id')).toBe('bad-1');
    if (typeof error === 'string') expect(a.json).toEqual({ error });
    else expect(a.json.error).toMatch(error);
    expect((await Promise.all(good)).map((g) => [g.status, g.json.tag])).toEqual([
      [200, 'g1'],
      [200, 'g2'],
      [200, 'g3'],
      [200, 'g4'],
    ]);
    expect(probe.seen.map((e) => e.id)).not.toContain('bad-1');
    expect(probe.seen).toHaveLength(4);
  });

  // The parser skips the key and depth walk for a text that cannot fail it (shorter than
  // 2 × (maxBodyDepth + 1) characters, no '__proto__', 'constructor' or backslash): each case here
  // sits on one side of that line, and each must still be refused or accepted as a walk would.
  it('the depth and key checks hold on both sides of the text shortcut (maxBodyDepth 3)', async () => {
    const server = await start(
      step((b: unknown) => b),
      { maxBodyDepth: 3 },
    );
    const post = (raw: string) => call(server.url, { raw });
    // Depth 4 in 9 characters (the shortest text of that depth): walked, refused.
    const deep = await post('[[[[]]]]');
    expect(deep.status).toBe(400);
    expect(deep.json.error).toBe('TypeError: body is nested deeper than 3 levels (at body[0][0][0]); the limit is maxBodyDepth');
    // Depth 3, short: not walked, accepted; the same depth padded long: walked, accepted.
    expect((await post('[[[1]]]')).json).toEqual([[[1]]]);
    const long = { a: { b: ['x'.repeat(50)] } };
    expect((await post(JSON.stringify(long))).json).toEqual(long);
    // Depth 4, long: refused.
    const longDeep = await post(JSON.stringify({ a: { b: [{ c: 'x'.repeat(50) }] } }));
    expect(longDeep.json.error).toMatch(/^TypeError: body is nested deeper than 3 levels \(at body\.a\.b\[0\]\)/);
    // Keys spelled with escapes, in short texts: refused, naming where.
    const escaped = await post('{"\\u005f_proto__":{}}');
    expect(escaped.json.error).toBe(
      "SyntaxError: the request body has a '__proto__' key (at body.__proto__); refused (prototype poisoning)",
    );
    const ctor = await post('[{"constructo\\u0072":{"prototype":1}}]');
    expect(ctor.json.error).toMatch(/'constructor\.prototype' key \(at body\[0\]\.constructor\.prototype\); refused/);
    // Harmless look-alikes pass: a 'constructor' key without a prototype, escapes in values, a bare value, a BOM.
    expect((await post('{"constructor":"x","t":"a\\nb"}')).json).toEqual({ constructor: 'x', t: 'a\nb' });
    expect((await post('"__proto__"')).json).toBe('__proto__');
    expect((await post('\ufeff{"n":1}')).json).toEqual({ n: 1 });
  });

  it('a POST without a body → 400, not reaching the pipeline', async () => {
    const { graph, pipeline } = sleepyPipeline();
    const server = await start(pipeline, { graph });
    const a = await call(server.url, { method: 'POST' });
    expect(a.status).toBe(400);
    expect(a.json.error).toBe("SyntaxError: the request has no body; send a JSON value with 'Content-Type: application/json'");
    expect(probe.seen).toHaveLength(0);
  });

  it('unknown GET routes → 404 in the error shape', async () => {
    const server = await start(step((b: unknown) => b));
    const a = await call(`${server.url}/nothing/here?x=1`);
    expect(a).toMatchObject({ status: 404, json: { error: 'NotFoundError: no route GET /nothing/here' } });
    expect(a.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
  });

  it("fastify's and Node's own refusals (bad URL, 414, 431, not HTTP) come back in rxserve's { error } shape", async () => {
    const server = await start(step((b: unknown) => b));
    const badUrl = await call(`${server.url}/v2/models/%E0%A4%A`);
    expect(badUrl).toMatchObject({
      status: 400,
      json: { error: "BadRequestError: the URL path '/v2/models/%E0%A4%A' is not valid (a bad percent-encoding)" },
    });
    const long = await call(`${server.url}/v2/models/${'m'.repeat(150)}`);
    expect(long.status).toBe(414);
    expect(long.json.error).toMatch(/^URITooLongError: a segment of the URL path '\/v2\/models\/m+' is longer than 100 characters$/);
    const raw = async (text: string) => parseRaw((await rawClient(server.url, text).ended).text);
    const big = await raw(`GET /v2/health/live HTTP/1.1\r\nhost: x\r\nx-big: ${'a'.repeat(20_000)}\r\n\r\n`);
    expect(big.status).toBe(431);
    expect(big.json.error).toMatch(/^RequestHeaderFieldsTooLargeError: the request line and headers are larger than \d+ bytes$/);
    const garbage = await raw('HELLO THERE\r\n\r\n');
    expect(garbage.status).toBe(400);
    expect(garbage.json.error).toMatch(/^BadRequestError: the request is not valid HTTP\/1\.1 \(HPE_/);
    expect(await openConnections(server)).toBeLessThanOrEqual(1);
  });

  it('with apiKeys, auth comes before routing: unknown routes and bad URLs are 401 without a key, 404/400 with one', async () => {
    const server = await start(
      step((b: unknown) => b),
      { apiKeys: ['k'] },
    );
    const auth = { authorization: 'Bearer k' };
    for (const path of ['/nothing', '/v2/models/x/y/z', '/v2/health', '/dashboard']) {
      const answer = await call(`${server.url}${path}`);
      expect(answer.status, path).toBe(401);
      expect(answer.json).toEqual({
        error: 'UnauthorizedError: this route needs an Authorization: Bearer <API key> header with a valid key',
      });
      expect((await call(`${server.url}${path}`, { headers: auth })).status, path).toBe(404);
    }
    expect((await call(`${server.url}/v2/models/%E0%A4%A`)).status).toBe(401);
    expect((await call(`${server.url}/v2/models/%E0%A4%A`, { headers: auth })).status).toBe(400);
    expect((await call(`${server.url}/v2/health/live`)).status).toBe(200);
  });
});

describe('serve(): health and /v2/models', () => {
  it('/v2/health/ready is 503 until graph.ready() resolves, then 200; /v2/health/live is 200 throughout', async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    class Gated extends Sleepy {
      override load() {
        return gate;
      }
    }
    const graph = createGraph({ name: 'gated' });
    const server = await start(graph.modelRunner({ models: [entry('gated', { modelClass: Gated })] }), { graph });
    expect((await call(`${server.url}/v2/health/live`)).status).toBe(200);
    const before = await call(`${server.url}/v2/health/ready`);
    expect(before.status).toBe(503);
    expect(before.json).toEqual({ error: "RxServeError: not ready: graph 'gated' is still loading its models" });
    expect((await call(`${server.url}/v2/models/gated/ready`)).status).toBe(503);
    release();
    await graph.ready();
    const after = await call(`${server.url}/v2/health/ready`);
    expect(after).toMatchObject({ status: 200, json: { ready: true } });
    expect((await call(`${server.url}/v2/models/gated/ready`)).json).toEqual({ name: 'gated', ready: true });
    expect((await call(server.url, { body: { tag: 'x' } })).json).toEqual({ tag: 'x', by: 'gated' });
  });

  it('a graph that cannot load stays not ready, saying why', async () => {
    class Broken extends Sleepy {
      override load() {
        throw new Error('no weights');
      }
    }
    const graph = createGraph({ name: 'broken' });
    const server = await start(graph.modelRunner({ models: [entry('broken', { modelClass: Broken })] }), { graph });
    await expect(graph.ready()).rejects.toThrow('no weights');
    const ready = await call(`${server.url}/v2/health/ready`);
    expect(ready.status).toBe(503);
    expect(ready.json.error).toMatch(/^RxServeError: not ready: the graph failed to load \(ModelLoadError: .*no weights/);
  });

  it('with apiKeys, /v2/health/ready tells why a load failed only to callers with a key (a load error may name files)', async () => {
    class Broken extends Sleepy {
      override load() {
        throw new Error("ENOENT: no such file or directory, open '/srv/models/secret-weights.onnx'");
      }
    }
    const graph = createGraph({ name: 'broken' });
    const server = await start(graph.modelRunner({ models: [entry('broken', { modelClass: Broken })] }), { graph, apiKeys: ['k'] });
    await expect(graph.ready()).rejects.toThrow('secret-weights');
    const anonymous = await call(`${server.url}/v2/health/ready`);
    expect(anonymous.status).toBe(503);
    expect(anonymous.json).toEqual({
      error: 'RxServeError: not ready: the graph failed to load (the reason is given to callers with an API key)',
    });
    const wrongKey = await call(`${server.url}/v2/health/ready`, { headers: { authorization: 'Bearer nope' } });
    expect(wrongKey.json.error).not.toContain('/srv/models');
    const keyed = await call(`${server.url}/v2/health/ready`, { headers: { authorization: 'Bearer k' } });
    expect(keyed.status).toBe(503);
    expect(keyed.json.error).toContain("open '/srv/models/secret-weights.onnx'");
  });

  it('without a graph, ready once listening', async () => {
    const server = await start(step((b: unknown) => b));
    expect((await call(`${server.url}/v2/health/ready`)).status).toBe(200);
    expect((await call(`${server.url}/v2/models`)).json).toEqual({ models: [] });
  });

  it('/v2/models lists the graph endpoints; /v2/models/<name> gives inputs/outputs; unknown names 404', async () => {
    const graph = createGraph();
    const a = graph.modelRunner({ name: 'a', models: [entry('m1', { inputs: ['x', 'y'], outputs: ['score'] }), entry('m2')] });
    const b = graph.modelRunner({ name: 'b', models: [entry('m3')] });
    const server = await start(pipe(a, b), { graph });
    expect((await call(`${server.url}/v2/models`)).json).toEqual({ models: ['m1', 'm2', 'm3'] });
    expect((await call(`${server.url}/v2/models/m1`)).json).toEqual({
      name: 'm1',
      platform: 'rxserve',
      inputs: ['x', 'y'],
      outputs: ['score'],
    });
    expect((await call(`${server.url}/v2/models/m3/versions/1`)).json).toEqual({
      name: 'm3',
      platform: 'rxserve',
      inputs: [],
      outputs: [],
    });
    expect((await call(`${server.url}/v2/models/m2/ready`)).status).toBe(200);
    const unknown = await call(`${server.url}/v2/models/nope`);
    expect(unknown).toMatchObject({ status: 404, json: { error: "NotFoundError: no model 'nope'; models: 'm1', 'm2', 'm3'" } });
    expect((await call(`${server.url}/v2/models/nope/ready`)).status).toBe(404);
  });

  it('the models option replaces the listing', async () => {
    const graph = createGraph();
    const server = await start(graph.modelRunner({ models: [entry('m1', { inputs: ['x'] }), entry('hidden')] }), { graph, models: ['m1'] });
    expect((await call(`${server.url}/v2/models`)).json).toEqual({ models: ['m1'] });
    expect((await call(`${server.url}/v2/models/m1`)).json.inputs).toEqual(['x']);
    expect((await call(`${server.url}/v2/models/hidden`)).status).toBe(404);
  });

  it('router({ key: v2ModelName }) serves POST /v2/models/<name>[/versions/<v>]/infer; an unknown model is 404', async () => {
    const graph = createGraph();
    const pipeline = graph.router({
      key: v2ModelName,
      routes: {
        alpha: graph.modelRunner({ name: 'alpha-step', models: [entry('alpha-model')] }),
        beta: graph.modelRunner({ name: 'beta-step', models: [entry('beta-model')] }),
      },
    });
    const server = await start(pipeline, { graph });
    expect((await call(`${server.url}/v2/models/alpha/infer`, { body: { tag: 'a' } })).json).toEqual({ tag: 'a', by: 'alpha-model' });
    expect((await call(`${server.url}/v2/models/beta/versions/3/infer`, { body: { tag: 'b' } })).json).toEqual({
      tag: 'b',
      by: 'beta-model',
    });
    const missing = await call(`${server.url}/v2/models/gamma/infer`, { body: { tag: 'c' } });
    expect(missing.status).toBe(404);
    expect(missing.json.error).toBe("RouteNotFoundError: router 'router': no route for key 'gamma'; available routes: 'alpha', 'beta'");
    // Endpoints are the models, not the routes (docs/design.md §7): every name listed answers.
    const listed = (await call(`${server.url}/v2/models`)).json.models as string[];
    expect(listed).toEqual(['alpha-model', 'beta-model']);
    for (const name of listed) expect((await call(`${server.url}/v2/models/${name}`)).status).toBe(200);
    expect((await call(`${server.url}/v2/models/alpha`)).status).toBe(404);
  });

  it('the KServe layout: route mlp → step mlp → model mlp is accepted, listed once, and answers under its own name', async () => {
    const graph = createGraph();
    const pipeline = graph.router({
      key: v2ModelName,
      routes: {
        mlp: graph.modelRunner({ name: 'mlp', models: [entry('mlp', { inputs: ['tag'] })] }),
        svm: graph.modelRunner({ name: 'svm', models: [entry('svm')] }),
      },
    });
    const server = await start(pipeline, { graph });
    expect((await call(`${server.url}/v2/models`)).json).toEqual({ models: ['mlp', 'svm'] });
    expect((await call(`${server.url}/v2/models/mlp`)).json).toEqual({ name: 'mlp', platform: 'rxserve', inputs: ['tag'], outputs: [] });
    expect((await call(`${server.url}/v2/models/mlp/ready`)).status).toBe(200);
    expect((await call(`${server.url}/v2/models/mlp/infer`, { body: { tag: 'm' } })).json).toEqual({ tag: 'm', by: 'mlp' });
    expect((await call(`${server.url}/v2/models/svm/infer`, { body: { tag: 's' } })).json).toEqual({ tag: 's', by: 'svm' });
  });

  it('v2ModelName reads the infer paths only', () => {
    const at = (path?: string) => v2ModelName({ id: '1', body: null, metadata: {}, ...(path ? { path } : {}) });
    expect(at('/v2/models/m1/infer')).toBe('m1');
    expect(at('/v2/models/m%201/versions/2/infer')).toBe('m 1');
    expect(at('/api/v2/models/m1/infer')).toBe('m1');
    expect(at('/v2/models/m1')).toBeUndefined();
    expect(at('/v2/models/m1/ready')).toBeUndefined();
    expect(at('/score')).toBeUndefined();
    expect(at()).toBeUndefined();
  });
});

describe('serve(): metrics', () => {
  it("metrics: true serves the graph's Prometheus exposition at GET /metrics, behind apiKeys like every route", async () => {
    const { graph, pipeline } = sleepyPipeline();
    const server = await start(pipeline, { graph, metrics: true, apiKeys: ['k'] });
    const auth = { authorization: 'Bearer k' };
    expect((await call(server.url, { body: { tag: 'a' }, headers: auth })).status).toBe(200);
    const refused = await fetch(`${server.url}/metrics`);
    expect(refused.status).toBe(401);
    const scrape = await fetch(`${server.url}/metrics`, { headers: auth });
    expect(scrape.status).toBe(200);
    expect(scrape.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = await scrape.text();
    expect(text).toContain('rxserve_model_requests_total{endpoint="sleepy",step="runner",outcome="success"} 1');
    expect(text).toMatch(/^rxserve_model_latency_seconds_count\{endpoint="sleepy",step="runner"\} 1$/m);
  });

  it('metrics: true without a graph is a ConfigError naming serve.metrics; without metrics there is no /metrics', async () => {
    const error = await serve(
      step((b: unknown) => b),
      { port: 0, metrics: true },
    ).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as Error).message).toBe(
      'serve.metrics: expected a graph option too (the metrics are the graph’s), got metrics: true without graph',
    );
    const { graph, pipeline } = sleepyPipeline();
    const server = await start(pipeline, { graph });
    expect((await call(`${server.url}/metrics`)).status).toBe(404);
  });
});

describe('serve(): apiKeys', () => {
  it('401 without a key or with a wrong one; 200 with a right one; /v2/health/* stays open', async () => {
    const { graph, pipeline } = sleepyPipeline();
    const server = await start(pipeline, { graph, apiKeys: ['k-one', 'k-two'] });
    const none = await call(server.url, { body: { tag: 'a' } });
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toBe('Bearer realm="rxserve"');
    expect(none.json).toEqual({ error: 'UnauthorizedError: this route needs an Authorization: Bearer <API key> header with a valid key' });
    expect((await call(server.url, { body: { tag: 'a' }, headers: { authorization: 'Bearer k-three' } })).status).toBe(401);
    expect((await call(server.url, { body: { tag: 'a' }, headers: { authorization: 'Basic k-one' } })).status).toBe(401);
    expect((await call(`${server.url}/v2/models`)).status).toBe(401);
    expect((await call(`${server.url}/v2/models/sleepy`)).status).toBe(401);
    expect(probe.seen).toHaveLength(0);
    const ok = await call(server.url, { body: { tag: 'a' }, headers: { authorization: 'Bearer k-two' } });
    expect(ok).toMatchObject({ status: 200, json: { tag: 'a' } });
    // the key itself is not passed into the pipeline
    expect(probe.seen[0].headers?.authorization).toBeUndefined();
    expect((await call(`${server.url}/v2/models`, { headers: { authorization: 'bearer k-one' } })).status).toBe(200);
    expect((await call(`${server.url}/v2/health/live`)).status).toBe(200);
    expect((await call(`${server.url}/v2/health/ready`)).status).toBe(200);
  });
});

describe('serve(): request ids (fastify genReqId)', () => {
  it('honours an x-request-id of 1 to 200 characters; a longer one is replaced by a new id; every answer echoes the id', async () => {
    const { graph, pipeline } = sleepyPipeline();
    const server = await start(pipeline, { graph, apiKeys: ['k'] });
    const auth = { authorization: 'Bearer k' };
    const longest = 'x'.repeat(200);
    const kept = await call(server.url, { body: { tag: 'a' }, headers: { ...auth, 'x-request-id': longest } });
    expect(kept.headers.get('x-request-id')).toBe(longest);
    expect(probe.seen[0].id).toBe(longest);
    const tooLong = await call(server.url, { body: { tag: 'b' }, headers: { ...auth, 'x-request-id': 'y'.repeat(201) } });
    expect(tooLong.status).toBe(200);
    expect(tooLong.headers.get('x-request-id')).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(probe.seen[1].id).toBe(tooLong.headers.get('x-request-id'));
    // Refusals before any route (401), unknown routes (404), health and metadata routes echo it too.
    expect((await call(server.url, { body: { tag: 'c' }, headers: { 'x-request-id': 'r-401' } })).headers.get('x-request-id')).toBe(
      'r-401',
    );
    expect((await call(`${server.url}/v2/nothing`, { headers: { ...auth, 'x-request-id': 'r-404' } })).headers.get('x-request-id')).toBe(
      'r-404',
    );
    expect((await call(`${server.url}/v2/health/live`, { headers: { 'x-request-id': 'r-live' } })).headers.get('x-request-id')).toBe(
      'r-live',
    );
    expect((await call(`${server.url}/v2/models`, { headers: { ...auth, 'x-request-id': 'r-models' } })).headers.get('x-request-id')).toBe(
      'r-models',
    );
  });

  it('gives requests without an x-request-id new ids, all different, even concurrent ones: UUID-shaped, echoed, the event id', async () => {
    const { graph, pipeline } = sleepyPipeline();
    const server = await start(pipeline, { graph });
    const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => call(server.url, { body: { tag: `t${i}`, ms: 20 } })));
    const ids = answers.map((a) => a.headers.get('x-request-id'));
    for (const id of ids) expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(new Set(ids).size).toBe(20);
    expect(new Set(probe.seen.map((e) => e.id))).toEqual(new Set(ids));
  });

  it('rxservePlugin sets its own genReqId in its context: its routes honour x-request-id, the app keeps its own ids elsewhere', async () => {
    const { graph, pipeline } = sleepyPipeline();
    const app = Fastify();
    app.post('/own', (request) => Promise.resolve({ id: request.id }));
    await app.register(rxservePlugin, { pipeline, graph, prefix: '/ml' });
    await app.listen({ port: 0, host: '127.0.0.1' });
    const url = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
    try {
      const ours = await call(`${url}/ml/score`, { body: { tag: 'a' }, headers: { 'x-request-id': 'mine-1' } });
      expect(ours.headers.get('x-request-id')).toBe('mine-1');
      expect(probe.seen[0].id).toBe('mine-1');
      // The app's own route: fastify's default ids, not the header (the plugin's genReqId stays in its context).
      expect((await call(`${url}/own`, { body: {}, headers: { 'x-request-id': 'mine-2' } })).json.id).toMatch(/^req-/);
    } finally {
      await app.close();
    }
  });

  it('rxservePlugin carries fastify-plugin metadata and stays encapsulated (its parser and error handler do not reach the app)', async () => {
    expect((rxservePlugin as unknown as Record<symbol, unknown>)[Symbol.for('plugin-meta')]).toMatchObject({
      name: 'rxserve',
      fastify: '5.x',
    });
    expect((rxservePlugin as unknown as Record<symbol, unknown>)[Symbol.for('skip-override')]).toBe(false);
    const { graph, pipeline } = sleepyPipeline();
    const app = Fastify();
    app.post('/own', (request) => Promise.resolve({ own: request.body }));
    await app.register(rxservePlugin, { pipeline, graph });
    await app.listen({ port: 0, host: '127.0.0.1' });
    const url = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
    try {
      // The plugin removed every parser but JSON in its context only: the app's text/plain still parses.
      const own = await fetch(`${url}/own`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'hi' });
      expect(await own.json()).toEqual({ own: 'hi' });
      expect(await call(`${url}/score`, { body: { tag: 'a' } })).toMatchObject({ status: 200, json: { tag: 'a', by: 'sleepy' } });
    } finally {
      await app.close();
    }
  });
});

describe('serve(): cancellation and close', () => {
  // Needs per-event cancellation (ServingEvent.signal, the lead's change on main).
  it('a client that disconnects aborts its event’s work (the model’s AbortSignal fires)', async () => {
    const { graph, pipeline } = sleepyPipeline();
    const server = await start(pipeline, { graph });
    const controller = new AbortController();
    const pending = call(server.url, { body: { tag: 'a', ms: 10_000 }, headers: { 'x-request-id': 'gone' }, signal: controller.signal });
    await until(() => probe.started === 1);
    controller.abort();
    await expect(pending).rejects.toThrow();
    await until(() => probe.aborted.includes('gone'));
    expect(server.inFlight).toBe(0);
    expect(probe.finished).toBe(0);
    // the server goes on answering
    expect((await call(server.url, { body: { tag: 'b' } })).json.tag).toBe('b');
  });

  // Needs per-event cancellation (ServingEvent.signal, the lead's change on main).
  it('a 504 aborts the event’s work', async () => {
    const { graph, pipeline } = sleepyPipeline();
    const server = await start(pipeline, { graph, timeoutMs: 40 });
    const a = await call(server.url, { body: { tag: 'a', ms: 10_000 }, headers: { 'x-request-id': 'late' } });
    expect(a.status).toBe(504);
    await until(() => probe.aborted.includes('late'));
    expect(probe.finished).toBe(0);
  });

  it('graceful close: new requests get 503 or a refused connection, requests in flight are answered, then the graph closes', async () => {
    const { graph, pipeline } = sleepyPipeline();
    // what leaves the pipeline, in order, on the server's side
    const server = await start(
      pipe(
        pipeline,
        map((e: ServingEvent) => (probe.order.push(`answer ${(e.body as Body).tag}`), e)),
      ),
      { graph },
    );
    const inFlight = ['a', 'b', 'c'].map((tag, i) => call(server.url, { body: { tag, ms: 150 + 50 * i } }));
    await until(() => probe.started === 3);
    const closed = server.close();
    await new Promise((r) => setTimeout(r, 30));
    const late = await call(server.url, { body: { tag: 'late' } }).catch((error: Error) => error);
    if (late instanceof Error) expect((late.cause as { code?: string }).code).toBe('ECONNREFUSED');
    else {
      expect(late.status).toBe(503);
      expect(late.headers.get('retry-after')).toBe('1');
      expect(late.json).toEqual({ error: 'RxServeError: the server is closing; no new requests are taken' });
    }
    const answers = await Promise.all(inFlight);
    expect(answers.map((r) => [r.status, r.json.tag])).toEqual([
      [200, 'a'],
      [200, 'b'],
      [200, 'c'],
    ]);
    await closed;
    expect(graph.closed).toBe(true);
    expect(probe.order).toEqual(['answer a', 'answer b', 'answer c', 'model closed']);
    expect(probe.seen.map((e) => (e.body as Body).tag)).not.toContain('late');
  });

  it('while closing, a request that still gets in is answered 503 with Retry-After and Connection: close', async () => {
    const { graph, pipeline } = sleepyPipeline();
    // (with fastify's default return503OnClosing: true, fastify answers its own 503 first)
    const app = Fastify({ return503OnClosing: false });
    await app.register(rxservePlugin, { pipeline, graph });
    // a preClose hook of the app's, after rxserve's, keeps the server listening a while
    // eslint-disable-next-line @typescript-eslint/require-await -- fastify takes an async plugin as promise-style
    await app.register(async (child) => child.addHook('preClose', (done) => void setTimeout(done, 150)));
    await app.listen({ port: 0, host: '127.0.0.1' });
    const url = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
    const first = call(url, { body: { tag: 'first', ms: 100 } });
    await until(() => probe.started === 1);
    const closed = app.close();
    await new Promise((r) => setTimeout(r, 30));
    const late = await call(url, { body: { tag: 'late' } });
    expect(late.status).toBe(503);
    expect(late.headers.get('retry-after')).toBe('1');
    expect(late.headers.get('connection')).toBe('close');
    expect(late.json).toEqual({ error: 'RxServeError: the server is closing; no new requests are taken' });
    expect((await first).json).toEqual({ tag: 'first', by: 'sleepy' });
    await closed;
    expect(probe.seen).toHaveLength(1);
    expect(graph.closed).toBe(true);
  });

  it('close() does not wait for a connection that never sent a request (the server ends it)', async () => {
    const server = await start(step((b: unknown) => b));
    const socket = connect(Number(new URL(server.url).port), '127.0.0.1');
    await new Promise((resolve) => socket.once('connect', resolve));
    const ended = new Promise((resolve) => socket.once('end', resolve));
    const t0 = performance.now();
    // Without ending it, this waited as long as the client kept the socket (here: for ever).
    const closing = server.close().then(() => 'closed');
    const bound = new Promise((resolve) => setTimeout(resolve, 5_000, 'still waiting after 5 s'));
    expect(await Promise.race([closing, bound])).toBe('closed');
    expect(performance.now() - t0).toBeLessThan(5_000);
    await ended;
    expect(socket.readableEnded).toBe(true);
    socket.destroy();
  });

  it('a burst of 2,000 requests with random client aborts: every other request is answered once with its own body, nothing left in flight', async () => {
    const { graph, pipeline } = sleepyPipeline({ maxInFlight: 256 });
    const server = await start(pipeline, { graph });
    const agent = new Agent({ keepAlive: true, maxSockets: 64 });
    const { port } = new URL(server.url);
    const results = await Promise.all(
      Array.from({ length: 2_000 }, (_, i) => {
        const tag = `t${i}`;
        const abort = i % 5 === 0;
        return new Promise<{ tag: string; abort: boolean; status?: number; body?: string; error?: string }>((resolve) => {
          const req = httpRequest(
            { host: '127.0.0.1', port, method: 'POST', path: '/burst', agent, headers: { 'content-type': 'application/json' } },
            (res) => {
              let body = '';
              res.setEncoding('utf8');
              res.on('data', (chunk) => (body += chunk));
              res.on('end', () => resolve({ tag, abort, status: res.statusCode!, body }));
              res.on('error', (error) => resolve({ tag, abort, error: error.message }));
            },
          );
          req.on('error', (error) => resolve({ tag, abort, error: error.message }));
          req.end(JSON.stringify({ tag, ms: i % 7 }));
          if (abort) setTimeout(() => req.destroy(), i % 11);
        });
      }),
    );
    agent.destroy();
    for (const r of results) {
      if (r.abort && r.error !== undefined) continue; // aborted before its answer
      expect(r.error).toBeUndefined();
      expect(r.status).toBe(200);
      expect(JSON.parse(r.body!)).toEqual({ tag: r.tag, by: 'sleepy' });
    }
    expect(results.filter((r) => !r.abort).every((r) => r.status === 200)).toBe(true);
    await until(() => server.inFlight === 0);
    await until(() => probe.started === probe.finished + probe.aborted.length);
  });

  it('close under load: every accepted request is answered', async () => {
    const { graph, pipeline } = sleepyPipeline();
    const server = await start(pipeline, { graph });
    const sent = Array.from({ length: 200 }, (_, i) =>
      call(server.url, { body: { tag: `t${i}`, ms: 20 + (i % 30) } }).then(
        (r) => ({ i, status: r.status, tag: r.json?.tag }),
        (error: Error) => ({ i, status: 0, tag: (error.cause as { code?: string })?.code }),
      ),
    );
    await until(() => probe.started > 50);
    await server.close();
    const results = await Promise.all(sent);
    for (const r of results) {
      if (r.status === 200) expect(r.tag).toBe(`t${r.i}`);
      // 200 connections opened at once: those still in the accept queue when the server stops
      // listening are reset by the kernel (the request never reached the server).
      else if (r.status !== 503) expect(r.tag).toMatch(/ECONNREFUSED|ECONNRESET/);
    }
    // everything the pipeline took was answered
    expect(results.filter((r) => r.status === 200).length).toBe(probe.seen.length);
    expect(graph.closed).toBe(true);
  });

  it('close under 64 looping keep-alive clients: every request gets its answer, a 503 with Connection: close, or a refused connection — no reset', async () => {
    const { graph, pipeline } = sleepyPipeline({ maxInFlight: 256 });
    const server = await start(pipeline, { graph });
    const { port } = new URL(server.url);
    const agent = new Agent({ keepAlive: true, maxSockets: 64 });
    const outcomes: Record<string, number> = {};
    const answered: string[] = [];
    const one = (tag: string) =>
      new Promise<string>((resolve) => {
        const req = httpRequest(
          { host: '127.0.0.1', port, method: 'POST', path: '/loop', agent, headers: { 'content-type': 'application/json' } },
          (res) => {
            let text = '';
            res.setEncoding('utf8');
            res.on('data', (chunk) => (text += chunk));
            res.on('end', () => {
              if (res.statusCode === 200) answered.push((JSON.parse(text) as { tag: string }).tag);
              if (res.statusCode === 503) {
                expect(res.headers.connection).toBe('close');
                expect(JSON.parse(text)).toEqual({ error: 'RxServeError: the server is closing; no new requests are taken' });
              }
              resolve(String(res.statusCode));
            });
          },
        );
        req.on('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
        req.end(JSON.stringify({ tag, ms: 2 + (Number(tag.slice(1)) % 10) }));
      });
    let n = 0;
    const loops = Array.from({ length: 64 }, async () => {
      for (;;) {
        const outcome = await one(`t${n++}`);
        outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
        if (outcome !== '200') return;
      }
    });
    // Steady state first: every client connected (a connection still in the accept queue when the
    // server stops listening is reset by the kernel; see docs/serving.md).
    await until(async () => probe.finished >= 300 && (await openConnections(server)) >= 64, 20_000);
    await server.close();
    await Promise.all(loops);
    agent.destroy();
    expect(
      Object.keys(outcomes).filter((o) => !['200', '503', 'ECONNREFUSED'].includes(o)),
      JSON.stringify(outcomes),
    ).toEqual([]);
    // Each loop ended on a 503 or a refused connection; what the pipeline took was answered.
    expect((outcomes['503'] ?? 0) + (outcomes.ECONNREFUSED ?? 0)).toBe(64);
    expect(answered.length).toBe(probe.seen.length);
    expect(graph.closed).toBe(true);
  }, 30_000);

  it('validates its options, naming the field', async () => {
    await expect(
      serve(
        step((b: unknown) => b),
        { port: -1 },
      ),
    ).rejects.toThrow(/serve\.port/);
    await expect(
      serve(
        step((b: unknown) => b),
        { apiKeys: [''] },
      ),
    ).rejects.toThrow(/serve\.apiKeys\[0\]/);
    await expect(
      serve(
        step((b: unknown) => b),
        { prot: 1 } as never,
      ),
    ).rejects.toThrow(/prot/);
  });

  it('a port in use: serve() rejects and leaves nothing running (the graph is closed)', async () => {
    const first = await start(step((b: unknown) => b));
    const graph = createGraph();
    const pipeline = graph.modelRunner({ models: [entry('m')] });
    await expect(serve(pipeline, { graph, port: Number(new URL(first.url).port) })).rejects.toThrow(/EADDRINUSE/);
    expect(graph.closed).toBe(true);
  });
});

/** A raw client over one socket: what the server wrote, and when the server ended the connection. */
interface RawClient {
  /** Resolves when the server ends or closes the connection: ms since open, and everything it wrote. */
  readonly ended: Promise<{ ms: number; text: string }>;
  /** Writes a chunk while the socket is writable. */
  write(chunk: string | Buffer): void;
  destroy(): void;
}

function rawClient(url: string, opening = ''): RawClient {
  const { port } = new URL(url);
  const socket = connect(Number(port), '127.0.0.1');
  const opened = Date.now();
  let text = '';
  socket.setEncoding('utf8');
  socket.on('data', (chunk: string) => (text += chunk));
  socket.on('error', () => undefined); // a write after the server closed: the reset is expected
  if (opening) socket.write(opening);
  const ended = new Promise<{ ms: number; text: string }>((resolve) => {
    const done = () => resolve({ ms: Date.now() - opened, text });
    socket.once('end', done);
    socket.once('close', done);
  });
  return {
    ended,
    write: (chunk) => void (socket.writable && !socket.destroyed && socket.write(chunk)),
    destroy: () => socket.destroy(),
  };
}

/** Writes one byte every `everyMs` until the client is ended; returns a stop function. */
function trickle(client: RawClient, chunk: string, everyMs = 50): () => void {
  const timer = setInterval(() => client.write(chunk), everyMs);
  void client.ended.then(() => clearInterval(timer));
  return () => clearInterval(timer);
}

const openConnections = (server: Server): Promise<number> =>
  new Promise((resolve, reject) => server.app.server.getConnections((error, count) => (error ? reject(error) : resolve(count))));

/** The status and JSON body of a raw HTTP/1.1 answer. */
function parseRaw(text: string): { status: number; headers: string; json: JsonAnswer } {
  const [head, body = ''] = text.split('\r\n\r\n');
  return {
    status: Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0),
    headers: head.toLowerCase(),
    json: (body ? JSON.parse(body) : undefined) as JsonAnswer,
  };
}

describe('serve(): slow and refused clients do not keep sockets', () => {
  it('a request whose headers or body take longer than requestTimeoutMs gets 408 and its connection is closed; slow answers are not cut', async () => {
    const { graph, pipeline } = sleepyPipeline();
    const server = await start(pipeline, { graph, requestTimeoutMs: 300, apiKeys: ['k'] });
    const body = JSON.stringify({ tag: 'slow-body' });
    const clients = [
      // headers sent, the body trickling a byte at a time (and never finished)
      ...Array.from({ length: 20 }, () => {
        const c = rawClient(
          server.url,
          `POST /score HTTP/1.1\r\nhost: x\r\nauthorization: Bearer k\r\ncontent-type: application/json\r\ncontent-length: ${body.length + 1000}\r\n\r\n`,
        );
        trickle(c, ' ');
        return { kind: 'slow body', c };
      }),
      // headers trickling, never finished
      ...Array.from({ length: 20 }, () => {
        const c = rawClient(server.url, 'POST /score HTTP/1.1\r\nhost: x\r\n');
        trickle(c, 'x-pad: 1\r\n');
        return { kind: 'slow headers', c };
      }),
      // connected, silent
      ...Array.from({ length: 20 }, () => ({ kind: 'silent', c: rawClient(server.url) })),
    ];
    // A request that arrives at once but whose answer takes longer than requestTimeoutMs is answered.
    const slowAnswer = call(server.url, { body: { tag: 'late', ms: 600 }, headers: { authorization: 'Bearer k' } });
    await until(async () => (await openConnections(server)) >= 61);
    const ends = await Promise.all(clients.map(async ({ kind, c }) => ({ kind, ...(await c.ended) })));
    for (const end of ends) {
      const answer = parseRaw(end.text);
      expect(answer.status, end.kind).toBe(408);
      expect(answer.headers).toContain('connection: close');
      expect(answer.json).toEqual({
        error:
          "RequestTimeoutError: the request's headers and body did not arrive within 300 ms (requestTimeoutMs); the connection is closed",
      });
      // Cut between requestTimeoutMs and requestTimeoutMs plus one check interval (50 ms here), with slack for a loaded machine.
      expect(end.ms, end.kind).toBeGreaterThanOrEqual(290);
      expect(end.ms, end.kind).toBeLessThan(2_000);
    }
    expect(await slowAnswer).toMatchObject({ status: 200, json: { tag: 'late' } });
    await until(async () => (await openConnections(server)) <= 1); // fetch's kept-alive socket at most
    expect(probe.seen.map((e) => (e.body as Body).tag)).toEqual(['late']);
  });

  it('a refused request (401, 413, 415) closes its connection, even while the client is still sending', async () => {
    const { graph, pipeline } = sleepyPipeline();
    // requestTimeoutMs at its default (60 s): what closes these connections is the refusal.
    const server = await start(pipeline, { graph, apiKeys: ['k'], maxBodyBytes: 1_000 });
    const head = (headers: string, length: number) => `POST /score HTTP/1.1\r\nhost: x\r\n${headers}content-length: ${length}\r\n\r\n`;
    const cases = [
      { status: 401, c: rawClient(server.url, head('content-type: application/json\r\n', 100_000)) },
      { status: 413, c: rawClient(server.url, head('authorization: Bearer k\r\ncontent-type: application/json\r\n', 100_000)) },
      { status: 415, c: rawClient(server.url, head('authorization: Bearer k\r\ncontent-type: text/plain\r\n', 100_000)) },
      // keep-alive requests, complete: the answer is a refusal, so the connection still closes
      { status: 401, c: rawClient(server.url, `GET /v2/models HTTP/1.1\r\nhost: x\r\nconnection: keep-alive\r\n\r\n`) },
    ];
    for (const { c } of cases) trickle(c, 'xxxxxxxxxx', 20);
    const ends = await Promise.all(cases.map(async ({ status, c }) => ({ status, ...(await c.ended) })));
    for (const end of ends) {
      const answer = parseRaw(end.text);
      expect(answer.status).toBe(end.status);
      expect(answer.headers).toContain('connection: close');
      expect(answer.json.error).toMatch(/^(UnauthorizedError|PayloadTooLargeError|UnsupportedMediaTypeError): /);
      expect(end.ms).toBeLessThan(5_000);
    }
    await until(async () => (await openConnections(server)) === 0);
    expect(probe.seen).toHaveLength(0);
  });

  it('a client sending too large a body in one go reads its 413, not a reset (the connection lingers while the body arrives)', async () => {
    const { graph, pipeline } = sleepyPipeline();
    const server = await start(pipeline, { graph, maxBodyBytes: 1_000 });
    const body = Buffer.alloc(4 * 2 ** 20, 'a');
    const head = `POST /score HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n`;
    const { port } = new URL(server.url);
    const ends = await Promise.all(
      Array.from({ length: 8 }, () => {
        // A client that reads its answer only once it has written its body (a plain HTTP/1.1 client).
        const socket = connect(Number(port), '127.0.0.1');
        socket.on('error', () => undefined);
        socket.pause();
        let text = '';
        socket.setEncoding('utf8');
        socket.write(Buffer.concat([Buffer.from(head), body]), () => setTimeout(() => socket.resume(), 100));
        socket.on('data', (chunk: string) => (text += chunk));
        return new Promise<string>((resolve) => socket.once('close', () => resolve(text)));
      }),
    );
    for (const text of ends) {
      const answer = parseRaw(text);
      expect(answer.status).toBe(413);
      expect(answer.headers).toContain('connection: close');
      expect(answer.json).toEqual({ error: 'PayloadTooLargeError: the request body is larger than the limit of 1000 bytes' });
    }
    await until(async () => (await openConnections(server)) === 0);
  });

  it('requestTimeoutMs is validated', async () => {
    await expect(
      serve(
        step((b: unknown) => b),
        { requestTimeoutMs: 0 },
      ),
    ).rejects.toThrow(/serve\.requestTimeoutMs: expected a positive integer, got 0/);
  });

  it("sendTimeoutMs counts from the answer's writing, not while the app's async onSend hook holds it: the answer arrives whole", async () => {
    const { graph, pipeline } = sleepyPipeline();
    const app = Fastify();
    let hookEnded = 0;
    // An app's slow async hook (a signature, an audit write) holds every answer 3× sendTimeoutMs.
    app.addHook('onSend', async (_request, _reply, payload) => {
      await new Promise((resolve) => setTimeout(resolve, 300));
      hookEnded = Date.now();
      return payload;
    });
    await app.register(rxservePlugin, { pipeline, graph, sendTimeoutMs: 100 });
    await app.listen({ port: 0, host: '127.0.0.1' });
    const url = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
    try {
      // Before: the connection was destroyed at 100 ms, inside the hook (a socket error here).
      const answer = await call(`${url}/score`, { body: { tag: 'held' } });
      expect(answer.status).toBe(200);
      expect(answer.json).toMatchObject({ tag: 'held' });
      expect(hookEnded).toBeGreaterThan(0);
    } finally {
      await app.close();
    }
  });
});

describe('serve(): disconnects, watched once per connection', () => {
  it('a kept-alive connection: an answered request cancels nothing; the next one on it is cancelled when the client leaves', async () => {
    const { graph, pipeline } = sleepyPipeline();
    const server = await start(pipeline, { graph });
    const { port } = new URL(server.url);
    const socket = connect(Number(port), '127.0.0.1');
    await new Promise((resolve) => socket.once('connect', resolve));
    const post = (id: string, body: object): string => {
      const text = JSON.stringify(body);
      return `POST / HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nx-request-id: ${id}\r\ncontent-length: ${Buffer.byteLength(text)}\r\n\r\n${text}`;
    };
    let received = '';
    socket.on('data', (chunk: Buffer) => (received += chunk.toString()));
    socket.write(post('first', { tag: 'a' }));
    await until(() => received.includes('"by":"sleepy"'));
    socket.write(post('second', { tag: 'b', ms: 10_000 }));
    await until(() => probe.started === 2);
    socket.destroy();
    await until(() => probe.aborted.includes('second'));
    expect(probe.aborted).toEqual(['second']);
    await until(() => server.inFlight === 0);
  });

  it('pipelined requests on one connection are all cancelled when it closes', async () => {
    const { graph, pipeline } = sleepyPipeline();
    const server = await start(pipeline, { graph });
    const { port } = new URL(server.url);
    const socket = connect(Number(port), '127.0.0.1');
    await new Promise((resolve) => socket.once('connect', resolve));
    const post = (id: string): string => {
      const text = JSON.stringify({ tag: id, ms: 10_000 });
      return `POST / HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nx-request-id: ${id}\r\ncontent-length: ${Buffer.byteLength(text)}\r\n\r\n${text}`;
    };
    socket.write(post('p1') + post('p2'));
    await until(() => probe.started >= 1);
    socket.destroy();
    // node:http hands pipelined requests over one after the other: the first is cancelled, the
    // second is either cancelled or never started; none runs on.
    await until(() => probe.aborted.includes('p1'));
    await until(() => server.inFlight === 0);
    await new Promise((r) => setTimeout(r, 50));
    expect(probe.finished).toBe(0);
    expect(probe.aborted.length).toBe(probe.started);
  });
});

describe('rxservePlugin on an existing fastify app', () => {
  it('serves the routes under a prefix beside the app’s own, and closing the app closes the graph', async () => {
    const { graph, pipeline } = sleepyPipeline();
    const app = Fastify();

    app.post('/own', (request) => Promise.resolve({ own: request.body })); // the app's text/plain parser still applies here
    await app.register(rxservePlugin, { pipeline, graph, prefix: '/ml', apiKeys: ['key'] });
    await app.listen({ port: 0, host: '127.0.0.1' });
    const url = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
    try {
      const auth = { authorization: 'Bearer key' };
      expect((await call(`${url}/ml/score`, { body: { tag: 'a' }, headers: auth })).json).toEqual({ tag: 'a', by: 'sleepy' });
      expect(probe.seen[0].path).toBe('/ml/score');
      expect((await call(`${url}/ml/score`, { body: { tag: 'a' } })).status).toBe(401);
      expect((await call(`${url}/ml/v2/health/ready`)).status).toBe(200);
      expect((await call(`${url}/ml/v2/models`, { headers: auth })).json).toEqual({ models: ['sleepy'] });
      // Unknown routes under the prefix: the plugin's hooks run first (401), then its 404; elsewhere, the app's 404.
      expect((await call(`${url}/ml/nothing`)).status).toBe(401);
      expect(await call(`${url}/ml/nothing`, { headers: auth })).toMatchObject({
        status: 404,
        json: { error: 'NotFoundError: no route GET /ml/nothing' },
      });
      expect(await call(`${url}/elsewhere`)).toMatchObject({ status: 404, json: { message: 'Route GET:/elsewhere not found' } });
      // the app's own route: no key needed, its own parsers
      const own = await fetch(`${url}/own`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'hi' });
      expect(await own.json()).toEqual({ own: 'hi' });
    } finally {
      await app.close();
    }
    expect(graph.closed).toBe(true);
    expect(probe.closed).toBe(1);
  });

  it('rejects bad options, naming the field', async () => {
    const app = Fastify();
    await expect(app.register(rxservePlugin, { pipeline: 'nope' as never })).rejects.toThrow(/rxservePlugin\.pipeline/);
    await app.close();
  });
});
