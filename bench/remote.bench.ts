// Remote steps (docs/design.md §19). HTTP: requests/s of remoteStep at 64 in flight against a loopback JSON
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

/** One row: its median rate, and the measuring process's CPU per item (median), µs. */
export interface Row {
  readonly perSecond: number;
  readonly cpuUs: number;
}

export interface RemoteResult {
  readonly requests: number;
  readonly runs: number;
  readonly http: { readonly undici: Row; readonly ours: Row; readonly fetch: Row };
  readonly queue?: { readonly events: number; readonly pipeline: Row; readonly ours: Row };
  readonly queueSkipped?: string;
  readonly load: readonly [number, number];
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** Runs `run` (which handles `total` items) and measures its rate and this process's CPU per item. */
async function timed(total: number, run: () => Promise<unknown>): Promise<Row> {
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await run();
  const ms = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  return { perSecond: (total * 1000) / ms, cpuUs: (cpu.user + cpu.system) / total };
}

/** The medians of interleaved rows: `runs` rounds, each running every row once, after one warm-up round. */
async function rounds<K extends string>(runs: number, rows: Record<K, (round: number) => Promise<Row>>): Promise<Record<K, Row>> {
  const names = Object.keys(rows) as K[];
  for (const name of names) await rows[name](-1);
  const seen = Object.fromEntries(names.map((n) => [n, [] as Row[]])) as unknown as Record<K, Row[]>;
  for (let r = 0; r < runs; r++) for (const name of names) seen[name].push(await rows[name](r));
  return Object.fromEntries(
    names.map((n) => [n, { perSecond: median(seen[n].map((x) => x.perSecond)), cpuUs: median(seen[n].map((x) => x.cpuUs)) }]),
  ) as Record<K, Row>;
}

/** `concurrency` loops, each sending one request after the other, until `total` were answered. */
async function loops(total: number, concurrency: number, one: (i: number) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < total) await one(next++);
    }),
  );
}

async function http(total: number, runs: number): Promise<RemoteResult['http']> {
  // Node's own fetch first: loading undici installs its dispatcher for fetch when none is set.
  void globalThis.fetch;
  void globalThis.Headers;
  const { Agent } = await import('undici');
  const target = await startChild('httpEcho.mjs', []);
  const url = new URL(target.url);
  try {
    const undiciRun = () =>
      timed(total, async () => {
        const agent = new Agent({ connections: IN_FLIGHT });
        try {
          await loops(total, IN_FLIGHT, async (i) => {
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
      });
    const oursRun = () => timed(total, () => drive(remoteStep({ url: target.url, maxInFlight: IN_FLIGHT }), total, IN_FLIGHT, () => BODY));
    // fetch is ~10× slower: a fifth of the requests keeps the section short, its rate comparable.
    const fetchTotal = Math.ceil(total / 5);
    const fetchRun = () =>
      timed(fetchTotal, () =>
        loops(fetchTotal, IN_FLIGHT, async (i) => {
          const res = await fetch(target.url, {
            method: 'POST',
            headers: { 'content-type': 'application/json', 'x-request-id': String(i) },
            body: JSON.stringify(BODY),
          });
          return res.json();
        }),
      );
    return await rounds(runs, { undici: undiciRun, ours: oursRun, fetch: fetchRun });
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
    const pipelineRun = (round: number) =>
      timed(total, async () => {
        for (let i = 0; i < total; i += 256) {
          const pipe = redis.pipeline();
          for (let j = i; j < Math.min(total, i + 256); j++)
            pipe.xadd(`raw${round}`, '*', 'body', JSON.stringify(bodies[j % bodies.length]), 'id', String(j));
          await pipe.exec();
        }
        await redis.del(`raw${round}`);
      });
    // Ours: the events fed with credit (256 outstanding, queueStep's default maxInFlight).
    const oursRun = (round: number) =>
      timed(total, async () => {
        await drive(queueStep({ redis: server.url, stream: `ours${round}` }), total, 256, (i) => bodies[i]);
        await redis.del(`ours${round}`);
      });
    return { events: total, ...(await rounds(runs, { pipeline: pipelineRun, ours: oursRun })) };
  } finally {
    await redis.quit();
    await server.stop();
  }
}

export async function runRemote(quick: boolean): Promise<RemoteResult> {
  const requests = quick ? 5_000 : 20_000;
  const runs = quick ? 1 : 5;
  const [l1, l5] = loadavg();
  const httpFigures = await http(requests, runs);
  if (!hasRedis)
    return { requests, runs, http: httpFigures, queueSkipped: 'redis-server not found (apt-get install -y redis-server)', load: [l1, l5] };
  return { requests, runs, http: httpFigures, queue: await queue(quick ? 20_000 : 100_000, runs), load: [l1, l5] };
}

export function remoteMarkdown(r: RemoteResult): string {
  const k = (x: number) => Math.round(x).toLocaleString('en-US');
  const ratio = (a: Row, b: Row) => (a.perSecond / b.perSecond).toFixed(3);
  const cpu = (x: Row) => x.cpuUs.toFixed(1);
  return [
    `Load average at the start: ${r.load[0].toFixed(2)} (1 min), ${r.load[1].toFixed(2)} (5 min). Medians of ${r.runs} interleaved run(s) after a warm-up; CPU is the measuring process's (user + system) per item.`,
    '',
    `HTTP: ${r.requests.toLocaleString('en-US')} POSTs of a small JSON body, ${IN_FLIGHT} in flight, to a loopback JSON service in a process of its own (keep-alive):`,
    '',
    '| client | requests/s | ratio to undici | client CPU µs/request |',
    '|---|---:|---:|---:|',
    `| undici \`Agent.request()\` by hand (${IN_FLIGHT} loops, JSON answer parsed) | ${k(r.http.undici.perSecond)} | 1.000 | ${cpu(r.http.undici)} |`,
    `| \`remoteStep\` (${IN_FLIGHT} in flight; goal ≥ 0.9) | ${k(r.http.ours.perSecond)} | ${ratio(r.http.ours, r.http.undici)} | ${cpu(r.http.ours)} |`,
    `| Node's global \`fetch\` (${IN_FLIGHT} loops, \`res.json()\`; a fifth of the requests) | ${k(r.http.fetch.perSecond)} | ${ratio(r.http.fetch, r.http.undici)} | ${cpu(r.http.fetch)} |`,
    '',
    ...(r.queue
      ? [
          `Queue: ${r.queue.events.toLocaleString('en-US')} events written to a stream on a loopback redis-server (fields body as JSON and id):`,
          '',
          '| writer | events/s | ratio | client CPU µs/event |',
          '|---|---:|---:|---:|',
          `| ioredis pipeline by hand (XADD × 256 per pipeline, one at a time) | ${k(r.queue.pipeline.perSecond)} | 1.000 | ${cpu(r.queue.pipeline)} |`,
          `| \`queueStep\` (256 in flight; one pipeline of XADDs per event-loop turn; goal ≥ 0.8) | ${k(r.queue.ours.perSecond)} | ${ratio(r.queue.ours, r.queue.pipeline)} | ${cpu(r.queue.ours)} |`,
        ]
      : [`Queue: skipped (${r.queueSkipped}).`]),
  ].join('\n');
}
