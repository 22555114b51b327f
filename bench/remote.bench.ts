// Remote steps (DESIGN §19). HTTP: requests/s of remoteStep at 64 in flight against a loopback JSON
// service in a process of its own, beside undici's request() called by hand over one Agent with the
// same 64 in flight (the floor, goal ≥ 0.9×) and Node's global fetch (reported). Queue: events/s of
// queueStep's XADDs against a hand-written ioredis pipeline writing the same fields (goal ≥ 0.8×),
// on a loopback redis-server started here. Rows interleaved, median of the runs; the load average
// is printed with the figures (the machine is shared).
import { loadavg } from 'node:os';
import { Redis } from 'ioredis';
import { remoteStep } from 'rxserve';
import { queueStep } from 'rxserve/streams';
import { hasRedis, startRedis } from '../test/support/redis.js';
import { startChild } from './child.js';
import { drive } from './driver.js';

const BODY = { x: 1, text: 'hello world', tags: ['a', 'b'] };
const IN_FLIGHT = 64;

export interface RemoteResult {
  readonly requests: number;
  readonly runs: number;
  readonly http: { readonly undici: number; readonly ours: number; readonly fetch: number };
  readonly queue?: { readonly events: number; readonly pipeline: number; readonly ours: number };
  readonly queueSkipped?: string;
  readonly load: readonly [number, number];
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** `concurrency` loops, each sending one request after the other, until `total` were answered. */
async function loops(total: number, concurrency: number, one: (i: number) => Promise<unknown>): Promise<number> {
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < total) await one(next++);
    }),
  );
  return (total * 1000) / (performance.now() - t0);
}

async function http(total: number, runs: number): Promise<RemoteResult['http']> {
  // Node's own fetch first: loading undici installs its dispatcher for fetch when none is set.
  void globalThis.fetch;
  void globalThis.Headers;
  const { Agent } = await import('undici');
  const target = await startChild('httpEcho.mjs', []);
  const url = new URL(target.url);
  try {
    const undiciRun = async () => {
      const agent = new Agent({ connections: IN_FLIGHT });
      try {
        return await loops(total, IN_FLIGHT, async (i) => {
          const res = await agent.request({
            origin: url.origin,
            path: '/',
            method: 'POST',
            headers: { 'content-type': 'application/json', 'x-request-id': String(i) },
            body: JSON.stringify(BODY),
          });
          return JSON.parse(await res.body.text()) as unknown;
        });
      } finally {
        await agent.close();
      }
    };
    const oursRun = async () => (await drive(remoteStep({ url: target.url, maxInFlight: IN_FLIGHT }), total, IN_FLIGHT, () => BODY)).perSecond;
    const fetchRun = () =>
      loops(total, IN_FLIGHT, async (i) => {
        const res = await fetch(target.url, { method: 'POST', headers: { 'content-type': 'application/json', 'x-request-id': String(i) }, body: JSON.stringify(BODY) });
        return res.json();
      });
    // Warm-up: JIT, connections.
    await undiciRun();
    await oursRun();
    await fetchRun();
    const figures = { undici: [] as number[], ours: [] as number[], fetch: [] as number[] };
    for (let r = 0; r < runs; r++) {
      figures.undici.push(await undiciRun());
      figures.ours.push(await oursRun());
      figures.fetch.push(await fetchRun());
    }
    return { undici: median(figures.undici), ours: median(figures.ours), fetch: median(figures.fetch) };
  } finally {
    await target.stop();
  }
}

async function queue(total: number, runs: number): Promise<RemoteResult['queue']> {
  const server = await startRedis();
  const redis = new Redis(server.url);
  try {
    const bodies = Array.from({ length: 4096 }, (_, i) => ({ ...BODY, n: i }));
    // The floor: XADDs of the same fields (body as JSON, id), 256 per pipeline, one pipeline at a time.
    const pipelineRun = async (stream: string) => {
      const t0 = performance.now();
      for (let i = 0; i < total; i += 256) {
        const pipe = redis.pipeline();
        for (let j = i; j < Math.min(total, i + 256); j++) pipe.xadd(stream, '*', 'body', JSON.stringify(bodies[j % bodies.length]), 'id', String(j));
        await pipe.exec();
      }
      return (total * 1000) / (performance.now() - t0);
    };
    // Ours: the events fed with credit (256 outstanding, queueStep's default maxInFlight).
    const oursRun = async (stream: string) => (await drive(queueStep({ redis: server.url, stream }), total, 256, (i) => bodies[i])).perSecond;
    await pipelineRun('warm-raw');
    await oursRun('warm-ours');
    const figures = { pipeline: [] as number[], ours: [] as number[] };
    for (let r = 0; r < runs; r++) {
      figures.pipeline.push(await pipelineRun(`raw${r}`));
      figures.ours.push(await oursRun(`ours${r}`));
      await redis.del(`raw${r}`, `ours${r}`);
    }
    return { events: total, pipeline: median(figures.pipeline), ours: median(figures.ours) };
  } finally {
    await redis.quit();
    await server.stop();
  }
}

export async function runRemote(quick: boolean): Promise<RemoteResult> {
  const requests = quick ? 5_000 : 20_000;
  const runs = quick ? 1 : 3;
  const [l1, l5] = loadavg();
  const httpFigures = await http(requests, runs);
  if (!hasRedis) return { requests, runs, http: httpFigures, queueSkipped: 'redis-server not found (apt-get install -y redis-server)', load: [l1, l5] };
  return { requests, runs, http: httpFigures, queue: await queue(quick ? 20_000 : 100_000, runs), load: [l1, l5] };
}

export function remoteMarkdown(r: RemoteResult): string {
  const k = (x: number) => Math.round(x).toLocaleString('en-US');
  const ratio = (a: number, b: number) => (a / b).toFixed(3);
  return [
    `Load average at the start: ${r.load[0].toFixed(2)} (1 min), ${r.load[1].toFixed(2)} (5 min). Median of ${r.runs} interleaved run(s) after a warm-up.`,
    '',
    `HTTP: ${r.requests.toLocaleString('en-US')} POSTs of a small JSON body, ${IN_FLIGHT} in flight, to a loopback JSON service in a process of its own (keep-alive):`,
    '',
    '| client | requests/s | ratio to undici |',
    '|---|---:|---:|',
    `| undici \`Agent.request()\` by hand (${IN_FLIGHT} loops, JSON answer parsed) | ${k(r.http.undici)} | 1.000 |`,
    `| \`remoteStep\` (${IN_FLIGHT} in flight; goal ≥ 0.9) | ${k(r.http.ours)} | ${ratio(r.http.ours, r.http.undici)} |`,
    `| Node's global \`fetch\` (${IN_FLIGHT} loops, \`res.json()\`) | ${k(r.http.fetch)} | ${ratio(r.http.fetch, r.http.undici)} |`,
    '',
    ...(r.queue
      ? [
          `Queue: ${r.queue.events.toLocaleString('en-US')} events written to a stream on a loopback redis-server (fields body and id):`,
          '',
          '| writer | events/s |',
          '|---|---:|',
          `| ioredis pipeline by hand (XADD × 256 per pipeline, one at a time) | ${k(r.queue.pipeline)} |`,
          `| \`queueStep\` (256 in flight; one pipeline of XADDs per event-loop turn) | ${k(r.queue.ours)} |`,
          `| ratio (ours / pipeline; goal ≥ 0.8) | ${ratio(r.queue.ours, r.queue.pipeline)} |`,
        ]
      : [`Queue: skipped (${r.queueSkipped}).`]),
  ].join('\n');
}
