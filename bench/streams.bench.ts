// Redis Streams: messages/s through redisStream → a naive no-op modelRunner → commit, against a
// hand-written ioredis loop doing the same work (XREADGROUP COUNT 64 → handler → XADD + XACK
// pipelined), both on one loopback redis-server started here. One run each; the ratio is ours / raw.
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
}

async function produce(redis: Redis, stream: string, total: number): Promise<void> {
  for (let i = 0; i < total; i += 1_000) {
    const pipe = redis.pipeline();
    for (let j = i; j < Math.min(total, i + 1_000); j++) pipe.xadd(stream, '*', 'body', JSON.stringify({ n: j, text: 'some request text' }));
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
      .pipe(modelRunner({ models: [{ endpointName: 'noop', modelClass: NoOp, executionMechanism: 'naive' }] }), requests.commit({ stream: `${stream}:out` }))
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
    return { messages, rawPerSec, oursPerSec };
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
    `| ratio (ours / raw; goal ≥ 0.8) | ${(r.oursPerSec / r.rawPerSec).toFixed(2)} |`,
  ].join('\n');
}
