// OnnxModel and dynamic batching (issue 15): a 3-layer MLP, 256 wide, with a dynamic batch
// dimension, built here; 64 requests in flight. (a) raw onnxruntime-node, one request per
// session.run (floor); (b) raw, hand-made batches of 32 (ceiling); (c) rxserve thread_pool
// without batching; (d) rxserve thread_pool with batching { maxBatchSize: 32, maxWaitMs: 2 }.
// Two rows added to explain the gap (the goals are judged on (a)-(d) only): (b') raw batches of 32
// made from the same OIP JSON bodies as (c)/(d), with a JSON-shaped response per request (what a
// hand-written server on one session does), and (e) the same rxserve pipeline as (d) with the
// built-in identity 'Model' and a one-field body: rxserve's own cost per request, no tensors.
// (f) is the baseline of issue 26 goal 3 (batched ONNX ≥ 0.9× hand-batched session.run at 64 in
// flight): a hand-written server loop fed exactly as (d) is (the same driver, events and bodies,
// 64 in flight) that checks each OIP body, packs up to 32 queued requests into one Float32Array,
// runs session.run on one worker thread (one intra-op thread, two batches out at a time, as (d)'s
// pool) and splits the output into one OIP response of plain arrays per request. (f′), in the
// steady-state judge only: (f) with its batches through piscina as rxserve's pool configures it —
// the floor under (d) that piscina's own per-task cost sets.
import { once } from 'node:events';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import * as ort from 'onnxruntime-node';
import { Piscina } from 'piscina';
import { Observable, type Subscriber } from 'rxjs';
import { modelRunner, type ModelEntry, type ServingEvent } from 'rxserve';
import { drive, percentile, type RunFigures } from './driver.js';
import { formatRatio, interleaved, medianBy, ratioOf, type Paired } from './paired.js';
// @ts-expect-error a plain .mjs module without types (the example's encoder)
import { writeMlpModel } from '../examples/onnx/onnxBuilder.mjs';

const WIDTH = 256;
const MAX_WAIT_MS = 2;
/**
 * Requests each rxserve pool and (f)'s worker serve before their measured run, then a pause for
 * V8's background compiler to finish: every run starts fresh threads, and without this the
 * optimizing compiler's work on the worker's code (and on the main side's) fell inside the
 * figures — more of it for rxserve's longer path than for (f)'s few lines. Same for all rows.
 * 20 000, not 5 000 (before 2026-12-07 18:20): code that runs once per batch of 32 had run only
 * ~160 times by then, and `--trace-opt` put ~0.9 s of TurboFan compiles (runBatch, submitBatch,
 * sendBatch, the worker's runTask...) inside (d)'s measured 40 000 requests — ~9 µs a request of
 * V8 helper-thread CPU in a perf profile, a one-off cost a serving process pays once, not per
 * request. ONNX_WARM_UP overrides it (probes).
 */
const WARM_UP = Number(process.env.ONNX_WARM_UP ?? 20_000);
const warmedUp = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 250));

export interface OnnxFigures {
  readonly name: string;
  readonly perSecond: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  /** CPU time of the whole process (every thread: workers, onnxruntime's, V8's) per request. */
  readonly cpuUs: number;
}
export interface OnnxResult {
  readonly rows: readonly OnnxFigures[];
  readonly requests: number;
  /** Runs per row; each row is the one of median throughput. */
  readonly runs: number;
  /** Issue 26 goal 3 at steady state: (d) against (f) in paired rounds (see STEADY). */
  readonly steady?: {
    readonly rps: Pick<Paired<unknown>, 'ratio' | 'low' | 'high'>;
    readonly cpu: Pick<Paired<unknown>, 'ratio' | 'low' | 'high'>;
    /** (f′) against (f): what piscina's own per-task cost leaves of (f), the floor under (d). */
    readonly floor: Pick<Paired<unknown>, 'ratio' | 'low' | 'high'>;
    /** (d) against (f′): rxserve's own path over that floor. */
    readonly overFloor: Pick<Paired<unknown>, 'ratio' | 'low' | 'high'>;
    readonly d: OnnxFigures;
    readonly f: OnnxFigures;
    readonly g: OnnxFigures;
    readonly rounds: number;
  };
}

/**
 * The goal-3 judge: (d) and (f) in paired rounds (the order rotating), each run on fresh threads
 * warmed up with STEADY.warmUp requests and measured over STEADY.total, the ratio the median of the
 * rounds' ratios. The table's rows measure 20,000 requests (~0.25 s of (d)) after 20,000 of
 * warm-up; by then code that runs once per batch of 32 has run ~600 times, and TurboFan was still
 * compiling rxserve's longer path inside the window (2026-12-07 21:25: (d)'s V8 helper threads
 * 5.5 µs a request in that window, 1.6–1.8 µs after 60,000 of warm-up over 200,000 requests;
 * (f)'s 1–2.5 in both). A server runs at steady state; both sides get the same warm-up.
 */
const STEADY = { warmUp: 60_000, total: 150_000, rounds: 5 };

const row = (i: number): number[] => Array.from({ length: WIDTH }, (_, k) => Math.sin(i * 31 + k));
/** The OIP body of request `i`: what an HTTP client sends to /v2/models/mlp/infer. */
const oipBody = (i: number) => ({ inputs: [{ name: 'x', shape: [1, WIDTH], datatype: 'FP32', data: row(i) }] });

/** Raw sessions: `inFlight` requests outstanding, each run alone (batch 1) or `batch` at a time. */
async function raw(session: ort.InferenceSession, total: number, batch: number): Promise<OnnxFigures> {
  const inputs = Array.from({ length: 64 }, (_, i) => Float32Array.from(row(i)));
  const latencies: number[] = [];
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  // With 64 in flight and hand-made batches, a request waits for its batch to run: its latency
  // is from when its batch was formed (all 64 arrive at once, and again as they complete).
  for (let done = 0; done < total;) {
    const size = Math.min(batch, total - done);
    const data = new Float32Array(size * WIDTH);
    for (let r = 0; r < size; r++) data.set(inputs[(done + r) % inputs.length], r * WIDTH);
    const start = performance.now();
    await session.run({ x: new ort.Tensor('float32', data, [size, WIDTH]) });
    const ms = performance.now() - start;
    for (let r = 0; r < size; r++) latencies.push(ms);
    done += size;
  }
  const seconds = (performance.now() - t0) / 1000;
  const cpuUs = cpuPerRequest(cpu0, total);
  latencies.sort((a, b) => a - b);
  return { name: '', perSecond: total / seconds, p50Ms: percentile(latencies, 50), p99Ms: percentile(latencies, 99), cpuUs };
}

const cpuPerRequest = (since: NodeJS.CpuUsage, requests: number): number => {
  const used = process.cpuUsage(since);
  return (used.user + used.system) / requests;
};

/**
 * (b'): raw batches of `batch` made from OIP JSON bodies (checked as a hand-written server would:
 * name, datatype, length), each request answered with its own OIP response of plain arrays.
 */
async function rawFromJson(session: ort.InferenceSession, total: number, batch: number): Promise<OnnxFigures> {
  const bodies = Array.from({ length: 64 }, (_, i) => oipBody(i));
  const output = session.outputNames[0];
  const latencies: number[] = [];
  let responses = 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  for (let done = 0; done < total;) {
    const size = Math.min(batch, total - done);
    const start = performance.now();
    const data = new Float32Array(size * WIDTH);
    for (let r = 0; r < size; r++) {
      const x = bodies[(done + r) % bodies.length].inputs[0];
      if (x.name !== 'x' || x.datatype !== 'FP32' || x.data.length !== WIDTH) throw new TypeError('bad request');
      data.set(x.data, r * WIDTH);
    }
    const out = (await session.run({ x: new ort.Tensor('float32', data, [size, WIDTH]) }))[output].data as Float32Array;
    for (let r = 0; r < size; r++) {
      const values: number[] = new Array(WIDTH);
      for (let k = 0; k < WIDTH; k++) values[k] = out[r * WIDTH + k];
      const response = { model_name: 'mlp', outputs: [{ name: output, shape: [1, WIDTH], datatype: 'FP32', data: values }] };
      responses += response.outputs.length;
    }
    const ms = performance.now() - start;
    for (let r = 0; r < size; r++) latencies.push(ms);
    done += size;
  }
  const seconds = (performance.now() - t0) / 1000;
  const cpuUs = cpuPerRequest(cpu0, total);
  if (responses !== total) throw new Error('lost responses');
  latencies.sort((a, b) => a - b);
  return { name: '', perSecond: total / seconds, p50Ms: percentile(latencies, 50), p99Ms: percentile(latencies, 99), cpuUs };
}

/** One request waiting in the hand-written server of (f): its body and where its response goes. */
interface Waiting {
  readonly body: ReturnType<typeof oipBody>;
  readonly reply: (response: unknown) => void;
}

/**
 * (f)'s server: requests queue; while fewer than two batches are out, up to 32 queued requests
 * leave as one batch (checked as (b') checks them, packed into one Float32Array, transferred);
 * each answer is split into one OIP response per request. A batch's slot frees after its replies
 * are delivered (as rxserve's pool does), so the requests they bring form the next batch.
 */
class HandBatchServer {
  private queue: Waiting[] = [];
  private out = 0;
  private lastId = 0;
  private readonly sent = new Map<number, Waiting[]>();
  /** `post` sends a batch to the thread; its answer comes back through `answer`. */
  constructor(private readonly post: (batch: { id: number; rows: number; data: Float32Array<ArrayBuffer> }) => void) {}

  submit(body: Waiting['body'], reply: Waiting['reply']): void {
    this.queue.push({ body, reply });
    this.pump();
  }

  private pump(): void {
    while (this.out < 2 && this.queue.length > 0) {
      const batch = this.queue.length <= 32 ? this.queue : this.queue.slice(0, 32);
      this.queue = batch === this.queue ? [] : this.queue.slice(32);
      const data = new Float32Array(batch.length * WIDTH);
      batch.forEach((w, r) => {
        const x = w.body.inputs[0];
        if (x.name !== 'x' || x.datatype !== 'FP32' || x.data.length !== WIDTH) throw new TypeError('bad request');
        data.set(x.data, r * WIDTH);
      });
      const id = ++this.lastId;
      this.sent.set(id, batch);
      this.out++;
      this.post({ id, rows: batch.length, data });
    }
  }

  answer({ id, rows, data }: { id: number; rows: number; data: Float32Array }): void {
    const batch = this.sent.get(id)!;
    this.sent.delete(id);
    for (let r = 0; r < rows; r++) {
      const values: number[] = new Array(WIDTH);
      for (let k = 0; k < WIDTH; k++) values[k] = data[r * WIDTH + k];
      batch[r].reply({ model_name: 'mlp', outputs: [{ name: 'y', shape: [1, WIDTH], datatype: 'FP32', data: values }] });
    }
    this.out--;
    this.pump();
  }
}

/**
 * (f): the hand-batched server on a worker thread, driven exactly as (d). With `onPiscina`, (f′):
 * the same server whose batches go through piscina, configured as rxserve's thread_pool configures
 * it (one thread, `atomics: 'sync'`, no timing records, two tasks a thread), to a task function
 * doing what (f)'s worker does: the floor a pool built on piscina sits on.
 */
export async function handBatched(
  modelPath: string,
  total: number,
  onMeasure?: () => void,
  warmUp = WARM_UP,
  onPiscina = false,
): Promise<OnnxFigures> {
  let server: HandBatchServer;
  let close: () => Promise<unknown>;
  if (onPiscina) {
    const pool = new Piscina({
      filename: new URL('./fixtures/onnxBatchTask.mjs', import.meta.url).href,
      minThreads: 1,
      maxThreads: 1,
      atomics: 'sync',
      recordTiming: false,
      concurrentTasksPerWorker: 2,
      workerData: { modelPath, width: WIDTH },
    });
    server = new HandBatchServer(({ id, rows, data }) => {
      void pool.run({ rows, data }, { transferList: [data.buffer] }).then((out: Float32Array) => server.answer({ id, rows, data: out }));
    });
    close = () => pool.destroy();
    await pool.run({ rows: 1, data: new Float32Array(WIDTH) }); // the session is loaded
  } else {
    const worker = new Worker(new URL('./fixtures/onnxBatchWorker.mjs', import.meta.url), { workerData: { modelPath, width: WIDTH } });
    close = () => worker.terminate();
    await once(worker, 'message'); // 'ready': the session is loaded
    server = new HandBatchServer((batch) => worker.postMessage(batch, [batch.data.buffer]));
    worker.on('message', (message: { id: number; rows: number; data: Float32Array }) => server.answer(message));
  }
  try {
    const op = (source: Observable<ServingEvent>) =>
      new Observable<{ id: string; body: unknown }>((subscriber) =>
        source.subscribe({
          next: (event) => server.submit(event.body as Waiting['body'], (body) => subscriber.next({ id: event.id, body })),
        }),
      );
    await drive(op, warmUp, 64, oipBody);
    await warmedUp();
    onMeasure?.();
    const cpu0 = process.cpuUsage();
    const figures = await drive(op, total, 64, oipBody, { idOf: (e) => e.id });
    return { name: '', perSecond: figures.perSecond, p50Ms: figures.p50Ms!, p99Ms: figures.p99Ms!, cpuUs: cpuPerRequest(cpu0, total) };
  } finally {
    await close();
  }
}

export async function served(
  modelPath: string | undefined,
  total: number,
  batching?: ModelEntry['batching'],
  /** Called when the measured run starts (after the warm-up): for per-thread probes. */
  onMeasure?: () => void,
  warmUp = WARM_UP,
): Promise<RunFigures & { cpuUs: number }> {
  // No model path: (e), the identity 'Model' with a one-field body.
  const entry: ModelEntry =
    modelPath === undefined
      ? { endpointName: 'mlp', modelClass: 'Model', executionMechanism: 'thread_pool', ...(batching ? { batching } : {}) }
      : {
          endpointName: 'mlp',
          modelClass: 'OnnxModel',
          executionMechanism: 'thread_pool',
          params: { modelPath },
          ...(batching ? { batching } : {}),
        };
  const body = modelPath === undefined ? (i: number) => ({ x: i }) : oipBody;
  // One subscription for warm-up and measurement: a step's pool lives as long as its subscription.
  // Each drive's events go straight to the step's subscriber and its outputs straight to the
  // drive's (a Subject in and a share() out, before 2026-12-07 21:00, cost each event two
  // Subject hops — a closure, an iterator and a copy check each — that (f), fed by the same
  // driver, does not pay).
  let feed: Subscriber<ServingEvent> | undefined;
  let sink: Subscriber<ServingEvent> | undefined;
  const keep = new Observable<ServingEvent>((subscriber) => {
    feed = subscriber;
  })
    .pipe(modelRunner({ models: [entry] }))
    .subscribe({ next: (out) => sink?.next(out), error: (error: unknown) => sink?.error(error) });
  const op = (source: Observable<ServingEvent>) =>
    new Observable<ServingEvent>((subscriber) => {
      sink = subscriber;
      const fed = source.subscribe({ next: (event) => feed!.next(event) });
      return () => {
        fed.unsubscribe();
        sink = undefined;
      };
    });
  try {
    await drive(op, warmUp, 64, body); // threads up, model loaded, code optimized
    await warmedUp();
    onMeasure?.();
    const cpu0 = process.cpuUsage();
    const figures = await drive(op, total, 64, body, { idOf: (e) => e.id });
    return { ...figures, cpuUs: cpuPerRequest(cpu0, total) };
  } finally {
    feed?.complete();
    keep.unsubscribe();
  }
}

/**
 * The run of median throughput of `runs`: the raw rows last a fraction of a second, and one burst
 * of load from another process can halve one of them, so every row (all alike) is the median of
 * three runs.
 */
async function medianOf<T extends { perSecond: number }>(runs: number, once: () => Promise<T>): Promise<T> {
  const results: T[] = [];
  for (let i = 0; i < runs; i++) results.push(await once());
  results.sort((x, y) => x.perSecond - y.perSecond);
  return results[Math.floor(results.length / 2)];
}

export async function runOnnx(quick: boolean): Promise<OnnxResult> {
  const total = quick ? 2_000 : 20_000;
  const runs = quick ? 1 : 3;
  const modelPath: string = writeMlpModel(join(mkdtempSync(join(tmpdir(), 'rxserve-onnx-bench-')), 'mlp.onnx'), [
    WIDTH,
    WIDTH,
    WIDTH,
    WIDTH,
  ]);
  const session = await ort.InferenceSession.create(modelPath);
  await raw(session, 256, 1);
  const a = { ...(await medianOf(runs, () => raw(session, total, 1))), name: '(a) raw session.run, one request at a time' };
  const b = { ...(await medianOf(runs, () => raw(session, total, 32))), name: '(b) raw session.run, batches of 32' };
  await rawFromJson(session, 256, 32);
  const b2 = {
    ...(await medianOf(runs, () => rawFromJson(session, total, 32))),
    name: "(b') raw session.run, batches of 32 from the OIP JSON bodies, a JSON response each",
  };
  await session.release();
  const batching = { maxBatchSize: 32, maxWaitMs: MAX_WAIT_MS };
  // (d) and (f) alternate, so neither gets a quieter slice of the shared machine: goal 3 is their ratio.
  const dRuns: OnnxFigures[] = [];
  const fRuns: OnnxFigures[] = [];
  for (let i = 0; i < runs; i++) {
    dRuns.push((await served(modelPath, total, batching)) as unknown as OnnxFigures);
    fRuns.push(await handBatched(modelPath, total));
  }
  const d = {
    ...(await medianOf(runs, async () => dRuns.shift()!)),
    name: `(d) rxserve thread_pool, batching { maxBatchSize: 32, maxWaitMs: ${MAX_WAIT_MS} }`,
  };
  const f = {
    ...(await medianOf(runs, async () => fRuns.shift()!)),
    name: '(f) hand-batched session.run on a worker thread, 64 in flight, the same events and bodies as (d) (goal 3 baseline)',
  };
  const e = {
    ...(await medianOf(runs, () => served(undefined, total, batching))),
    name: "(e) as (d) with the identity 'Model' and a one-field body (rxserve's own cost)",
  } as OnnxFigures;
  // (c) last: V8's allocation-site decisions outlive a row (one process), and (c)'s single calls
  // leave the shared rxserve code pretenuring per-request objects (a probe of (d) right after (c)
  // promoted ~2 KB a request against ~1.2 alone), which would tax the rows after it.
  const c = { ...(await medianOf(runs, () => served(modelPath, total))), name: '(c) rxserve thread_pool, no batching' } as OnnxFigures;
  const rounds = quick ? 1 : STEADY.rounds;
  const steadyTotal = quick ? 20_000 : STEADY.total;
  const [dSteady, fSteady, gSteady] = await interleaved<OnnxFigures>(
    [
      async () => ({
        ...((await served(modelPath, steadyTotal, batching, undefined, STEADY.warmUp)) as unknown as OnnxFigures),
        name: '(d)',
      }),
      async () => ({ ...(await handBatched(modelPath, steadyTotal, undefined, STEADY.warmUp)), name: '(f)' }),
      async () => ({ ...(await handBatched(modelPath, steadyTotal, undefined, STEADY.warmUp, true)), name: '(f′)' }),
    ],
    { rounds, warmups: 0 },
  );
  const steady = {
    rps: ratioOf(dSteady!, fSteady!, (x) => x.perSecond),
    cpu: ratioOf(dSteady!, fSteady!, (x) => x.cpuUs),
    floor: ratioOf(gSteady!, fSteady!, (x) => x.perSecond),
    overFloor: ratioOf(dSteady!, gSteady!, (x) => x.perSecond),
    d: medianBy(dSteady!, (x) => x.perSecond),
    f: medianBy(fSteady!, (x) => x.perSecond),
    g: medianBy(gSteady!, (x) => x.perSecond),
    rounds,
  };
  // The rows first: the goals read rows[0..3].
  return { rows: [a, b, c, d, b2, e, f], requests: total, runs, steady };
}

const f0 = (n: number) => n.toFixed(0);
const f2 = (n: number) => n.toFixed(2);

export function onnxMarkdown(result: OnnxResult): string {
  const [a, b, c, d, b2, , f] = result.rows;
  return [
    `${result.requests} requests of one row each, 64 in flight; MLP ${WIDTH}→${WIDTH}→${WIDTH}→${WIDTH} (FP32); each row the median of ${result.runs} run(s) by throughput; ` +
      "CPU µs/request is the process's CPU time (all its threads) over the run divided by the requests.",
    '',
    '| case | requests/s | vs (a) | p50 ms | p99 ms | CPU µs/request |',
    '|---|---|---|---|---|---|',
    ...result.rows.map(
      (r) =>
        `| ${r.name} | ${f0(r.perSecond)} | ${f2(r.perSecond / a.perSecond)}× | ${f2(r.p50Ms)} | ${f2(r.p99Ms)} | ${r.cpuUs.toFixed(1)} |`,
    ),
    '',
    `(d) / (c) = **${f2(d.perSecond / c.perSecond)}×** (goal ≥ 3×); (d) / (b) = **${f2(d.perSecond / b.perSecond)}×** (goal ≥ 0.8×); ` +
      `p99 of (d) = ${f2(d.p99Ms)} ms with maxWaitMs = ${MAX_WAIT_MS} ms. (Not goals: (d) / (b') = ${f2(d.perSecond / (b2?.perSecond ?? NaN))}×.)`,
    '',
    `Issue 26 goal 3, in this table (20,000 requests after 20,000 of warm-up): (d) / (f) = ${f2(d.perSecond / f.perSecond)}× requests/s; CPU µs/request (d) / (f) = ${f2(d.cpuUs / f.cpuUs)}×; ` +
      `p50 ${f2(d.p50Ms)} / ${f2(f.p50Ms)} ms.`,
    ...(result.steady
      ? [
          '',
          `Issue 26 goal 3, judged at steady state (${result.steady.rounds} paired rounds, each side on fresh threads, ${STEADY.warmUp.toLocaleString('en-US')} requests of warm-up, ${STEADY.total.toLocaleString('en-US')} measured; median of the rounds' ratios, quartiles in brackets): ` +
            `(d) / (f) = **${formatRatio(result.steady.rps)}** requests/s (goal ≥ 0.9×: ${result.steady.rps.ratio >= 0.9 ? 'met' : '**not met**'}); CPU µs/request ${formatRatio(result.steady.cpu)} ` +
            `(median rounds: (d) ${f0(result.steady.d.perSecond)}/s, ${result.steady.d.cpuUs.toFixed(1)} µs; (f) ${f0(result.steady.f.perSecond)}/s, ${result.steady.f.cpuUs.toFixed(1)} µs).`,
          '',
          `The floor under it, same rounds: (f′), (f) with its batches through piscina as rxserve's thread_pool configures it, = ${formatRatio(result.steady.floor)} (f)'s requests/s ` +
            `(${f0(result.steady.g.perSecond)}/s, ${result.steady.g.cpuUs.toFixed(1)} µs a request); (d) / (f′) = ${formatRatio(result.steady.overFloor)}: rxserve's own per-request path over a pool built on piscina.`,
        ]
      : []),
  ].join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  console.log(onnxMarkdown(await runOnnx(process.argv.includes('--quick'))));
}
