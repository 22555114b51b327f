// Redis Streams: messages/s through redisStream → a naive no-op modelRunner → commit, against a
// hand-written ioredis loop doing the same work (XREADGROUP COUNT 64 → handler → XADD + XACK
// pipelined), both on one loopback redis-server started here. One run each; the ratio is ours / raw.
import { spawn, type ChildProcess } from 'node:child_process';
import { Redis } from 'ioredis';
import { Model, modelRunner } from 'rxserve';
import { redisStream } from 'rxserve/streams';
import { hasRedis, startRedis } from '../test/support/redis.js';

class NoOp extends Model {
  override predict(body: unknown) {
    return body;
  }
}

export interface StreamsResult {
  readonly skipped?: string;
  readonly messages: number;
  readonly rawPerSec: number;
  readonly oursPerSec: number;
  /** Worker processes with a 5 ms model, 32 in flight each: messages/s with 1 and with 2. */
  readonly scaleOut?: { messages: number; one: number; two: number };
  /** Two workers, one SIGKILLed holding messages: ms from the kill until every message is answered. */
  readonly recovery?: { claimIdleMs: number; held: number; ms: number };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function worker(url: string, stream: string, consumer: string, claimIdleMs: number): ChildProcess {
  const fixture = new URL('./fixtures/streamWorker.mjs', import.meta.url).pathname;
  return spawn(process.execPath, [fixture, url, stream, 'g', consumer, `${stream}:out`, '5', '32', String(claimIdleMs)], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
}

async function stopAll(children: ChildProcess[]): Promise<void> {
  await Promise.all(
    children.map((c) =>
      c.exitCode !== null || c.signalCode !== null ? undefined : new Promise((r) => (c.once('exit', r), c.kill('SIGTERM'))),
    ),
  );
}

/** Waits until `names` are all consumers of the group (each made its first read). */
async function joined(redis: Redis, stream: string, names: string[]): Promise<void> {
  for (let i = 0; i < 500; i++) {
    const consumers = (await redis.xinfo('CONSUMERS', stream, 'g').catch(() => [])) as unknown[][];
    const seen = new Set(consumers.map((c) => String(c[1])));
    if (names.every((n) => seen.has(n))) return;
    await sleep(20);
  }
  throw new Error(`streams bench: workers ${names.join(', ')} did not start`);
}

async function answered(redis: Redis, out: string, total: number, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while ((await redis.xlen(out)) < total) {
    if (Date.now() > deadline) throw new Error(`streams bench: ${out} never reached ${total} answers`);
    await sleep(5);
  }
}

/** Messages/s through `n` worker processes sharing one group (time from the first XADD to the last answer). */
async function scaleOut(url: string, redis: Redis, stream: string, n: number, total: number): Promise<number> {
  await redis.xgroup('CREATE', stream, 'g', '$', 'MKSTREAM');
  const names = Array.from({ length: n }, (_, i) => `w${i}`);
  const children = names.map((name) => worker(url, stream, name, 30_000));
  try {
    await joined(redis, stream, names);
    const t0 = performance.now();
    await produce(redis, stream, total);
    await answered(redis, `${stream}:out`, total);
    return (total * 1000) / (performance.now() - t0);
  } finally {
    await stopAll(children);
  }
}

/** Two workers; one is SIGKILLed while holding messages; ms until every message is answered. */
async function recovery(url: string, redis: Redis, claimIdleMs: number): Promise<{ claimIdleMs: number; held: number; ms: number }> {
  const stream = 'recovery';
  const total = 2_000;
  await redis.xgroup('CREATE', stream, 'g', '$', 'MKSTREAM');
  const children = [worker(url, stream, 'victim', claimIdleMs), worker(url, stream, 'survivor', claimIdleMs)];
  try {
    await joined(redis, stream, ['victim', 'survivor']);
    await produce(redis, stream, total);
    const pendingOf = async () => ((await redis.xpending(stream, 'g', '-', '+', 1_000, 'victim')) as unknown[]).length;
    for (let i = 0; (await redis.xlen(`${stream}:out`)) < total / 4 || (await pendingOf()) === 0; i++) {
      if (i > 10_000) throw new Error('streams bench: the victim never held messages');
      await sleep(2);
    }
    children[0].kill('SIGKILL');
    const killed = performance.now();
    await new Promise((r) => children[0].once('exit', r));
    const held = await pendingOf();
    await answered(redis, `${stream}:out`, total);
    return { claimIdleMs, held, ms: performance.now() - killed };
  } finally {
    await stopAll(children);
  }
}

async function produce(redis: Redis, stream: string, total: number): Promise<void> {
  for (let i = 0; i < total; i += 1_000) {
    const pipe = redis.pipeline();
    for (let j = i; j < Math.min(total, i + 1_000); j++)
      pipe.xadd(stream, '*', 'body', JSON.stringify({ n: j, text: 'some request text' }));
    await pipe.exec();
  }
}

/** The floor: what a careful hand-written consumer does. */
async function rawLoop(url: string, stream: string, total: number): Promise<number> {
  const redis = new Redis(url);
  await redis.xgroup('CREATE', stream, 'g', '0', 'MKSTREAM');
  const t0 = performance.now();
  let done = 0;
  for (let rounds = 0; done < total && rounds < total; rounds++) {
    const reply = (await redis.xreadgroup('GROUP', 'g', 'raw', 'COUNT', 64, 'BLOCK', 100, 'STREAMS', stream, '>')) as unknown;
    const entries = readEntries(reply);
    if (entries.length === 0) continue;
    const pipe = redis.pipeline();
    for (const [id, fields] of entries) {
      const body = JSON.parse(fields[fields.indexOf('body') + 1]) as unknown;
      pipe.xadd(`${stream}:out`, '*', 'id', id, 'body', JSON.stringify(body));
      pipe.xack(stream, 'g', id);
    }
    await pipe.exec();
    done += entries.length;
  }
  const ms = performance.now() - t0;
  await redis.quit();
  return (total * 1000) / ms;
}

async function ours(url: string, stream: string, total: number): Promise<number> {
  const requests = redisStream({ redis: url, stream, group: 'g', consumer: 'ours' });
  const t0 = performance.now();
  await new Promise<void>((resolve, reject) => {
    requests.events$
      .pipe(
        modelRunner({ models: [{ endpointName: 'noop', modelClass: NoOp, executionMechanism: 'naive' }] }),
        requests.commit({ stream: `${stream}:out` }),
      )
      .subscribe({ next: () => requests.stats().committed >= total && resolve(), error: reject });
  });
  const ms = performance.now() - t0;
  await requests.close();
  return (total * 1000) / ms;
}

function readEntries(reply: unknown): [string, string[]][] {
  if (!Array.isArray(reply) || reply.length === 0) return [];
  const entries: unknown = Array.isArray(reply[0]) ? (reply[0] as unknown[])[1] : reply[1];
  return Array.isArray(entries) ? (entries as [string, string[]][]) : [];
}

export async function runStreams(quick: boolean): Promise<StreamsResult> {
  const messages = quick ? 10_000 : 50_000;
  if (!hasRedis) return { skipped: 'redis-server not found (apt-get install -y redis-server)', messages, rawPerSec: 0, oursPerSec: 0 };
  const server = await startRedis();
  const redis = new Redis(server.url);
  try {
    await produce(redis, 'warm-raw', 2_000);
    await produce(redis, 'warm-ours', 2_000);
    await rawLoop(server.url, 'warm-raw', 2_000);
    await ours(server.url, 'warm-ours', 2_000);
    await produce(redis, 'raw', messages);
    await produce(redis, 'ours', messages);
    const rawPerSec = await rawLoop(server.url, 'raw', messages);
    const oursPerSec = await ours(server.url, 'ours', messages);
    const scaled = quick ? 3_000 : 10_000;
    const one = await scaleOut(server.url, redis, 'scale1', 1, scaled);
    const two = await scaleOut(server.url, redis, 'scale2', 2, scaled);
    return {
      messages,
      rawPerSec,
      oursPerSec,
      scaleOut: { messages: scaled, one, two },
      recovery: await recovery(server.url, redis, 1_000),
    };
  } finally {
    await redis.quit();
    await server.stop();
  }
}

export function streamsMarkdown(r: StreamsResult): string {
  if (r.skipped) return `Skipped: ${r.skipped}.`;
  const k = (x: number) => Math.round(x).toLocaleString('en-US');
  return [
    `${r.messages.toLocaleString('en-US')} messages through one consumer on a loopback redis-server, one run each:`,
    '',
    '| consumer | messages/s |',
    '|---|---:|',
    `| hand-written ioredis loop (XREADGROUP COUNT 64 → handler → XADD + XACK pipelined) | ${k(r.rawPerSec)} |`,
    `| redisStream → naive no-op modelRunner → commit (Lua: pending check + XADD + XACK) | ${k(r.oursPerSec)} |`,
    `| ratio (ours / raw; goal ≥ 0.8) | ${(r.oursPerSec / r.rawPerSec).toFixed(3)} |`,
    ...(r.scaleOut
      ? [
          '',
          `Scale-out: ${r.scaleOut.messages.toLocaleString('en-US')} messages, worker processes in one group, each a 5 ms (sleeping) model with 32 in flight:`,
          '',
          '| workers | messages/s |',
          '|---:|---:|',
          `| 1 | ${k(r.scaleOut.one)} |`,
          `| 2 | ${k(r.scaleOut.two)} |`,
          `| ratio (goal ≥ 1.8) | ${(r.scaleOut.two / r.scaleOut.one).toFixed(3)} |`,
        ]
      : []),
    ...(r.recovery
      ? [
          '',
          `Recovery: of two workers, one is killed with SIGKILL holding ${r.recovery.held} messages; every message is answered ` +
            `${k(r.recovery.ms)} ms after the kill, with claimIdleMs ${k(r.recovery.claimIdleMs)} ` +
            `(expected between claimIdleMs and 1.5 × claimIdleMs, plus processing).`,
        ]
      : []),
  ].join('\n');
}
