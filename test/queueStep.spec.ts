// queueStep against a real redis-server: the message format, redisStream reading path, headers
// and sourceId back, XADD failures failing the events (and the step going on), bounds, trimming,
// the flow mark, connections closed, and hostile message fields.
import { createServer } from 'node:net';
import { Redis } from 'ioredis';
import { from, lastValueFrom, Subject, take, toArray, type OperatorFunction } from 'rxjs';
import { describe, expect, it } from 'vitest';
import { ConfigError, QueueFullError, RxServeError, step, toEvent, withError, type ServingEvent } from '../src/index.js';
import { QUEUE_STEP, queueStep, queueStepMark, redisStream } from '../src/streams/index.js';
import { redisAvailable, withRedis, type RedisServer } from './support/redis.js';

const run = (events: ServingEvent[], op: OperatorFunction<ServingEvent, ServingEvent>) => lastValueFrom(from(events).pipe(op, toArray()));
const fieldsOf = (fields: string[]) => {
  const f: Record<string, string> = {};
  for (let i = 0; i < fields.length; i += 2) f[fields[i]] = fields[i + 1];
  return f;
};

describe('queueStep: options and the flow mark', () => {
  it('bad options are ConfigErrors naming the field', () => {
    expect(() => queueStep({} as never)).toThrow(ConfigError);
    expect(() => queueStep({ redis: 'http://x', stream: 's' })).toThrow(/queueStep\.options\.redis/);
    expect(() => queueStep({ redis: 'redis://x', stream: '' })).toThrow(/queueStep\.options\.stream/);
    expect(() => queueStep({ redis: 'redis://x', stream: 's', maxLen: 0 })).toThrow(/queueStep\.options\.maxLen/);
    expect(() => queueStep({ redis: 'redis://x', stream: 's', maxlen: 5 } as never)).toThrow(/unknown field 'maxlen'/);
  });

  it('its operator carries { stream } under QUEUE_STEP for a flow builder; other operators carry nothing', () => {
    const op = queueStep({ redis: 'redis://127.0.0.1:1', stream: 'jobs' });
    expect(op[QUEUE_STEP]).toEqual({ stream: 'jobs' });
    expect(queueStepMark(op)).toEqual({ stream: 'jobs' });
    expect(QUEUE_STEP).toBe(Symbol.for('rxserve.queueStep'));
    expect(queueStepMark(step((x) => x))).toBeUndefined();
    expect(queueStepMark(undefined)).toBeUndefined();
  });
});

describe.runIf(redisAvailable('queueStep (test/queueStep.spec.ts)'))('queueStep against a real redis-server', () => {
  let server: RedisServer;
  let redis: Redis;
  let n = 0;
  const names = () => {
    n++;
    return { stream: `q${n}`, group: `g${n}`, out: `a${n}` };
  };
  withRedis((s, r) => ((server = s), (redis = r)));

  it("writes redisStream's message format (body JSON, id, path, headers JSON) and emits each event with the entry's id", async () => {
    const { stream } = names();
    const events = [
      toEvent({ user: 'ann', n: 1 }, { id: 'e1', path: '/v2/models/m/infer', headers: { 'x-tenant': 'acme' } }),
      toEvent('plain', { id: 'e2' }),
    ];
    const out = await run(events, queueStep({ redis: server.url, stream }));
    const entries = await redis.xrange(stream, '-', '+');
    expect(entries.map(([, f]) => fieldsOf(f))).toEqual([
      { body: '{"user":"ann","n":1}', id: 'e1', path: '/v2/models/m/infer', headers: '{"x-tenant":"acme"}' },
      { body: '"plain"', id: 'e2' },
    ]);
    expect(out.map((e) => [e.id, e.error, e.body, e.metadata.queued])).toEqual([
      ['e1', undefined, { user: 'ann', n: 1 }, { stream, id: entries[0][0] }],
      ['e2', undefined, 'plain', { stream, id: entries[1][0] }],
    ]);
  });

  it('a consumer reads path, headers and the sender id (metadata.sourceId) back; its answers carry the entry ids the sender got', async () => {
    const { stream, group, out } = names();
    const sent = await run(
      [1, 2, 3].map((i) => toEvent({ i }, { id: `front-${i}`, path: `/score/${i}`, headers: { 'x-user': `u${i}` } })),
      queueStep({ redis: server.url, stream }),
    );
    const consumer = redisStream({ redis: server.url, stream, group, blockMs: 50 });
    const seen = await lastValueFrom(consumer.events$.pipe(take(3), consumer.commit({ stream: out }), toArray()));
    await consumer.close();
    expect(seen.map((e) => [e.id, e.path, e.headers, e.metadata.sourceId, e.body])).toEqual(
      sent.map((e, i) => [
        (e.metadata.queued as { id: string }).id,
        `/score/${i + 1}`,
        { 'x-user': `u${i + 1}` },
        `front-${i + 1}`,
        { i: i + 1 },
      ]),
    );
    const answers = (await redis.xrange(out, '-', '+')).map(([, f]) => fieldsOf(f).id);
    expect(answers).toEqual(sent.map((e) => (e.metadata.queued as { id: string }).id));
  });

  it('an XADD Redis refuses (the key holds a string) fails each event, naming the stream; the step goes on once the key is a stream', async () => {
    const { stream } = names();
    await redis.set(stream, 'not a stream');
    const input = new Subject<ServingEvent>();
    const outputs: ServingEvent[] = [];
    const done = new Promise<void>((resolve) =>
      input.pipe(queueStep({ redis: server.url, stream, name: 'hop' })).subscribe({ next: (e) => outputs.push(e), complete: resolve }),
    );
    input.next(toEvent({ a: 1 }, { id: 'x1' }));
    input.next(toEvent({ a: 2 }, { id: 'x2' }));
    for (let i = 0; outputs.length < 2 && i < 500; i++) await new Promise((r) => setTimeout(r, 10));
    expect(outputs.map((e) => [e.id, e.origin])).toEqual([
      ['x1', 'hop'],
      ['x2', 'hop'],
    ]);
    for (const e of outputs) {
      expect(e.error).toBeInstanceOf(RxServeError);
      expect(e.error!.message).toMatch(new RegExp(`^queueStep 'hop': XADD to stream '${stream}' failed: WRONGTYPE`));
    }
    await redis.del(stream);
    input.next(toEvent({ a: 3 }, { id: 'x3' }));
    input.complete();
    await done;
    expect(outputs[2].error).toBeUndefined();
    expect((await redis.xrange(stream, '-', '+')).map(([, f]) => fieldsOf(f).id)).toEqual(['x3']);
  });

  it("Redis unreachable through the client's retries: the events fail, nothing is stuck", async () => {
    const port = await new Promise<number>((resolve) => {
      const s = createServer().listen(0, '127.0.0.1', () => {
        const { port } = s.address() as { port: number };
        s.close(() => resolve(port));
      });
    });
    const client = new Redis(`redis://127.0.0.1:${port}`, { maxRetriesPerRequest: 1, retryStrategy: () => 20 });
    client.on('error', () => undefined);
    try {
      const out = await run([toEvent({ a: 1 }), toEvent({ a: 2 })], queueStep({ redis: client, stream: 'nowhere' }));
      expect(out.map((e) => e.error?.message)).toEqual([
        expect.stringMatching(/^queueStep 'queue': XADD to stream 'nowhere' failed: /),
        expect.stringMatching(/^queueStep 'queue': XADD to stream 'nowhere' failed: /),
      ]);
    } finally {
      client.disconnect();
    }
  });

  it('a client without pipelines (only call()) gets one XADD per event, with the same outcomes', async () => {
    const { stream } = names();
    const inner = new Redis(server.url);
    const calls: string[] = [];
    const bare = {
      call: (command: string, ...args: (string | number)[]) => (calls.push(command), inner.call(command, ...args)),
      duplicate: () => bare,
      quit: () => inner.quit(),
      disconnect: () => inner.disconnect(),
    };
    try {
      await redis.set(`${stream}:str`, 'x');
      const ok = await run(
        [toEvent({ a: 1 }, { id: 'p1' }), toEvent({ a: 2 }, { id: 'p2' })],
        queueStep({ redis: bare, stream, maxLen: 10 }),
      );
      const refused = await run([toEvent({ a: 3 })], queueStep({ redis: bare, stream: `${stream}:str` }));
      expect(ok.map((e) => e.error)).toEqual([undefined, undefined]);
      expect(calls).toEqual(['XADD', 'XADD', 'XADD']);
      expect((await redis.xrange(stream, '-', '+')).map(([id, f]) => [id, fieldsOf(f).id])).toEqual(
        ok.map((e) => [(e.metadata.queued as { id: string }).id, e.id]),
      );
      expect(refused[0].error!.message).toMatch(/XADD to stream '.*:str' failed: WRONGTYPE/);
    } finally {
      await inner.quit();
    }
  });

  it('errored events pass untouched and are not queued; a body JSON cannot carry fails its event only', async () => {
    const { stream } = names();
    const failed = withError(toEvent({ a: 1 }), new Error('earlier'), 'before');
    const out = await run([failed, toEvent({ big: 1n }), toEvent({ ok: true }, { id: 'ok' })], queueStep({ redis: server.url, stream }));
    expect(out[0]).toBe(failed);
    expect(out[1].error).toBeInstanceOf(TypeError);
    expect(out[1].error!.message).toMatch(/cannot be sent as JSON/);
    expect(out[2].error).toBeUndefined();
    expect((await redis.xrange(stream, '-', '+')).map(([, f]) => fieldsOf(f).id)).toEqual(['ok']);
  });

  it('over maxInFlight + maxQueue an event leaves at once with QueueFullError (and is not written)', async () => {
    const { stream } = names();
    const out = await run(
      [1, 2, 3].map((i) => toEvent({ i }, { id: `b${i}` })),
      queueStep({ redis: server.url, stream, maxInFlight: 1, maxQueue: 1 }),
    );
    expect(out.map((e) => e.error?.name ?? e.id)).toEqual(['QueueFullError', 'b1', 'b2']);
    expect(out[0].error).toBeInstanceOf(QueueFullError);
    expect(await redis.xlen(stream)).toBe(2);
  });

  it('thousands of events arrive in order, each once; maxLen trims the stream to about that length', async () => {
    const { stream } = names();
    const events = Array.from({ length: 3_000 }, (_, i) => toEvent({ i }, { id: `m${i}` }));
    const out = await run(events, queueStep({ redis: server.url, stream, maxLen: 500 }));
    expect(out.every((e) => e.error === undefined)).toBe(true);
    const length = await redis.xlen(stream);
    expect(length).toBeGreaterThanOrEqual(500);
    expect(length).toBeLessThan(1_000); // MAXLEN ~: whole macro nodes (100 entries each) are trimmed
    const last = (await redis.xrevrange(stream, '+', '-', 'COUNT', 1))[0];
    expect(fieldsOf(last[1]).id).toBe('m2999');
    const ids = out.map((e) => (e.metadata.queued as { id: string }).id);
    expect(new Set(ids).size).toBe(3_000);
  });

  it('a connection it opened is closed when the subscription ends; a given client is left open', async () => {
    const { stream } = names();
    const clients = async () =>
      String(await redis.client('LIST'))
        .trim()
        .split('\n').length;
    const before = await clients();
    await run([toEvent({ a: 1 })], queueStep({ redis: server.url, stream }));
    for (let i = 0; (await clients()) > before && i < 200; i++) await new Promise((r) => setTimeout(r, 10));
    expect(await clients()).toBe(before);
    const given = new Redis(server.url);
    try {
      await run([toEvent({ a: 2 })], queueStep({ redis: given, stream }));
      expect(await given.ping()).toBe('PONG');
    } finally {
      await given.quit();
    }
  });

  it("redisStream: a hostile 'headers' field cannot pollute a prototype; one that is not a JSON object of strings stays a plain header", async () => {
    const { stream, group } = names();
    await redis.xadd(stream, '*', 'body', '{}', 'headers', '{"__proto__":"polluted","x-a":"1"}');
    await redis.xadd(stream, '*', 'body', '{}', 'headers', '{"__proto__":{"polluted":"yes"}}');
    await redis.xadd(stream, '*', 'body', '{}', 'headers', 'not json', 'x-other', 'v');
    await redis.xadd(stream, '*', 'body', '{}', 'headers', '{"n":1}');
    const consumer = redisStream({ redis: server.url, stream, group, blockMs: 50 });
    const seen = await lastValueFrom(consumer.events$.pipe(take(4), toArray()));
    await consumer.close();
    expect(seen.map((e) => ({ ...e.headers }))).toEqual([
      { 'x-a': '1' },
      { headers: '{"__proto__":{"polluted":"yes"}}' },
      { headers: 'not json', 'x-other': 'v' },
      { headers: '{"n":1}' },
    ]);
    expect(seen.every((e) => Object.getPrototypeOf(e.headers) === Object.prototype)).toBe(true);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(seen.every((e) => e.metadata.sourceId === undefined && e.path === undefined)).toBe(true);
  });
});
