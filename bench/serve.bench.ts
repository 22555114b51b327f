// serve() against a hand-written fastify route calling the same model (the floor; and the same
// floor with node's nextTick feedback in the state serve()'s process runs in, see
// bench/fixtures/serveTarget.mjs), under
// autocannon (64 connections, loopback, the server in a process of its own), and against the
// Python peer (a FastAPI route on uvicorn + uvloop + httptools, skipped when Debian's modules are
// absent); and invoker() without HTTP against the bare step, for rxserve's own cost per request.
import { spawnSync } from 'node:child_process';
import { cpus, loadavg } from 'node:os';
import autocannon from 'autocannon';
import { createGraph, invoker } from 'rxserve';
import { startChild } from './child.js';
import { drive } from './driver.js';

const BODY = { x: 1, text: 'hello world', tags: ['a', 'b'] };
const CONNECTIONS = 64;

export interface HttpRow {
  readonly name: string;
  /** Why the row was not run (its peer is not installed). */
  readonly skipped?: string;
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
  /** The 1-minute load average before the HTTP rows and after them (the machine may be shared). */
  readonly load: readonly [number, number];
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

async function httpRow(
  name: string,
  kind: string,
  seconds: number,
  fixture = 'serveTarget.mjs',
  extra: readonly string[] = [],
): Promise<HttpRow> {
  const target = await startChild(fixture, [kind, ...extra]);
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

/** Debian's python3 with FastAPI, uvicorn, uvloop and httptools (RXSERVE_BENCH_PYTHON to use another). */
const PYTHON = process.env.RXSERVE_BENCH_PYTHON ?? '/usr/bin/python3';
const FASTAPI = '(f) FastAPI route on uvicorn (uvloop, httptools), one worker, returning the parsed body: the Python peer';
const FLOOR_TICKED =
  "(a′) the same route, its process.nextTick called before it listens (as serve() and most apps do): V8's feedback for node's tick objects then goes megamorphic, as in (b)";
const FASTAPI_PLAIN = '(f′) the same, hand-tuned: json.dumps into a plain Response (no jsonable_encoder)';

/** Why the FastAPI row cannot run, or undefined when it can. */
function fastapiMissing(): string | undefined {
  const probe = spawnSync(PYTHON, ['-c', 'import fastapi, uvicorn, uvloop, httptools'], { encoding: 'utf8' });
  if (probe.error !== undefined) return `${PYTHON} not found`;
  return probe.status === 0
    ? undefined
    : `${PYTHON} lacks ${/No module named '([^']+)'/.exec(probe.stderr)?.[1] ?? 'fastapi/uvicorn/uvloop/httptools'}`;
}

export async function runServe(quick: boolean): Promise<ServeFigures> {
  const seconds = quick ? 2 : 6;
  // The in-process rows first, in a fresh process: measured after the HTTP rows (autocannon's
  // six runs in this process) invoke() read 10–17 µs against ~2.7 µs here — the bench's own state,
  // not the invoker's.
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
  const missing = fastapiMissing();
  const loadBefore = loadavg()[0];
  const http: HttpRow[] = [
    await httpRow('(a) fastify route calling the model (floor)', 'raw', seconds),
    await httpRow(FLOOR_TICKED, 'raw-ticked', seconds),
    await httpRow('(b) serve(), one-model modelRunner, naive', 'serve', seconds),
    await httpRow('(b′) serve() over a bare map(): the HTTP front and invoker only', 'serve-map', seconds),
    await httpRow('(c) serve(), one-model modelRunner, thread_pool', 'serve-thread', seconds),
    ...[FASTAPI, FASTAPI_PLAIN].map((name) => ({ name, skipped: missing, requestsPerSecond: 0, p50Ms: 0, p99Ms: 0, errors: 0, cpuUs: 0 })),
  ];
  if (missing === undefined) {
    http[http.findIndex((r) => r.name === FASTAPI)] = await httpRow(FASTAPI, PYTHON, seconds, 'fastapiTarget.mjs', ['default']);
    http[http.findIndex((r) => r.name === FASTAPI_PLAIN)] = await httpRow(FASTAPI_PLAIN, PYTHON, seconds, 'fastapiTarget.mjs', ['plain']);
  }
  return { http, step, invoker: viaInvoker, load: [loadBefore, loadavg()[0]] };
}

/** Goals of issue 26 (1): (b) against (a) and against the FastAPI row. */
const GOALS = { rps: 0.75, p50: 1.4, cpu: 1.35, vsFastapi: 1.6 };

export function serveMarkdown(f: ServeFigures): string {
  const floor = f.http[0];
  const peer = f.http.find((r) => r.name === FASTAPI && r.skipped === undefined);
  const ratio = (x: number, y: number) => `${(x / Math.max(y, 1e-9)).toFixed(2)}×`;
  const row = (r: HttpRow) =>
    r.skipped !== undefined
      ? `| ${r.name} | skipped (${r.skipped}) | | | | | | | | |`
      : `| ${r.name} | ${Math.round(r.requestsPerSecond).toLocaleString('en-US')} | ${ratio(r.requestsPerSecond, floor.requestsPerSecond)} | ${peer ? ratio(r.requestsPerSecond, peer.requestsPerSecond) : '—'} | ${r.p50Ms} | ${ratio(r.p50Ms, floor.p50Ms)} | ${r.p99Ms} | ${Math.round(r.cpuUs)} | ${ratio(r.cpuUs, floor.cpuUs)} | ${r.errors} |`;
  const b = f.http.find((r) => r.name.startsWith('(b)'))!;
  const ticked = f.http.find((r) => r.name === FLOOR_TICKED);
  const met = (ok: boolean) => (ok ? 'met' : '**not met**');
  const goals = [
    `Goals for (b), issue 26 (1), this run: requests/s ≥ ${GOALS.rps}× (a): ${ratio(b.requestsPerSecond, floor.requestsPerSecond)}, ${met(b.requestsPerSecond >= GOALS.rps * floor.requestsPerSecond)}; ` +
      `p50 ≤ ${GOALS.p50}× (a): ${ratio(b.p50Ms, floor.p50Ms)}, ${met(b.p50Ms <= GOALS.p50 * floor.p50Ms)}; ` +
      `server CPU per request ≤ ${GOALS.cpu}× (a): ${ratio(b.cpuUs, floor.cpuUs)}, ${met(b.cpuUs <= GOALS.cpu * floor.cpuUs)}; ` +
      (peer
        ? `requests/s ≥ ${GOALS.vsFastapi}× (f): ${ratio(b.requestsPerSecond, peer.requestsPerSecond)}, ${met(b.requestsPerSecond >= GOALS.vsFastapi * peer.requestsPerSecond)}.`
        : `≥ ${GOALS.vsFastapi}× (f): not measured (the FastAPI row was skipped).`),
    ...(ticked
      ? [
          ` Against (a′), the floor in the V8 state (b) runs in: requests/s ${ratio(b.requestsPerSecond, ticked.requestsPerSecond)}, p50 ${ratio(b.p50Ms, ticked.p50Ms)}, server CPU per request ${ratio(b.cpuUs, ticked.cpuUs)}.`,
        ]
      : []),
  ];
  return [
    `| server (${CONNECTIONS} connections) | requests/s | vs (a) | vs (f) | p50 ms | vs (a) | p99 ms | server CPU µs/request | vs (a) | errors |`,
    '|---|---|---|---|---|---|---|---|---|---|',
    ...f.http.map(row),
    '',
    ...goals,
    '',
    `Load average (1 min) before and after the HTTP rows: ${f.load[0].toFixed(1)} / ${f.load[1].toFixed(1)} (${cpus().length} cores).`,
    '',
    '| in process, 64 outstanding | µs/request |',
    '|---|---|',
    `| the bare step (modelRunner, naive) | ${f.step.toFixed(2)} |`,
    `| (d) invoker().invoke over the same step | ${f.invoker.toFixed(2)} |`,
    `| (d) − the bare step (the invoker, each event's AbortSignal included) | ${(f.invoker - f.step).toFixed(2)} |`,
  ].join('\n');
}
