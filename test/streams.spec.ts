// rxserve/streams against a real redis-server (started here on a free loopback port, stopped in
// afterAll): exactly-once answers, the credit bound, consumers sharing a group, a consumer killed
// mid-run, dead-lettering, stale commits, malformed bodies, close(), and bad options.
import { execFileSync, spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { Registry } from 'prom-client';
import { filter, type Subscription } from 'rxjs';
import { describe, expect, it } from 'vitest';
import { ConfigError, Model, modelRunner } from '../src/index.js';
import { redisStream, type RedisStream } from '../src/streams/index.js';
import { redisAvailable, startRedis, withRedis, type RedisServer } from './support/redis.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Polls `check` until true; fails naming `what` after `timeoutMs`. */
async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

class Double extends Model<{ n: number }, { n: number; doubled: number }> {
  override predict(body: { n: number }) {
    return { n: body.n, doubled: body.n * 2 };
  }
}
const naive = (name = 'double') => modelRunner({ models: [{ endpointName: name, modelClass: Double, executionMechanism: 'naive' }] });

describe('the rxserve/streams entry (built package)', () => {
  const root = fileURLToPath(new URL('..', import.meta.url));
  const node = (args: string[]) => execFileSync(process.execPath, args, { cwd: root, encoding: 'utf8' }).trim();
  it("loads through exports in ESM and CJS; its ConfigError is the root entry's class", () => {
    const esm = node([
      '--input-type=module',
      '-e',
      `
      import { redisStream } from 'rxserve/streams';
      import { ConfigError } from 'rxserve';
      let e; try { redisStream({}); } catch (x) { e = x; }
      console.log(JSON.stringify([typeof redisStream, e instanceof ConfigError]));`,
    ]);
    expect(JSON.parse(esm)).toEqual(['function', true]);
    const cjs = node(['-e', `const { redisStream } = require('rxserve/streams'); console.log(typeof redisStream)`]);
    expect(cjs).toBe('function');
  });
  it("importing 'rxserve' never loads ioredis; rxserve/streams loads it only when a stream is subscribed", () => {
    const out = node([
      '--input-type=module',
      '-e',
      `
      import { createRequire } from 'node:module';
      await import('rxserve');
      const { redisStream } = await import('rxserve/streams');
      redisStream({ redis: 'redis://127.0.0.1:1', stream: 's', group: 'g' });
      const require = createRequire(process.cwd() + '/');
      const loaded = Object.keys(require.cache).some((k) => k.includes('/node_modules/ioredis/'));
      console.log(JSON.stringify(loaded));`,
    ]);
    expect(out).toBe('false');
  });

  it('without ioredis installed, subscribing errors events$ with a message saying how to install it', () => {
    // A copy of the built package in a temp node_modules that has its dependencies but no ioredis.
    const dir = mkdtempSync(join(tmpdir(), 'rxserve-no-ioredis-'));
    try {
      mkdirSync(join(dir, 'node_modules', 'rxserve'), { recursive: true });
      cpSync(join(root, 'dist'), join(dir, 'node_modules', 'rxserve', 'dist'), { recursive: true });
      cpSync(join(root, 'package.json'), join(dir, 'node_modules', 'rxserve', 'package.json'));
      for (const dep of ['rxjs', 'io-ts', 'fp-ts', 'piscina', 'tslib']) {
        if (existsSync(join(root, 'node_modules', dep))) symlinkSync(join(root, 'node_modules', dep), join(dir, 'node_modules', dep));
      }
      writeFileSync(
        join(dir, 'main.mjs'),
        `
        import { redisStream } from 'rxserve/streams';
        const requests = redisStream({ redis: 'redis://127.0.0.1:1', stream: 's', group: 'g' });
        requests.events$.subscribe({ error: (e) => { console.log(e.name + ': ' + e.message); process.exit(0); } });`,
      );
      const out = execFileSync(process.execPath, ['main.mjs'], { cwd: dir, encoding: 'utf8', timeout: 20_000 }).trim();
      expect(out).toBe("RxServeError: rxserve/streams needs the optional peer dependency 'ioredis': npm install ioredis@^6");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('redisStream options', () => {
  const bad: [string, unknown, string][] = [
    ['a missing stream', { redis: 'redis://127.0.0.1:1', group: 'g' }, 'redisStream.options.stream'],
    ['maxInFlight 0', { redis: 'redis://127.0.0.1:1', stream: 's', group: 'g', maxInFlight: 0 }, 'redisStream.options.maxInFlight'],
    ['a redis that is neither URL nor client', { redis: 42, stream: 's', group: 'g' }, 'redisStream.options.redis'],
    ['an unknown field', { redis: 'redis://127.0.0.1:1', stream: 's', group: 'g', maxInflight: 3 }, 'redisStream.options.maxInflight'],
    ['a bad startId', { redis: 'redis://127.0.0.1:1', stream: 's', group: 'g', startId: 'latest' }, 'redisStream.options.startId'],
    ['claimIdleMs -1', { redis: 'redis://127.0.0.1:1', stream: 's', group: 'g', claimIdleMs: -1 }, 'redisStream.options.claimIdleMs'],
    [
      'metrics without a registry',
      { redis: 'redis://127.0.0.1:1', stream: 's', group: 'g', metrics: {} },
      'redisStream.options.metrics.registry',
    ],
    [
      'deadLetterStream equal to stream',
      { redis: 'redis://127.0.0.1:1', stream: 's', group: 'g', deadLetterStream: 's' },
      'redisStream.options.deadLetterStream',
    ],
  ];
  it.each(bad)('%s is a ConfigError naming the field', (_, options, path) => {
    let error: unknown;
    try {
      redisStream(options as never);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).path).toBe(path);
    expect((error as Error).message).toContain(path);
  });
  it('commit() without an output stream is a ConfigError naming commit.options.stream', () => {
    const requests = redisStream({ redis: 'redis://127.0.0.1:1', stream: 's', group: 'g' });
    expect(() => requests.commit({} as never)).toThrow(/redisStream\.commit\.options\.stream/);
    return requests.close(); // never subscribed: nothing was opened
  });
});

describe.runIf(redisAvailable('rxserve/streams (test/streams.spec.ts)'))('redisStream against a real redis-server', () => {
  let server: RedisServer;
  let redis: Redis;
  let n = 0;
  /** Fresh stream, group and output names per test. */
  const names = () => {
    n++;
    return { stream: `req${n}`, group: `g${n}`, out: `out${n}` };
  };
  const produce = async (stream: string, bodies: unknown[], field = 'body') => {
    const ids: string[] = [];
    for (let i = 0; i < bodies.length; i += 500) {
      const pipe = redis.pipeline();
      for (const b of bodies.slice(i, i + 500)) pipe.xadd(stream, '*', field, typeof b === 'string' ? b : JSON.stringify(b));
      for (const [error, id] of (await pipe.exec())!) {
        if (error) throw error;
        ids.push(id as string);
      }
    }
    return ids;
  };
  const answers = async (out: string) =>
    (await redis.xrange(out, '-', '+')).map(([, fields]) => {
      const f: Record<string, string> = {};
      for (let i = 0; i < fields.length; i += 2) f[fields[i]] = fields[i + 1];
      return f;
    });
  const pendingCount = async (stream: string, group: string, consumer?: string) => {
    try {
      if (!consumer) return Number(((await redis.xpending(stream, group)) as [number])[0]);
      return ((await redis.xpending(stream, group, '-', '+', 10_000, consumer)) as unknown[]).length;
    } catch (error) {
      if (String(error).includes('NOGROUP')) return 0; // the consumer has not made its group yet
      throw error;
    }
  };
  const run = (requests: RedisStream, pipeline = naive(), out: string) => {
    let completed = false;
    const subscription = requests.events$
      .pipe(pipeline, requests.commit({ stream: out }))
      .subscribe({ complete: () => (completed = true) });
    return { subscription, completed: () => completed };
  };

  withRedis((s, r) => ((server = s), (redis = r)));

  it('answers thousands of messages through a pipeline exactly once, leaves nothing pending, and counts them (stats and Prometheus)', async () => {
    const { stream, group, out } = names();
    const ids = await produce(
      stream,
      Array.from({ length: 3_000 }, (_, i) => ({ n: i })),
    );
    const registry = new Registry();
    const requests = redisStream({ redis: server.url, stream, group, consumer: 'c1', metrics: { registry } });
    const r = run(requests, naive(), out);
    await until('3,000 commits', () => requests.stats().committed >= 3_000);
    const text = await registry.metrics();
    await requests.close();
    expect(r.completed()).toBe(true);
    const written = await answers(out);
    expect(written).toHaveLength(3_000);
    expect(new Set(written.map((a) => a.id))).toEqual(new Set(ids));
    const byId = new Map(ids.map((id, i) => [id, i]));
    for (const a of written) {
      expect(a.error).toBeUndefined();
      expect(JSON.parse(a.body)).toEqual({ n: byId.get(a.id), doubled: byId.get(a.id)! * 2 });
    }
    expect(await pendingCount(stream, group)).toBe(0);
    expect(requests.stats()).toEqual({
      read: 3_000,
      committed: 3_000,
      skipped: 0,
      reclaimed: 0,
      deadLettered: 0,
      dropped: 0,
      failed: 0,
      pending: 0,
      stalled: false,
    });
    expect(text).toContain(`rxserve_stream_messages_read_total{stream="${stream}",group="${group}",consumer="c1"} 3000`);
    expect(text).toContain(`rxserve_stream_messages_committed_total{stream="${stream}",group="${group}",consumer="c1"} 3000`);
    expect(text).toContain(`rxserve_stream_pending{stream="${stream}",group="${group}",consumer="c1"} 0`);
  });

  it('never holds more than maxInFlight uncommitted messages (in the pipeline or in Redis)', async () => {
    const { stream, group, out } = names();
    await produce(
      stream,
      Array.from({ length: 400 }, (_, i) => ({ n: i })),
    );
    let inModel = 0;
    let maxInModel = 0;
    let maxPendingSeen = 0;
    const requests = redisStream({ redis: server.url, stream, group, consumer: 'c1', maxInFlight: 8, batchSize: 64 });
    class Slow extends Model {
      override async predict(body: { n: number }) {
        maxInModel = Math.max(maxInModel, ++inModel);
        maxPendingSeen = Math.max(maxPendingSeen, requests.stats().pending);
        await sleep(2);
        inModel--;
        return body;
      }
    }
    run(
      requests,
      modelRunner({ models: [{ endpointName: 'slow', modelClass: Slow, executionMechanism: 'asyncio' }], maxInFlight: 100 }),
      out,
    );
    let maxInRedis = 0;
    while (requests.stats().committed < 400) {
      maxInRedis = Math.max(maxInRedis, await pendingCount(stream, group, 'c1'));
      if (requests.stats().committed < 400) await sleep(5);
    }
    await requests.close();
    expect(maxInModel).toBeGreaterThan(1); // the bound was reached, not avoided
    expect(maxInModel).toBeLessThanOrEqual(8);
    expect(maxPendingSeen).toBeLessThanOrEqual(8);
    expect(maxInRedis).toBeLessThanOrEqual(8);
    expect((await answers(out)).length).toBe(400);
  });

  it('two consumers in one group share the work; every message is answered once', async () => {
    const { stream, group, out } = names();
    const ids = await produce(
      stream,
      Array.from({ length: 600 }, (_, i) => ({ n: i })),
    );
    class Slowish extends Model {
      override async predict(body: unknown) {
        await sleep(1);
        return body;
      }
    }
    const pipeline = () => modelRunner({ models: [{ endpointName: 'm', modelClass: Slowish, executionMechanism: 'asyncio' }] });
    // Given clients speaking the other reply shapes: RESP2, and RESP3 maps as objects with numbers as strings.
    const resp2 = new Redis(server.url, { protocol: 2 });
    const resp3 = new Redis(server.url, { replyMapping: 'resp3', stringNumbers: true });
    const a = redisStream({ redis: resp2, stream, group, consumer: 'a', maxInFlight: 16, batchSize: 8 });
    const b = redisStream({ redis: resp3, stream, group, consumer: 'b', maxInFlight: 16, batchSize: 8 });
    run(a, pipeline(), out);
    run(b, pipeline(), out);
    await until('600 commits', () => a.stats().committed + b.stats().committed >= 600);
    await Promise.all([a.close(), b.close()]);
    await Promise.all([resp2.quit(), resp3.quit()]);
    expect(a.stats().committed).toBeGreaterThan(0);
    expect(b.stats().committed).toBeGreaterThan(0);
    const written = await answers(out);
    expect(written).toHaveLength(600);
    expect(new Set(written.map((w) => w.id))).toEqual(new Set(ids));
    expect(await pendingCount(stream, group)).toBe(0);
  });

  it('a consumer process killed with SIGKILL mid-run: another reclaims its pending messages and every message is answered exactly once', async () => {
    const { stream, group, out } = names();
    const ids = await produce(
      stream,
      Array.from({ length: 300 }, (_, i) => ({ n: i })),
    );
    const fixture = new URL('./fixtures/streamConsumer.mjs', import.meta.url);
    const child = spawn(process.execPath, [fixture.pathname, server.url, stream, group, 'victim', out, '20', '40'], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const exited = new Promise((r) => child.once('exit', r));
    let read = 0;
    child.stdout!.on('data', (d: Buffer) => {
      const m = /read (\d+)\n$/.exec(d.toString());
      if (m) read = Number(m[1]);
    });
    try {
      await until('the victim to read 40 messages', () => read >= 40);
    } finally {
      child.kill('SIGKILL');
      await exited;
    }
    const victimPending = await pendingCount(stream, group, 'victim');
    expect(victimPending).toBeGreaterThan(0); // it died holding messages
    const survivor = redisStream({ redis: server.url, stream, group, consumer: 'survivor', claimIdleMs: 300 });
    run(survivor, naive(), out);
    await until('every message answered', async () => (await redis.xlen(out)) >= 300);
    await sleep(400); // a duplicate, were there one, would land now
    await survivor.close();
    const written = await answers(out);
    expect(written.map((w) => w.id).sort()).toEqual([...ids].sort()); // each once
    expect(survivor.stats().reclaimed).toBe(victimPending);
    expect(await pendingCount(stream, group)).toBe(0);
  });

  it('a stalled consumer whose message was reclaimed does not answer it a second time (its commit is dropped and counted)', async () => {
    const { stream, group, out } = names();
    const [id] = await produce(stream, [{ n: 7 }]);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let stalledCalls = 0;
    class Stalled extends Model {
      override async predict(body: { n: number }) {
        stalledCalls++;
        await gate;
        return { n: body.n, by: 'stalled' };
      }
    }
    class Quick extends Model {
      override predict(body: { n: number }) {
        return { n: body.n, by: 'rescuer' };
      }
    }
    const stalled = redisStream({ redis: server.url, stream, group, consumer: 'stalled', claimIdleMs: 60_000 });
    run(stalled, modelRunner({ models: [{ endpointName: 'm', modelClass: Stalled, executionMechanism: 'asyncio' }] }), out);
    await until('the stalled consumer to hold the message', () => stalledCalls === 1);
    const rescuer = redisStream({ redis: server.url, stream, group, consumer: 'rescuer', claimIdleMs: 200 });
    run(rescuer, modelRunner({ models: [{ endpointName: 'm', modelClass: Quick, executionMechanism: 'naive' }] }), out);
    await until('the rescuer to answer', () => rescuer.stats().committed === 1);
    release();
    await until('the stalled commit to be settled', () => stalled.stats().dropped === 1);
    await Promise.all([stalled.close(), rescuer.close()]);
    const written = await answers(out);
    expect(written).toEqual([{ id, body: JSON.stringify({ n: 7, by: 'rescuer' }) }]);
    expect(stalled.stats()).toMatchObject({ read: 1, committed: 0, dropped: 1, pending: 0 });
    expect(rescuer.stats()).toMatchObject({ read: 1, reclaimed: 1, committed: 1 });
  });

  it('a message delivered maxDeliveries times goes to the dead-letter stream with its fields, id and deliveries, acknowledged', async () => {
    const { stream, group, out } = names();
    await redis.xgroup('CREATE', stream, group, '0', 'MKSTREAM');
    const [poison] = await produce(stream, [{ n: 1, poison: true }]);
    // Two consumers that took it and died (the second one reclaimed it from the first).
    await redis.xreadgroup('GROUP', group, 'crashed-1', 'COUNT', 1, 'STREAMS', stream, '>');
    await redis.xclaim(stream, group, 'crashed-2', 0, poison);
    const [good] = await produce(stream, [{ n: 2 }]);
    await sleep(250);
    const requests = redisStream({ redis: server.url, stream, group, consumer: 'c', claimIdleMs: 200, maxDeliveries: 2 });
    run(requests, naive(), out);
    await until('the dead letter and the good answer', () => requests.stats().deadLettered === 1 && requests.stats().committed === 1);
    await requests.close();
    const dead = await redis.xrange(`${stream}:dead`, '-', '+');
    expect(dead).toHaveLength(1);
    expect(dead[0][1]).toEqual(['body', JSON.stringify({ n: 1, poison: true }), 'id', poison, 'deliveries', '2']);
    expect((await answers(out)).map((a) => a.id)).toEqual([good]); // the poison message never reached the pipeline again
    expect(await pendingCount(stream, group)).toBe(0);
    expect(requests.stats()).toMatchObject({ read: 1, reclaimed: 0, deadLettered: 1 });
  });

  it('a commit Redis refuses (the output key is not a stream) is counted as failed, not dropped; the message stays pending', async () => {
    const { stream, group, out } = names();
    await redis.set(out, 'not a stream');
    await produce(stream, [{ n: 1 }]);
    const requests = redisStream({ redis: server.url, stream, group, consumer: 'c', closeTimeoutMs: 1_000 });
    run(requests, naive(), out);
    await until('the refused commit to be counted', () => requests.stats().failed === 1);
    expect(requests.stats()).toMatchObject({ committed: 0, dropped: 0, failed: 1 });
    await requests.close();
    expect(await pendingCount(stream, group)).toBe(1);
  });

  it('a message with a missing or non-JSON body field is answered with a TypeError naming the field; others are unaffected', async () => {
    const { stream, group, out } = names();
    const [notJson] = await produce(stream, ['{"n": oops'], 'body');
    const [missing] = await produce(stream, [{ n: 1 }], 'payload');
    const [good] = await produce(stream, [{ n: 3 }]);
    const requests = redisStream({ redis: server.url, stream, group, consumer: 'c' });
    run(requests, naive(), out);
    await until('three commits', () => requests.stats().committed === 3);
    await requests.close();
    const byId = new Map((await answers(out)).map((a) => [a.id, a]));
    expect(byId.get(notJson)!.error).toMatch(/^TypeError: redisStream: message \S+ field 'body' is not valid JSON/);
    expect(byId.get(missing)!.error).toMatch(/^TypeError: redisStream: message \S+ has no field 'body'/);
    expect(JSON.parse(byId.get(good)!.body)).toEqual({ n: 3, doubled: 6 });
    expect(byId.get(good)!.error).toBeUndefined();
    expect(await pendingCount(stream, group)).toBe(0);
  });

  it('close() under load: events$ completes, what was in flight is committed, nothing stays pending, the rest is left for others; a given client stays open', async () => {
    const { stream, group, out } = names();
    const ids = await produce(
      stream,
      Array.from({ length: 1_000 }, (_, i) => ({ n: i })),
    );
    const given = new Redis(server.url);
    let calls = 0;
    let closed: Promise<void> | undefined;
    let pendingAtClose = 0;
    try {
      const first = redisStream({ redis: given, stream, group, consumer: 'first', maxInFlight: 64 });
      class Slow extends Model {
        override async predict(body: unknown) {
          // close() from inside the pipeline, so messages are certainly in flight when it starts.
          if (++calls === 150) {
            pendingAtClose = first.stats().pending;
            closed = first.close();
          }
          await sleep(3);
          return body;
        }
      }
      const r = run(
        first,
        modelRunner({ models: [{ endpointName: 'm', modelClass: Slow, executionMechanism: 'asyncio' }], maxInFlight: 64 }),
        out,
      );
      await until('close() to be called', () => closed !== undefined);
      await closed;
      expect(pendingAtClose).toBeGreaterThan(0);
      expect(r.completed()).toBe(true);
      expect(first.stats().pending).toBe(0);
      expect(await pendingCount(stream, group, 'first')).toBe(0);
      expect(first.stats().committed).toBe(first.stats().read);
      expect(await given.ping()).toBe('PONG'); // not ours to close
      const second = redisStream({ redis: server.url, stream, group, consumer: 'second' });
      run(second, naive(), out);
      await until('the rest answered', () => first.stats().committed + second.stats().committed >= 1_000);
      await second.close();
      const written = await answers(out);
      expect(written.map((w) => w.id).sort()).toEqual([...ids].sort());
    } finally {
      await given.quit();
    }
  });

  it('a consumer restarted under the same name first answers the messages it held in its earlier life', async () => {
    const { stream, group, out } = names();
    await redis.xgroup('CREATE', stream, group, '0', 'MKSTREAM');
    const held = await produce(stream, [{ n: 1 }, { n: 2 }, { n: 3 }]);
    await redis.xreadgroup('GROUP', group, 'same', 'COUNT', 3, 'STREAMS', stream, '>'); // then it died
    const [fresh] = await produce(stream, [{ n: 4 }]);
    const requests = redisStream({ redis: server.url, stream, group, consumer: 'same' });
    run(requests, naive(), out);
    await until('four commits', () => requests.stats().committed === 4);
    await requests.close();
    expect((await answers(out)).map((a) => a.id)).toEqual([...held, fresh]);
    expect(requests.stats()).toMatchObject({ read: 4, reclaimed: 0 });
    expect(await pendingCount(stream, group)).toBe(0);
  });

  it('Redis crashing mid-run (SIGKILL, started again empty on the same port): the consumer reconnects, makes its group again and answers what Redis holds', async () => {
    const own = await startRedis();
    const client = new Redis(own.url, { maxRetriesPerRequest: null });
    client.on('error', () => undefined);
    let second: RedisServer | undefined;
    try {
      for (let i = 0; i < 50; i++) await client.xadd('req', '*', 'body', JSON.stringify({ n: i }));
      // The first ten answer; the rest of the first batch waits until Redis has crashed, so the crash
      // is mid-run whatever the machine's speed.
      let open!: () => void;
      const gate = new Promise<void>((resolve) => (open = resolve));
      class Slow extends Model {
        override async predict(body: { n: number }) {
          if (body.n >= 10 && body.n < 100) await gate;
          else await sleep(10);
          return body;
        }
      }
      const requests = redisStream({ redis: own.url, stream: 'req', group: 'g', consumer: 'c', blockMs: 200, maxInFlight: 8 });
      run(requests, modelRunner({ models: [{ endpointName: 'm', modelClass: Slow, executionMechanism: 'asyncio' }] }), 'out');
      await until('the first answers', async () => (await client.xlen('out')) >= 10);
      await own.kill(); // mid-run, messages in flight; with --save '' everything is gone
      expect(requests.stats().pending).toBeGreaterThan(0);
      await sleep(300);
      second = await startRedis(own.port);
      open();
      const after: string[] = [];
      for (let i = 0; i < 50; i++) after.push((await client.xadd('req', '*', 'body', JSON.stringify({ n: 100 + i })))!);
      await until('the answers after the restart', async () => (await client.xlen('out')) === after.length);
      await requests.close();
      const written = (await client.xrange('out', '-', '+')).map(([, f]) => f[1]);
      expect(written).toEqual(after);
      expect(requests.stats().pending).toBe(0); // what was in flight at the crash was settled (dropped: Redis lost it)
      expect(Number(((await client.xpending('req', 'g')) as [number])[0])).toBe(0);
    } finally {
      client.disconnect();
      await second?.stop();
      await own.stop();
    }
  });

  it('events$ takes one subscription; a second gets an error, not a second reader', async () => {
    const { stream, group } = names();
    const requests = redisStream({ redis: server.url, stream, group });
    const first: Subscription = requests.events$.subscribe();
    let error: unknown;
    requests.events$.subscribe({ error: (e) => (error = e) });
    expect(String(error)).toMatch(/events\$ takes one subscription/);
    first.unsubscribe();
    await requests.close();
  });

  it('requests.filter (issue 22: 100 messages, maxInFlight 8, odd ones kept): every kept one is answered, the rest acknowledged without an answer and counted skipped; close() is prompt', async () => {
    const { stream, group, out } = names();
    const ids = await produce(
      stream,
      Array.from({ length: 100 }, (_, i) => ({ n: i })),
    );
    const registry = new Registry();
    const requests = redisStream({ redis: server.url, stream, group, consumer: 'c', maxInFlight: 8, metrics: { registry } });
    const modelSaw: number[] = [];
    class Record extends Model<{ n: number }> {
      override predict(body: { n: number }) {
        modelSaw.push(body.n);
        return body;
      }
    }
    requests.events$
      .pipe(
        requests.filter((e) => (e.body as { n: number }).n % 2 === 1),
        modelRunner({ models: [{ endpointName: 'm', modelClass: Record, executionMechanism: 'naive' }] }),
        requests.commit({ stream: out }),
      )
      .subscribe();
    await until('all 100 settled', () => requests.stats().committed + requests.stats().skipped === 100, 15_000);
    const text = await registry.metrics();
    const t0 = Date.now();
    await requests.close(); // closeTimeoutMs is 30 s: nothing may be left for it to wait on
    expect(Date.now() - t0).toBeLessThan(3_000);
    const odd = ids.filter((_, i) => i % 2 === 1);
    expect((await answers(out)).map((a) => a.id)).toEqual(odd);
    expect(modelSaw).toEqual(Array.from({ length: 50 }, (_, i) => 2 * i + 1));
    expect(await pendingCount(stream, group)).toBe(0);
    expect(requests.stats()).toEqual({
      read: 100,
      committed: 50,
      skipped: 50,
      reclaimed: 0,
      deadLettered: 0,
      dropped: 0,
      failed: 0,
      pending: 0,
      stalled: false,
    });
    expect(text).toContain(`rxserve_stream_messages_skipped_total{stream="${stream}",group="${group}",consumer="c"} 50`);
  });

  /** Collects the warnings with `code` that this process emits until `stop()`. */
  const warnings = (code: string) => {
    const seen: Error[] = [];
    const listener = (w: Error) => {
      if ((w as Error & { code?: string }).code === code) seen.push(w);
    };
    process.on('warning', listener);
    return { seen, stop: () => process.off('warning', listener) };
  };

  it('a plain rxjs filter that ends up holding every credit: the consumer reports the stall (stats().stalled, the rxserve_stream_stalled gauge, one warning naming requests.filter); close() does not wait for what the pipeline dropped', async () => {
    const { stream, group, out } = names();
    await produce(
      stream,
      Array.from({ length: 100 }, (_, i) => ({ n: i })),
    );
    const registry = new Registry();
    const warned = warnings('RXSERVE_STREAM_STALLED');
    try {
      const requests = redisStream({
        redis: server.url,
        stream,
        group,
        consumer: 'c',
        maxInFlight: 8,
        claimIdleMs: 300,
        metrics: { registry },
      });
      requests.events$
        .pipe(
          filter((e) => (e.body as { n: number }).n % 2 === 1),
          naive(),
          requests.commit({ stream: out }),
        )
        .subscribe();
      await until('the stall to be reported', () => requests.stats().stalled === true, 10_000);
      // The defect of issue 22: dropped events hold the credit (7 of 8: a read waits for 2 free), the
      // other messages are never read.
      const held = requests.stats().pending;
      expect(held).toBeGreaterThanOrEqual(7);
      expect(requests.stats().read).toBeLessThan(100);
      expect(requests.stats().skipped).toBe(0);
      expect(await registry.metrics()).toContain(`rxserve_stream_stalled{stream="${stream}",group="${group}",consumer="c"} 1`);
      await sleep(1_000); // more than three claimIdleMs: still one warning for this stall
      expect(warned.seen).toHaveLength(1);
      expect(warned.seen[0].message).toContain('requests.filter');
      expect(warned.seen[0].message).toContain(`'c'`);
      const t0 = Date.now();
      await requests.close(); // closeTimeoutMs is 30 s; the pipeline has completed, so nothing more can be committed
      expect(Date.now() - t0).toBeLessThan(3_000);
      expect(requests.stats().stalled).toBe(false);
      expect(await pendingCount(stream, group, 'c')).toBe(held); // left pending: another consumer reclaims them
    } finally {
      warned.stop();
    }
  });

  it('a stall from slow requests: reported once per episode, over when commits resume, again on the next', async () => {
    const { stream, group, out } = names();
    const gates = [0, 1].map(() => {
      let open!: () => void;
      const opened = new Promise<void>((r) => (open = r));
      return { open, opened };
    });
    class Gated extends Model<{ gate: number }> {
      override async predict(body: { gate: number }) {
        await gates[body.gate].opened;
        return body;
      }
    }
    const registry = new Registry();
    const warned = warnings('RXSERVE_STREAM_STALLED');
    try {
      const requests = redisStream({
        redis: server.url,
        stream,
        group,
        consumer: 'slow',
        maxInFlight: 2,
        claimIdleMs: 200,
        metrics: { registry },
      });
      run(requests, modelRunner({ models: [{ endpointName: 'm', modelClass: Gated, executionMechanism: 'asyncio' }] }), out);
      await produce(stream, [{ gate: 0 }, { gate: 0 }]);
      await until('the first stall', () => requests.stats().stalled);
      await sleep(700); // several reclaim rounds of the loop: still one warning
      expect(warned.seen).toHaveLength(1);
      gates[0].open();
      await until('the first two answered', () => requests.stats().committed === 2);
      expect(requests.stats().stalled).toBe(false);
      expect(await registry.metrics()).toContain(`rxserve_stream_stalled{stream="${stream}",group="${group}",consumer="slow"} 0`);
      await produce(stream, [{ gate: 1 }, { gate: 1 }]);
      await until('the second stall', () => requests.stats().stalled);
      // The read loop notices within claimIdleMs / 2 of stats().
      await until('the second warning', () => warned.seen.length === 2, 2_000);
      expect(warned.seen[1].message).toMatch(/redisStream 'slow' .* has read nothing for 200 ms/);
      gates[1].open();
      await until('all four answered', () => requests.stats().committed === 4);
      await requests.close();
      expect(await pendingCount(stream, group)).toBe(0);
    } finally {
      warned.stop();
    }
  });

  it('requests.filter with hostile input: a predicate that throws fails that event only (answered with its error); errored events pass without being asked; a non-function is a ConfigError', async () => {
    const { stream, group, out } = names();
    const [boom, kept, skipped] = await produce(stream, [{ n: 'boom' }, { n: 1 }, { n: 2 }]);
    const [notJson] = await produce(stream, ['{"n": oops']);
    const requests = redisStream({ redis: server.url, stream, group, consumer: 'c' });
    expect(() => requests.filter('odd' as never)).toThrow(ConfigError);
    expect(() => requests.filter('odd' as never)).toThrow(/redisStream\.filter\.predicate/);
    const asked: string[] = [];
    requests.events$
      .pipe(
        requests.filter((e) => {
          asked.push(e.id);
          const { n } = e.body as { n: unknown };
          if (typeof n !== 'number') throw new RangeError(`n is ${String(n)}`);
          return n % 2 === 1;
        }),
        naive(),
        requests.commit({ stream: out }),
      )
      .subscribe();
    await until('all four settled', () => requests.stats().committed + requests.stats().skipped === 4);
    await requests.close();
    const byId = new Map((await answers(out)).map((a) => [a.id, a]));
    expect([...byId.keys()].sort()).toEqual([boom, kept, notJson].sort());
    expect(byId.get(boom)!.error).toBe('RangeError: n is boom');
    expect(byId.get(notJson)!.error).toMatch(/^TypeError: redisStream: message \S+ field 'body' is not valid JSON/);
    expect(JSON.parse(byId.get(kept)!.body)).toEqual({ n: 1, doubled: 2 });
    expect(asked).not.toContain(notJson);
    expect(byId.has(skipped)).toBe(false);
    expect(requests.stats()).toMatchObject({ read: 4, committed: 3, skipped: 1, pending: 0 });
    expect(await pendingCount(stream, group)).toBe(0);
  });

  it('a body nested deeper than maxBodyDepth is answered with a TypeError naming the field and never reaches a thread_pool model; the 20 after it are answered (issue 22 item 1)', async () => {
    const { stream, group, out } = names();
    const deep = (levels: number) => '{"a":'.repeat(levels) + '1' + '}'.repeat(levels);
    const deepIds = await produce(stream, [deep(5_000), deep(257)]);
    const ids = await produce(
      stream,
      Array.from({ length: 20 }, (_, x) => ({ x })),
    );
    const requests = redisStream({ redis: server.url, stream, group, consumer: 'c' });
    const fixture = new URL('./fixtures/workerModels.mjs', import.meta.url).href;
    const pipeline = modelRunner({
      models: [
        {
          endpointName: 'affine',
          modelClass: { module: fixture, export: 'Affine' },
          executionMechanism: 'thread_pool',
          params: { a: 2, b: 1 },
        },
      ],
    });
    run(requests, pipeline, out);
    await until('22 answers', () => requests.stats().committed === 22);
    await requests.close();
    const byId = new Map((await answers(out)).map((a) => [a.id, a]));
    expect(byId.size).toBe(22);
    for (const id of deepIds) {
      expect(byId.get(id)!.error).toMatch(
        new RegExp(
          `^TypeError: redisStream: message ${id} field 'body' is refused: body is nested deeper than 256 levels \\(at body(\\.a)+`,
        ),
      );
      expect(byId.get(id)!.body).toBe('null');
    }
    ids.forEach((id, x) => {
      expect(byId.get(id)!.error).toBeUndefined();
      expect(JSON.parse(byId.get(id)!.body)).toEqual({ y: 2 * x + 1 });
    });
    expect(await pendingCount(stream, group)).toBe(0);
  });

  it('maxBodyDepth is an option: 256 levels pass by default, a lower limit refuses them', async () => {
    const { stream, group, out } = names();
    const deep = (levels: number) => '{"a":'.repeat(levels) + '1' + '}'.repeat(levels);
    const [at256, at3, at4] = await produce(stream, [deep(256), deep(3), deep(4)]);
    const requests = redisStream({ redis: server.url, stream, group, consumer: 'c' });
    const strict = redisStream({ redis: server.url, stream, group: `${group}-strict`, consumer: 'c', maxBodyDepth: 3 });
    class Echo extends Model {
      override predict(body: unknown) {
        return { ok: typeof body === 'object' };
      }
    }
    const echo = () => modelRunner({ models: [{ endpointName: 'echo', modelClass: Echo, executionMechanism: 'naive' }] });
    run(requests, echo(), out);
    run(strict, echo(), `${out}-strict`);
    await until('three answers each', () => requests.stats().committed === 3 && strict.stats().committed === 3);
    await Promise.all([requests.close(), strict.close()]);
    const errors = async (o: string) => new Map((await answers(o)).map((a) => [a.id, a.error]));
    expect(await errors(out)).toEqual(
      new Map([
        [at256, undefined],
        [at3, undefined],
        [at4, undefined],
      ]),
    );
    const strictErrors = await errors(`${out}-strict`);
    expect(strictErrors.get(at3)).toBeUndefined();
    expect(strictErrors.get(at256)).toMatch(/nested deeper than 3 levels/);
    expect(strictErrors.get(at4)).toMatch(/nested deeper than 3 levels \(at body\.a\.a\.a\)/);
    expect(() => redisStream({ redis: server.url, stream, group, maxBodyDepth: 0 })).toThrow(/redisStream\.options\.maxBodyDepth/);
  });

  it('a body with __proto__ or constructor.prototype keys is refused like over HTTP: answered with a TypeError saying why, never handed to a model (issue 22 item 8)', async () => {
    const { stream, group, out } = names();
    const [proto, nested, ctor, good] = await produce(stream, [
      '{"__proto__": {"isAdmin": true}, "n": 1}',
      '{"n": 2, "user": {"__proto__": {"isAdmin": true}}}',
      '{"n": 3, "constructor": {"prototype": {"isAdmin": true}}}',
      '{"n": 4, "constructor": "a plain field"}',
    ]);
    const seen: unknown[] = [];
    class Spy extends Model {
      override predict(body: { n: number }) {
        seen.push(body);
        return { n: body.n, isAdmin: (body as { isAdmin?: unknown }).isAdmin ?? null };
      }
    }
    const requests = redisStream({ redis: server.url, stream, group, consumer: 'c' });
    run(requests, modelRunner({ models: [{ endpointName: 'spy', modelClass: Spy, executionMechanism: 'naive' }] }), out);
    await until('four answers', () => requests.stats().committed === 4);
    await requests.close();
    expect(seen).toEqual([{ n: 4, constructor: 'a plain field' }]);
    const byId = new Map((await answers(out)).map((a) => [a.id, a]));
    expect(byId.get(proto)!.error).toBe(
      `TypeError: redisStream: message ${proto} field 'body' is refused: body has a '__proto__' key (at body.__proto__)`,
    );
    expect(byId.get(nested)!.error).toBe(
      `TypeError: redisStream: message ${nested} field 'body' is refused: body has a '__proto__' key (at body.user.__proto__)`,
    );
    expect(byId.get(ctor)!.error).toBe(
      `TypeError: redisStream: message ${ctor} field 'body' is refused: body has a 'constructor.prototype' key (at body.constructor.prototype)`,
    );
    for (const id of [proto, nested, ctor]) expect(byId.get(id)!.body).toBe('null');
    expect(JSON.parse(byId.get(good)!.body)).toEqual({ n: 4, isAdmin: null });
    expect(({} as { isAdmin?: unknown }).isAdmin).toBeUndefined();
  });

  it('an answer dropped by the pipeline does not block close() past closeTimeoutMs', async () => {
    const { stream, group, out } = names();
    await produce(stream, [{ n: 1 }, { n: 2 }]);
    const requests = redisStream({ redis: server.url, stream, group, consumer: 'c', closeTimeoutMs: 300 });
    requests.events$
      .pipe(
        filter((e) => (e.body as { n: number }).n === 1),
        requests.commit({ stream: out }),
      )
      .subscribe();
    await until('one commit', () => requests.stats().committed === 1 && requests.stats().read === 2);
    const t0 = Date.now();
    await requests.close();
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(await pendingCount(stream, group, 'c')).toBe(1); // left for another consumer to reclaim
  });
});
