// Dynamic batching on real mechanisms (docs/design.md §13): one predictBatch per batch, in the worker
// that holds the model; outputs as without batching; per-call errors, timeouts and cancellation.
import { lastValueFrom, from, Subject, toArray } from 'rxjs';
import { describe, expect, it } from 'vitest';
import { asEvents, modelRunner, toEvent, type ExecutionMechanism, type ModelEntry, type ServingEvent } from '../src/index.js';

const fixture = new URL('./fixtures/batchModels.mjs', import.meta.url).href;
const entry = (executionMechanism: ExecutionMechanism, extra: Partial<ModelEntry> = {}): ModelEntry => ({
  endpointName: 'double',
  modelClass: { module: fixture, export: 'Doubler' },
  executionMechanism,
  ...extra,
});
const MECHANISMS = ['asyncio', 'thread_pool', 'process_pool', 'dedicated_process'] as const;
type Out = { y: number; batch: number; size: number };

describe.each(MECHANISMS)('batching on %s', (mechanism) => {
  const run = (bodies: unknown[], extra: Partial<ModelEntry>) =>
    lastValueFrom(
      from(bodies).pipe(
        asEvents(),
        modelRunner({ models: [entry(mechanism, extra)], raiseException: false, pool: { maxThreads: 1, maxProcesses: 1 } }),
        toArray(),
      ),
    );

  it('gives the outputs of unbatched calls, from batches that really formed', async () => {
    const bodies = Array.from({ length: 40 }, (_, i) => ({ x: i }));
    const plain = (await run(bodies, {})).map((e) => (e.body as Out).y);
    const out = (await run(bodies, { batching: { maxBatchSize: 8, maxWaitMs: 20 } })).map((e) => e.body as Out);
    expect(out.map((o) => o.y)).toEqual(plain);
    expect(plain).toEqual(bodies.map((b) => b.x * 2));
    // 40 calls arriving at once: batches of 8, never more.
    expect(Math.max(...out.map((o) => o.size))).toBe(8);
    expect(new Set(out.map((o) => o.batch)).size).toBe(5);
  });

  it('a bad call in a batch fails alone', async () => {
    const out = await run([{ x: 1 }, { x: -1 }, { x: 3 }], { batching: { maxBatchSize: 4, maxWaitMs: 20 } });
    expect(out.map((e) => e.body)).toEqual([
      { y: 2, batch: expect.any(Number), size: 3 },
      { error: 'RangeError: x must be >= 0, got -1' },
      { y: 6, batch: expect.any(Number), size: 3 },
    ]);
  });

  it('a timed-out batch fails its calls with ModelTimeoutError, and the next batch is served', async () => {
    const out = await run([{ x: 1, ms: 400 }, { x: 2 }], { timeoutMs: 150, batching: { maxBatchSize: 2, maxWaitMs: 20 } });
    expect(out.map((e) => e.body)).toEqual([
      { error: "ModelTimeoutError: model 'double' timed out after 150 ms" },
      { error: "ModelTimeoutError: model 'double' timed out after 150 ms" },
    ]);
    const next = await run([{ x: 5 }], { timeoutMs: 150, batching: { maxBatchSize: 2, maxWaitMs: 5 } });
    expect(next[0].body).toMatchObject({ y: 10 });
  });

  it('a cancelled event leaves its batch; the others keep their results', async () => {
    const controller = new AbortController();
    const source = new Subject<ServingEvent>();
    const out: ServingEvent[] = [];
    let warm: () => void = () => undefined;
    const warmed = new Promise<void>((resolve) => (warm = resolve));
    const done = new Promise<void>((resolve) =>
      source
        .pipe(
          modelRunner({
            models: [entry(mechanism, { batching: { maxBatchSize: 3, maxWaitMs: 20 } })],
            raiseException: false,
            pool: { maxThreads: 1, maxProcesses: 1 },
          }),
        )
        .subscribe({ next: (e) => (out.push(e), warm()), complete: resolve }),
    );
    // A first call, so the pool is up before the batch under test.
    source.next(toEvent({ x: 0 }));
    await warmed;
    source.next(toEvent({ x: 1, ms: 200 }));
    source.next(toEvent({ x: 2 }, { signal: controller.signal }));
    source.next(toEvent({ x: 3 }));
    source.complete();
    setTimeout(() => controller.abort(new Error('event 2 was cancelled')), 80);
    await done;
    out.shift();
    // The cancelled event leaves with its own body and the abort reason as its error.
    expect(out.map((e) => (e.error ? `${JSON.stringify(e.body)} ${e.error.message}` : e.body))).toEqual([
      { y: 2, batch: expect.any(Number), size: 3 },
      '{"x":2} event 2 was cancelled',
      { y: 6, batch: expect.any(Number), size: 3 },
    ]);
  });
});
