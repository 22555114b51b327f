// Overload: a source pushing 10× what the models can take, for a few seconds. rxserve's step
// (maxInFlight + maxQueue) against RxJS mergeMap with the same concurrency (which buffers what it
// cannot start). Each runs in a fresh child process so its peak RSS is its own.
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Subject, mergeMap, type OperatorFunction } from 'rxjs';
import { Model, QueueFullError, modelRunner, toEvent, type ServingEvent } from 'rxserve';

const MODEL_MS = 10;
const CONCURRENCY = 32;
const QUEUE = 256;
const CAPACITY = (CONCURRENCY * 1000) / MODEL_MS; // events/s the models can take
const TICK_MS = 5;
const PAYLOAD = 1024; // bytes of text per event, so held events show in memory

class Slow extends Model<{ x: number; text: string }, { y: number }> {
  override async predict(b: { x: number }, ctx: { signal: AbortSignal }) {
    await new Promise((resolve) => setTimeout(resolve, MODEL_MS));
    ctx.signal.throwIfAborted();
    return { y: b.x };
  }
}

export interface OverloadFigures {
  readonly pushed: number;
  readonly completed: number;
  readonly rejected: number;
  readonly otherErrors: number;
  readonly baselineRssMb: number;
  readonly peakRssMb: number;
  readonly seconds: number;
  /** Events pushed but not yet out when the push ended (held in memory). */
  readonly waitingAtEnd: number;
  /** Whether the run waited for every event to come out (mergeMap's backlog is not waited for). */
  readonly drained: boolean;
}

export interface OverloadResult {
  readonly offeredPerSecond: number;
  readonly capacityPerSecond: number;
  readonly ours: OverloadFigures;
  readonly mergeMap: OverloadFigures;
}

/** In the child: push 10× capacity for `seconds`, then wait until every event came out. */
async function overloadChild(kind: 'rxserve' | 'mergeMap', seconds: number): Promise<OverloadFigures> {
  const drain = kind === 'rxserve';
  const model = new Slow({ name: 'slow' });
  const op: OperatorFunction<ServingEvent, ServingEvent> =
    kind === 'rxserve'
      ? modelRunner({
          models: [{ endpointName: 'slow', modelClass: Slow, executionMechanism: 'asyncio' }],
          maxInFlight: CONCURRENCY,
          maxQueue: QUEUE,
        })
      : mergeMap(
          async (e: ServingEvent) =>
            ({ ...e, body: await model.predict(e.body as never, { signal: new AbortController().signal }) }) as ServingEvent,
          CONCURRENCY,
        );
  global.gc?.();
  const baselineRss = process.memoryUsage().rss;
  let peakRss = baselineRss;
  const sampler = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 20);
  const source = new Subject<ServingEvent>();
  let pushed = 0;
  let out = 0;
  let rejected = 0;
  let otherErrors = 0;
  let waitingAtEnd = 0;
  const t0 = performance.now();
  await new Promise<void>((resolve, reject) => {
    let ended = false;
    const check = () => ended && (out === pushed || !drain) && resolve();
    source.pipe(op).subscribe({
      next(e) {
        out++;
        if (e.error instanceof QueueFullError) rejected++;
        else if (e.error !== undefined) otherErrors++;
        check();
      },
      error: reject,
    });
    // Pushes are paced by the clock, not by the tick count: timers slip under load.
    const pump = setInterval(() => {
      const elapsed = performance.now() - t0;
      const due = Math.min(Math.round((elapsed * 10 * CAPACITY) / 1000), Math.round(seconds * 10 * CAPACITY));
      while (pushed < due) {
        source.next(toEvent({ x: pushed, text: String(pushed).padEnd(PAYLOAD, '.') }, { id: String(pushed) }));
        pushed++;
      }
      if (elapsed >= seconds * 1000) {
        clearInterval(pump);
        ended = true;
        waitingAtEnd = pushed - out;
        check();
      }
    }, TICK_MS);
  });
  clearInterval(sampler);
  peakRss = Math.max(peakRss, process.memoryUsage().rss);
  return {
    pushed,
    completed: out - rejected - otherErrors,
    rejected,
    otherErrors,
    baselineRssMb: baselineRss / 2 ** 20,
    peakRssMb: peakRss / 2 ** 20,
    seconds: (performance.now() - t0) / 1000,
    waitingAtEnd,
    drained: drain,
  };
}

function inChild(kind: 'rxserve' | 'mergeMap', seconds: number): Promise<OverloadFigures> {
  const child = fork(fileURLToPath(import.meta.url), ['--overload-child', kind, String(seconds)], {
    execArgv: [...process.execArgv, '--expose-gc'],
  });
  return new Promise((resolve, reject) => {
    child.once('message', (m: OverloadFigures) => resolve(m));
    child.once('exit', (code) => code !== 0 && reject(new Error(`overload child (${kind}) exited ${code}`)));
  });
}

export async function runOverload(quick: boolean): Promise<OverloadResult> {
  const seconds = quick ? 1 : 5;
  const ours = await inChild('rxserve', seconds);
  const base = await inChild('mergeMap', seconds);
  if (ours.pushed !== ours.completed + ours.rejected + ours.otherErrors) throw new Error('overload: events unaccounted for');
  return { offeredPerSecond: 10 * CAPACITY, capacityPerSecond: CAPACITY, ours, mergeMap: base };
}

export function overloadMarkdown(r: OverloadResult): string {
  const n = (x: number) => x.toLocaleString('en-US');
  const row = (name: string, f: OverloadFigures) =>
    `| ${name} | ${n(f.pushed)} | ${n(f.waitingAtEnd)} | ${f.drained ? n(f.completed) : '(not waited for)'} | ${n(f.rejected)} | ${f.baselineRssMb.toFixed(0)} | ${f.peakRssMb.toFixed(0)} | ${(f.peakRssMb - f.baselineRssMb).toFixed(0)} |`;
  return [
    `Offered ${r.offeredPerSecond.toLocaleString('en-US')} events/s (1 KB of text each) to a model that takes ${MODEL_MS} ms with ${CONCURRENCY} in flight (capacity ${r.capacityPerSecond.toLocaleString('en-US')}/s); rxserve's step has \`maxQueue: ${QUEUE}\`.`,
    '',
    '| case | pushed | held when the push ended | completed | rejected (QueueFullError) | RSS before MB | peak RSS MB | growth MB |',
    '|---|---|---|---|---|---|---|---|',
    row(`rxserve modelRunner (maxInFlight ${CONCURRENCY}, maxQueue ${QUEUE})`, r.ours),
    row(`RxJS mergeMap(…, ${CONCURRENCY})`, r.mergeMap),
  ].join('\n');
}

if (process.argv[2] === '--overload-child') {
  const figures = await overloadChild(process.argv[3] as 'rxserve' | 'mergeMap', Number(process.argv[4]));
  process.send!(figures, () => process.exit(0));
}
