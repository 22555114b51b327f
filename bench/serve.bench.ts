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
import { startChild, type Child } from './child.js';
import { drive } from './driver.js';
import { formatRatio, interleaved, quantile, ratioOf, type Paired } from './paired.js';

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
  /**
   * Rows of the paired judge: its figures are the medians of its rounds, and these are the
   * medians (quartiles) of its rounds' ratios to (a) in the same rounds.
   */
  readonly paired?: PairedRatios;
}

type Ratio = Pick<Paired<unknown>, 'ratio' | 'low' | 'high'>;

interface PairedRatios {
  readonly rps: Ratio;
  readonly p50: Ratio;
  readonly cpu: Ratio;
}

export interface ServeFigures {
  readonly http: readonly HttpRow[];
  /** µs per request, 64 outstanding: the bare step, and the same step through invoker().invoke. */
  readonly step: number;
  readonly invoker: number;
  /** The 1-minute load average before the HTTP rows and after them (the machine may be shared). */
  readonly load: readonly [number, number];
  /** The paired judge's rounds, the sets of server processes they ran on, and each burst's length. */
  readonly rounds: number;
  readonly epochs: number;
  readonly burstSeconds: number;
  /** (b) against (a′), and against (f) when it ran, paired in the same rounds. */
  readonly vsTicked?: PairedRatios;
  readonly vsFastapi?: PairedRatios;
}

function load(url: string, seconds: number): autocannon.Instance & PromiseLike<autocannon.Result> {
  return autocannon({
    url,
    method: 'POST',
    connections: CONNECTIONS,
    duration: seconds,
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(BODY),
  }) as unknown as autocannon.Instance & PromiseLike<autocannon.Result>; // without a callback: the instance, thenable
}

/** One load burst's figures (the same fields as a row). */
type Burst = Omit<HttpRow, 'name' | 'skipped' | 'paired'>;

/**
 * `seconds` of load on `target`: requests/s over the burst's wall time, p50/p99 from every
 * response's own latency (autocannon's histogram holds whole milliseconds, too coarse for ratios
 * of 1–3 ms), the server's CPU per request.
 */
async function burst(target: Child, seconds: number): Promise<Burst> {
  const latencies: number[] = [];
  const cpu0 = await target.cpu();
  const t0 = performance.now();
  const run = load(target.url, seconds);
  run.on('response', (_client: unknown, _status: number, _bytes: number, ms: number) => latencies.push(ms));
  const result = await run;
  const elapsed = (performance.now() - t0) / 1000;
  const cpu1 = await target.cpu();
  latencies.sort((x, y) => x - y);
  return {
    cpuUs: (cpu1 - cpu0) / result.requests.total,
    requestsPerSecond: result.requests.total / elapsed,
    p50Ms: quantile(latencies, 0.5),
    p99Ms: quantile(latencies, 0.99),
    errors: result.errors + result.non2xx + result.timeouts,
  };
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
    await burst(target, 1); // warm-up: JIT, pools, connections
    return { name, ...(await burst(target, seconds)) };
  } finally {
    await target.stop();
  }
}

/** base/ours from ours/base: the rounds' ratios inverted (the quartiles swap). */
const invert = (r: Ratio): Ratio => ({ ratio: 1 / r.ratio, low: 1 / r.high, high: 1 / r.low });

const median = (xs: readonly number[]): number =>
  quantile(
    [...xs].sort((x, y) => x - y),
    0.5,
  );

const ratios = (ours: readonly Burst[], base: readonly Burst[]): PairedRatios => ({
  rps: ratioOf(ours, base, (x) => x.requestsPerSecond),
  p50: ratioOf(ours, base, (x) => x.p50Ms),
  cpu: ratioOf(ours, base, (x) => x.cpuUs),
});

/**
 * The goal's judge: the servers of `rows` all up at once in their own processes, and load bursts
 * of `seconds` on each in turn, round after round (the order rotating: bench/paired.ts), so a
 * burst of load from elsewhere on this shared machine hits a round's servers alike. The rounds run
 * in `epochs`, each on servers started anew: some of a server's speed is decided once per process
 * (whether V8's feedback for node's tick objects goes megamorphic, see (a′)), so one set of
 * processes is one draw of it, and several draws per run keep one lucky or unlucky process from
 * deciding the ratio. Each row's figures are the medians of its rounds; its ratios to the first
 * row are the medians (quartiles) of the rounds' ratios.
 */
async function pairedRows(
  rows: readonly { name: string; kind: string; fixture?: string; extra?: readonly string[] }[],
  rounds: number,
  seconds: number,
  epochs: number,
): Promise<{ rows: HttpRow[]; figures: Burst[][] }> {
  const figures: Burst[][] = rows.map((): Burst[] => []);
  for (let epoch = 0; epoch < epochs; epoch++) {
    const targets: Child[] = [];
    try {
      for (const row of rows) targets.push(await startChild(row.fixture ?? 'serveTarget.mjs', [row.kind, ...(row.extra ?? [])]));
      const own = await interleaved(
        targets.map((target) => () => burst(target, seconds)),
        { rounds: Math.ceil(rounds / epochs), warmups: 1 },
      );
      own.forEach((bursts, i) => figures[i]!.push(...bursts));
    } finally {
      for (const target of targets) await target.stop();
    }
  }
  const rowsOut = rows.map(({ name }, i): HttpRow => {
    const own = figures[i]!;
    return {
      name,
      requestsPerSecond: median(own.map((x) => x.requestsPerSecond)),
      p50Ms: median(own.map((x) => x.p50Ms)),
      p99Ms: median(own.map((x) => x.p99Ms)),
      cpuUs: median(own.map((x) => x.cpuUs)),
      errors: own.reduce((n, x) => n + x.errors, 0),
      paired: ratios(own, figures[0]!),
    };
  });
  return { rows: rowsOut, figures };
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
  const seconds = quick ? 2 : 3;
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
  const rounds = quick ? 3 : 9;
  const epochs = quick ? 1 : 3;
  const burstSeconds = quick ? 1 : 1.5;
  const judge = await pairedRows(
    [
      { name: '(a) fastify route calling the model (floor)', kind: 'raw' },
      { name: FLOOR_TICKED, kind: 'raw-ticked' },
      { name: '(b) serve(), one-model modelRunner, naive', kind: 'serve' },
      // The Python peer in the same rounds: the goal against it is a ratio too.
      ...(missing === undefined ? [{ name: FASTAPI, kind: PYTHON, fixture: 'fastapiTarget.mjs', extra: ['default'] }] : []),
    ],
    rounds,
    burstSeconds,
    epochs,
  );
  const skipped = (name: string): HttpRow => ({ name, skipped: missing, requestsPerSecond: 0, p50Ms: 0, p99Ms: 0, errors: 0, cpuUs: 0 });
  const http: HttpRow[] = [
    ...judge.rows.slice(0, 3),
    await httpRow('(b′) serve() over a bare map(): the HTTP front and invoker only', 'serve-map', seconds),
    await httpRow('(c) serve(), one-model modelRunner, thread_pool', 'serve-thread', seconds),
    judge.rows[3] ?? skipped(FASTAPI),
    missing === undefined ? await httpRow(FASTAPI_PLAIN, PYTHON, seconds, 'fastapiTarget.mjs', ['plain']) : skipped(FASTAPI_PLAIN),
  ];
  return {
    http,
    step,
    invoker: viaInvoker,
    load: [loadBefore, loadavg()[0]],
    rounds,
    epochs,
    burstSeconds,
    vsTicked: ratios(judge.figures[2]!, judge.figures[1]!),
    ...(judge.figures[3] ? { vsFastapi: ratios(judge.figures[2]!, judge.figures[3]) } : {}),
  };
}

/** Goals of issue 26 (1): (b) against (a) and against the FastAPI row. */
const GOALS = { rps: 0.75, p50: 1.4, cpu: 1.35, vsFastapi: 1.6 };

export function serveMarkdown(f: ServeFigures): string {
  const floor = f.http[0]!;
  const peer = f.http.find((r) => r.name === FASTAPI && r.skipped === undefined);
  const ratio = (x: number, y: number) => `${(x / Math.max(y, 1e-9)).toFixed(2)}×`;
  // A judged row's ratios to (a) are the medians of its rounds' ratios; another row's, one run's
  // figure over (a)'s median.
  const vsFloor = (r: HttpRow, key: keyof PairedRatios, x: number, y: number) =>
    r.paired !== undefined ? formatRatio(r.paired[key]) : `${ratio(x, y)} (one run)`;
  const ms = (x: number) => x.toFixed(2);
  const row = (r: HttpRow) =>
    r.skipped !== undefined
      ? `| ${r.name} | skipped (${r.skipped}) | | | | | | | | |`
      : `| ${r.name} | ${Math.round(r.requestsPerSecond).toLocaleString('en-US')} | ${vsFloor(r, 'rps', r.requestsPerSecond, floor.requestsPerSecond)} | ${peer ? ratio(r.requestsPerSecond, peer.requestsPerSecond) : '—'} | ${ms(r.p50Ms)} | ${vsFloor(r, 'p50', r.p50Ms, floor.p50Ms)} | ${ms(r.p99Ms)} | ${r.cpuUs.toFixed(1)} | ${vsFloor(r, 'cpu', r.cpuUs, floor.cpuUs)} | ${r.errors} |`;
  const b = f.http.find((r) => r.name.startsWith('(b)'))!;
  const p = b.paired!;
  const met = (ok: boolean) => (ok ? 'met' : '**not met**');
  const goals = [
    `Goals for (b), issue 26 (1), judged by the paired rounds (median of the rounds' ratios, quartiles in brackets): requests/s ≥ ${GOALS.rps}× (a): ${formatRatio(p.rps)}, ${met(p.rps.ratio >= GOALS.rps)}; ` +
      `p50 ≤ ${GOALS.p50}× (a): ${formatRatio(p.p50)}, ${met(p.p50.ratio <= GOALS.p50)}; ` +
      `server CPU per request ≤ ${GOALS.cpu}× (a): ${formatRatio(p.cpu)}, ${met(p.cpu.ratio <= GOALS.cpu)}; ` +
      (peer && f.vsFastapi
        ? `requests/s ≥ ${GOALS.vsFastapi}× (f), same rounds: ${formatRatio(f.vsFastapi.rps)}, ${met(f.vsFastapi.rps.ratio >= GOALS.vsFastapi)}; (a) itself ${formatRatio(invert(peer.paired!.rps))} (f)'s requests/s, the floor this goal sits on.`
        : `≥ ${GOALS.vsFastapi}× (f): not measured (the FastAPI row was skipped).`),
    ...(f.vsTicked
      ? [
          ` Against (a′), the floor in the V8 state (b) runs in, same rounds: requests/s ${formatRatio(f.vsTicked.rps)}, p50 ${formatRatio(f.vsTicked.p50)}, server CPU per request ${formatRatio(f.vsTicked.cpu)}.`,
        ]
      : []),
  ];
  return [
    `(a), (a′), (b) and (f): ${f.rounds} rounds of ${f.burstSeconds} s bursts on each, the servers up at once, the order rotating, on ${f.epochs} set(s) of server processes started anew (V8 decides some of a server's speed once per process); their figures are medians of the rounds and their ratios medians of the rounds' ratios (quartiles in brackets). Other rows: one run each after a 1 s warm-up.`,
    '',
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
