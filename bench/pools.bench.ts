// Worker mechanisms against their raw baselines: thread_pool vs raw piscina.run() and a raw
// worker_threads postMessage round trip; dedicated_process / process_pool vs a raw fork() IPC
// round trip; and a CPU-bound model on naive vs thread_pool vs process_pool (2 cores).
import { execFileSync, fork } from 'node:child_process';
import { loadavg } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { Piscina } from 'piscina';
import { Subject } from 'rxjs';
import { modelRunner, toEvent, type ExecutionMechanism, type ModelRunnerConfig, type ServingEvent } from 'rxserve';
import { percentile } from './driver.js';
import { formatRatio, paired, quantile, type Paired } from './paired.js';

const fixture = (name: string) => new URL(`./fixtures/${name}`, import.meta.url);
const BODY = { x: 1, text: 'hello world', tags: ['a', 'b'] };

interface Channel {
  call(body: unknown): Promise<unknown>;
  close(): Promise<void>;
}

/** One channel's figures at 64 in flight. */
interface Loaded {
  throughput: number;
  loadedP50: number;
  loadedP99: number;
}

/** One row's sequential (one call at a time) latencies, ours against its baseline, paired. */
interface Sequential {
  /** Medians over the rounds of each side's block median, and p99 over all their calls (µs). */
  p50: number;
  p99: number;
  baseP50: number;
  baseP99: number;
  /** The median of the rounds' p50 ratios, with quartiles (bench/paired.ts). */
  ratio: Pick<Paired<unknown>, 'ratio' | 'low' | 'high'>;
  /**
   * The median of the rounds' p50 differences (µs): steadier than the ratio when the machine's
   * wake-up latency moves (raw piscina's p50 reads 28 or 43 µs by the hour; rxserve's extra work is
   * the same µs on either).
   */
  excess: number;
}

/** `n` calls one at a time; their latencies in µs, sorted. */
async function sequentialBlock(channel: Channel, n: number): Promise<number[]> {
  const block: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await channel.call(BODY);
    block.push((performance.now() - t0) * 1000);
  }
  return block.sort((a, b) => a - b);
}

/**
 * A row's p50 ratio, paired: blocks of `block` sequential calls on ours and on the baseline
 * alternate for `rounds` rounds (bench/paired.ts), and the ratio is the median of the rounds' own
 * ratios of block medians. A one-call-at-a-time p50 on a shared machine is mostly thread and
 * process wake-up latency, which drifts by tens of percent within minutes (raw piscina's p50 read
 * 29 and 44 µs two minutes apart); rounds of a few milliseconds see the same machine on both
 * sides, so the ratio repeats where the absolute figures do not.
 */
async function pairedSequential(ours: Channel, base: Channel, rounds: number, block: number): Promise<Sequential> {
  const p = await paired(
    () => sequentialBlock(ours, block),
    () => sequentialBlock(base, block),
    { rounds, metric: (latencies) => percentile(latencies, 50) },
  );
  const median = (blocks: readonly number[][]) =>
    quantile(
      [...blocks.map((b) => percentile(b, 50))].sort((x, y) => x - y),
      0.5,
    );
  const p99 = (blocks: readonly number[][]) =>
    percentile(
      blocks.flat().sort((x, y) => x - y),
      99,
    );
  const excess = quantile(
    p.ours.map((b, i) => percentile(b, 50) - percentile(p.base[i], 50)).sort((x, y) => x - y),
    0.5,
  );
  return { p50: median(p.ours), p99: p99(p.ours), baseP50: median(p.base), baseP99: p99(p.base), ratio: p, excess };
}

/** Throughput and latency (µs) with `inFlight` calls outstanding. */
async function loadedRun(channel: Channel, loaded: number, inFlight: number): Promise<Loaded> {
  const latencies: number[] = [];
  let started = 0;
  const t0 = performance.now();
  await new Promise<void>((resolve, reject) => {
    let finished = 0;
    const next = (): void => {
      if (started >= loaded) return;
      started++;
      const s = performance.now();
      channel.call(BODY).then(() => {
        latencies.push((performance.now() - s) * 1000);
        if (++finished === loaded) resolve();
        else next();
      }, reject);
    };
    for (let i = 0; i < inFlight; i++) next();
  });
  latencies.sort((a, b) => a - b);
  return {
    throughput: loaded / ((performance.now() - t0) / 1000),
    loadedP50: percentile(latencies, 50),
    loadedP99: percentile(latencies, 99),
  };
}

/** A request/response channel over anything that posts `{ id, body }` messages both ways. */
function echoChannel(
  onMessage: (listener: (m: { id: number; body: unknown }) => void) => void,
  post: (m: { id: number; body: unknown }) => void,
  close: () => Promise<unknown>,
): Channel {
  const pending = new Map<number, (v: unknown) => void>();
  let id = 0;
  onMessage((m) => {
    pending.get(m.id)!(m.body);
    pending.delete(m.id);
  });
  return {
    call: (body) =>
      new Promise((resolve) => {
        const n = id++;
        pending.set(n, resolve);
        post({ id: n, body });
      }),
    close: async () => {
      await close();
    },
  };
}

function rawThread(): Channel {
  const worker = new Worker(fixture('echoThread.mjs'));
  return echoChannel(
    (l) => worker.on('message', l),
    (m) => worker.postMessage(m),
    () => worker.terminate(),
  );
}

function rawPiscina(threads: number): Channel {
  const pool = new Piscina({ filename: fixture('piscinaNoop.mjs').href, minThreads: threads, maxThreads: threads });
  return { call: (body) => pool.run(body), close: () => pool.destroy() };
}

function rawFork(): Channel {
  const child = fork(fixture('echoProcess.mjs'), [], { serialization: 'advanced' });
  return echoChannel(
    (l) => child.on('message', l),
    (m) => child.send(m),
    async () => child.disconnect(),
  );
}

/** A modelRunner step driven one event at a time per call. */
function runner(config: ModelRunnerConfig): Channel {
  const subject = new Subject<ServingEvent>();
  const pending = new Map<string, (e: ServingEvent) => void>();
  let id = 0;
  const subscription = subject.pipe(modelRunner(config)).subscribe((event) => {
    pending.get(event.id)!(event);
    pending.delete(event.id);
  });
  return {
    call: (body) =>
      new Promise((resolve, reject) => {
        const key = String(id++);
        pending.set(key, (event) => (event.error ? reject(event.error) : resolve(event.body)));
        subject.next(toEvent(body, { id: key }));
      }),
    close: async () => {
      subject.complete();
      subscription.unsubscribe();
    },
  };
}

const noop = (mechanism: ExecutionMechanism, pool: ModelRunnerConfig['pool'] = {}): ModelRunnerConfig => ({
  models: [{ endpointName: 'noop', modelClass: 'Model', executionMechanism: mechanism }],
  maxInFlight: 256,
  maxQueue: Infinity,
  pool,
});

export interface PoolsResult {
  rows: { name: string; baseline: string; sequential: Sequential; figures: Loaded; base: Loaded }[];
  cpu: { name: string; perSecond: number; ratio: number }[];
  /** The same, cold: from the step's first event (worker start and model load included). */
  cold: { name: string; perSecond: number; ratio: number }[];
  /** A process worker's start: `fork()` to its first model loaded, beside a bare `node` (medians, ms). */
  start: { bare: number; worker: number };
  /** Load averages (1 min) when the section started and ended. */
  load: { start: number; end: number };
}

export async function runPools(quick: boolean): Promise<PoolsResult> {
  const loadStart = loadavg()[0];
  const rounds = quick ? 21 : 81;
  const block = quick ? 50 : 100;
  const loaded = quick ? 2_000 : 40_000;
  const inFlight = 64;
  const channels = {
    thread: rawThread(),
    piscina: rawPiscina(2),
    forked: rawFork(),
    threadPool: runner(noop('thread_pool', { poolFactor: 2 })),
    threadPoolNoBatch: runner(noop('thread_pool', { poolFactor: 2, maxBatch: 1 })),
    dedicated: runner(noop('dedicated_process')),
    processPool: runner(noop('process_pool', { poolFactor: 2 })),
  };
  type Name = keyof typeof channels;
  const pairs: { name: string; baseline: string; ours: Name; base: Name }[] = [
    { name: 'thread_pool, 2 threads (batching)', baseline: 'raw piscina.run, 2 threads', ours: 'threadPool', base: 'piscina' },
    { name: 'thread_pool, 2 threads, maxBatch 1', baseline: 'raw piscina.run, 2 threads', ours: 'threadPoolNoBatch', base: 'piscina' },
    { name: 'thread_pool, 2 threads (batching)', baseline: 'raw worker_threads postMessage, 1 worker', ours: 'threadPool', base: 'thread' },
    { name: 'dedicated_process', baseline: 'raw fork() IPC, 1 child', ours: 'dedicated', base: 'forked' },
    { name: 'process_pool, 2 processes', baseline: 'raw fork() IPC, 1 child', ours: 'processPool', base: 'forked' },
  ];
  const rows: PoolsResult['rows'] = [];
  try {
    // All channels open at once and warm (JIT) before any figure is taken, then a pause: without
    // it the first row's rounds read both sides slow at random (child processes still starting,
    // background compiles), and its quartiles spanned 0.8–2.3× where the next row's spanned ±0.03.
    for (const channel of Object.values(channels)) await sequentialBlock(channel, quick ? 300 : 2_000);
    await sleep(1_000);
    const sequential = new Map<(typeof pairs)[number], Sequential>();
    for (const pair of pairs) sequential.set(pair, await pairedSequential(channels[pair.ours], channels[pair.base], rounds, block));
    const loadedFigures = {} as Record<Name, Loaded>;
    for (const name of Object.keys(channels) as Name[]) loadedFigures[name] = await loadedRun(channels[name], loaded, inFlight);
    for (const pair of pairs) {
      rows.push({
        name: pair.name,
        baseline: pair.baseline,
        sequential: sequential.get(pair)!,
        figures: loadedFigures[pair.ours],
        base: loadedFigures[pair.base],
      });
    }
  } finally {
    await Promise.all(Object.values(channels).map((c) => c.close()));
  }

  // CPU-bound: ~20 ms of arithmetic per call; 2 workers should give about 2× one event loop.
  const burnEvents = quick ? 16 : 60;
  const burn = (mechanism: ExecutionMechanism): ModelRunnerConfig => ({
    models: [{ endpointName: 'burn', modelClass: { module: fixture('models.mjs').href, export: 'Burn' }, executionMechanism: mechanism }],
    maxInFlight: 64,
    maxQueue: Infinity,
    pool: { poolFactor: 2 },
  });
  const cpuRate = async (mechanism: ExecutionMechanism) => {
    const channel = runner(burn(mechanism));
    try {
      await Promise.all([channel.call({ ms: 1 }), channel.call({ ms: 1 })]); // start and load
      const t0 = performance.now();
      await Promise.all(Array.from({ length: burnEvents }, () => channel.call({ ms: 20 })));
      return burnEvents / ((performance.now() - t0) / 1000);
    } finally {
      await channel.close();
    }
  };
  const naive = await cpuRate('naive');
  const cpu = [{ name: 'naive (main thread)', perSecond: naive, ratio: 1 }];
  for (const mechanism of ['thread_pool', 'process_pool'] as const) {
    const perSecond = await cpuRate(mechanism);
    cpu.push({ name: `${mechanism}, 2 workers`, perSecond, ratio: perSecond / naive });
  }
  // Cold: first use of a new step, so worker start-up (the worker entry's imports) counts. In a
  // plain node process (bench/fixtures/coldStart.mjs says why).
  const coldRates = JSON.parse(
    execFileSync(process.execPath, [fixturePath('coldStart.mjs'), String(burnEvents)], {
      encoding: 'utf8',
      env: { ...process.env, NODE_OPTIONS: '' },
    }),
  ) as Record<'naive' | 'thread_pool' | 'process_pool', number>;
  const cold = [{ name: 'naive (main thread), cold', perSecond: coldRates.naive, ratio: 1 }];
  for (const mechanism of ['thread_pool', 'process_pool'] as const) {
    cold.push({ name: `${mechanism}, 2 workers, cold`, perSecond: coldRates[mechanism], ratio: coldRates[mechanism] / coldRates.naive });
  }
  const start = await processStart(quick ? 7 : 21);
  return { rows, cpu, cold, start, load: { start: loadStart, end: loadavg()[0] } };
}

/** Medians of `fork()` → exit of an empty script, and `fork()` → first model loaded in rxserve's process worker. */
async function processStart(rounds: number): Promise<{ bare: number; worker: number }> {
  const { workerEntry } = await import('../src/execution/workerEntry.js');
  const entry = workerEntry('processWorker');
  const spec = JSON.stringify({ endpointName: 'm', module: null, export: 'Model', params: {} });
  const bare: number[] = [];
  const worker: number[] = [];
  for (let i = 0; i < rounds; i++) {
    let t0 = performance.now();
    const empty = fork('-e', [''], { stdio: 'ignore', execArgv: [] });
    await new Promise((resolve) => empty.on('exit', resolve));
    bare.push(performance.now() - t0);
    t0 = performance.now();
    const child = fork(entry, [], { stdio: 'ignore', execArgv: [] });
    child.send({ type: 'load', key: spec });
    await new Promise((resolve) => child.once('message', resolve));
    worker.push(performance.now() - t0);
    child.kill();
    await new Promise((resolve) => child.on('exit', resolve));
  }
  const median = (xs: number[]) =>
    percentile(
      [...xs].sort((a, b) => a - b),
      50,
    );
  return { bare: median(bare), worker: median(worker) };
}

const f0 = (n: number) => n.toFixed(0);
const f2 = (n: number) => n.toFixed(2);

export function poolsMarkdown(result: PoolsResult): string {
  const lines = [
    `Load average (1 min) ${f2(result.load.start)} at the start, ${f2(result.load.end)} at the end.`,
    '',
    '| rxserve case | baseline | p50 µs (rxserve / base) | p99 µs (rxserve / base) | p50 ratio, paired (quartiles) | p50 excess µs, paired | throughput/s at 64 in flight (rxserve / base) | throughput ratio | p50 / p99 µs under load (rxserve / base) |',
    '|---|---|---|---|---|---|---|---|---|',
    ...result.rows.map(
      ({ name, baseline, sequential: s, figures: r, base: b }) =>
        `| ${name} | ${baseline} | ${f0(s.p50)} / ${f0(s.baseP50)} | ${f0(s.p99)} / ${f0(s.baseP99)} | ${formatRatio(s.ratio)} | ${s.excess.toFixed(1)} | ` +
        `${f0(r.throughput)} / ${f0(b.throughput)} | ${f2(r.throughput / b.throughput)}× | ${f0(r.loadedP50)}–${f0(r.loadedP99)} / ${f0(b.loadedP50)}–${f0(b.loadedP99)} |`,
    ),
    '',
    '| CPU-bound model (~20 ms per call) | events/s | vs naive |',
    '|---|---|---|',
    ...result.cpu.map((c) => `| ${c.name} | ${f2(c.perSecond)} | ${f2(c.ratio)}× |`),
    ...result.cold.map((c) => `| ${c.name} | ${f2(c.perSecond)} | ${f2(c.ratio)}× |`),
    '',
    '| process worker start (median) | ms |',
    '|---|---|',
    `| \`fork()\` of an empty script, to its exit | ${f2(result.start.bare)} |`,
    `| \`fork()\` of rxserve's process worker, to its first model loaded | ${f2(result.start.worker)} (${result.start.worker >= result.start.bare ? '+' : '−'}${f2(Math.abs(result.start.worker - result.start.bare))} over bare) |`,
  ];
  return lines.join('\n');
}

const fixturePath = (name: string): string => fileURLToPath(fixture(name));
