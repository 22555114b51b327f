// serve() against a hand-written fastify route calling the same model (the floor), under
// autocannon (64 connections, loopback, the server in a process of its own); and invoker()
// without HTTP against the bare step, for rxserve's own cost per request.
import autocannon from 'autocannon';
import { createGraph, invoker } from 'rxserve';
import { startChild } from './child.js';
import { drive } from './driver.js';

const BODY = { x: 1, text: 'hello world', tags: ['a', 'b'] };
const CONNECTIONS = 64;

export interface HttpRow {
  readonly name: string;
  readonly requestsPerSecond: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly errors: number;
  /** The server process's CPU time (user + system) per request during the measured run. */
  readonly cpuUs: number;
}

export interface ServeFigures {
  readonly http: readonly HttpRow[];
  /** µs per request, 64 outstanding: the bare step, and the same step through invoker().invoke. */
  readonly step: number;
  readonly invoker: number;
}

function load(url: string, seconds: number): Promise<autocannon.Result> {
  return autocannon({
    url,
    method: 'POST',
    connections: CONNECTIONS,
    duration: seconds,
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(BODY),
  });
}

async function httpRow(name: string, kind: string, seconds: number): Promise<HttpRow> {
  const target = await startChild('serveTarget.mjs', [kind]);
  try {
    await load(target.url, 1); // warm-up: JIT, pools, connections
    const cpu0 = await target.cpu();
    const result = await load(target.url, seconds);
    const cpu1 = await target.cpu();
    return {
      name,
      cpuUs: (cpu1 - cpu0) / result.requests.total,
      requestsPerSecond: result.requests.average,
      p50Ms: result.latency.p50,
      p99Ms: result.latency.p99,
      errors: result.errors + result.non2xx + result.timeouts,
    };
  } finally {
    await target.stop();
  }
}

const naiveStep = () => {
  const graph = createGraph({ name: 'bench' });
  const op = graph.modelRunner({ models: [{ endpointName: 'noop', modelClass: 'Model', executionMechanism: 'naive' }], ordered: false });
  return { graph, op };
};

/** µs per request through invoker().invoke, `inFlight` outstanding. */
async function invokerRun(client: ReturnType<typeof invoker>, total: number, inFlight: number): Promise<number> {
  const t0 = performance.now();
  let started = 0;
  await new Promise<void>((resolve, reject) => {
    let finished = 0;
    const next = (): void => {
      if (started >= total) return;
      started++;
      client.invoke(BODY).then((out) => {
        if (out.error) return reject(out.error);
        if (++finished === total) resolve();
        else next();
      }, reject);
    };
    for (let i = 0; i < inFlight; i++) next();
  });
  return ((performance.now() - t0) * 1000) / total;
}

/** The median of 5 runs after a warm-up. */
async function medianOf(once: () => Promise<number>): Promise<number> {
  await once();
  const runs: number[] = [];
  for (let i = 0; i < 5; i++) runs.push(await once());
  runs.sort((a, b) => a - b);
  return runs[2];
}

export async function runServe(quick: boolean): Promise<ServeFigures> {
  const seconds = quick ? 2 : 6;
  const http = [
    await httpRow('(a) fastify route calling the model (floor)', 'raw', seconds),
    await httpRow('(b) serve(), one-model modelRunner, naive', 'serve', seconds),
    await httpRow('(b′) serve() over a bare map(): the HTTP front and invoker only', 'serve-map', seconds),
    await httpRow('(c) serve(), one-model modelRunner, thread_pool', 'serve-thread', seconds),
  ];
  const total = quick ? 20_000 : 100_000;
  const bare = naiveStep();
  await bare.graph.ready();
  const step = await medianOf(async () => (await drive(bare.op, total, 64, () => BODY)).perEventUs);
  await bare.graph.close();
  const wrapped = naiveStep();
  const client = invoker(wrapped.op, { graph: wrapped.graph });
  await wrapped.graph.ready();
  const viaInvoker = await medianOf(() => invokerRun(client, total, 64));
  await client.close();
  return { http, step, invoker: viaInvoker };
}

export function serveMarkdown(f: ServeFigures): string {
  const floor = f.http[0];
  const row = (r: HttpRow) =>
    `| ${r.name} | ${Math.round(r.requestsPerSecond).toLocaleString('en-US')} | ${(r.requestsPerSecond / floor.requestsPerSecond).toFixed(2)}× | ${r.p50Ms} | ${(r.p50Ms / Math.max(floor.p50Ms, 1e-9)).toFixed(2)}× | ${r.p99Ms} | ${Math.round(r.cpuUs)} | ${r.errors} |`;
  return [
    `| server (${CONNECTIONS} connections) | requests/s | vs (a) | p50 ms | vs (a) | p99 ms | server CPU µs/request | errors |`,
    '|---|---|---|---|---|---|---|---|',
    ...f.http.map(row),
    '',
    '| in process, 64 outstanding | µs/request |',
    '|---|---|',
    `| the bare step (modelRunner, naive) | ${f.step.toFixed(2)} |`,
    `| (d) invoker().invoke over the same step | ${f.invoker.toFixed(2)} |`,
    `| (d) − the bare step (the invoker, each event's AbortSignal included) | ${(f.invoker - f.step).toFixed(2)} |`,
  ].join('\n');
}
