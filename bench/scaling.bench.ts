// Scaling: cost per event from 1 to 1,000,000 events through one step, and against the number of
// models per event (1, 4, 16), each beside the hand-written RxJS fan-out on the same models.
import { forkJoin, from, map, mergeMap } from 'rxjs';
import { Model, modelRunner, type ModelEntry, type ServingEvent } from 'rxserve';
import { drive, median, type RunFigures } from './driver.js';

class AsyncScore extends Model<{ x: number }, { y: number }> {
  override async predict(b: { x: number }) {
    return { y: b.x * 2 + 1 };
  }
}
const body = (i: number) => ({ x: i });
const IN_FLIGHT = 64;
const names = (n: number) => Array.from({ length: n }, (_, i) => `m${i}`);
const entries = (n: number): ModelEntry[] =>
  names(n).map((endpointName) => ({ endpointName, modelClass: AsyncScore, executionMechanism: 'asyncio' }));
const rejected = (e: ServingEvent) => e.error !== undefined;

function handFanOut(n: number) {
  const models = names(n).map((name) => [name, new AsyncScore({ name })] as const);
  return mergeMap((event: ServingEvent) =>
    forkJoin(models.map(([, m]) => from(m.predict(event.body as { x: number })))).pipe(
      map((outs) => Object.fromEntries(models.map(([name], i) => [name, outs[i]]))),
    ),
  );
}

export interface ScalingResult {
  /** Per event over runs of `events` events (short runs repeated, subscription included). */
  readonly byEvents: readonly { events: number; repeats: number; ours: number; base: number }[];
  readonly byModels: readonly { models: number; ours: RunFigures; base: RunFigures }[];
}

/** Per-event µs over `repeats` fresh subscriptions of `events` events each. */
async function perEvent(make: () => Parameters<typeof drive>[0], events: number, repeats: number): Promise<number> {
  const t0 = performance.now();
  for (let r = 0; r < repeats; r++) {
    const figures = await drive(make(), events, Math.min(IN_FLIGHT, events), body, { isRejected: rejected as never });
    if (figures.rejected > 0) throw new Error('scaling bench: events rejected');
  }
  return ((performance.now() - t0) * 1000) / (events * repeats);
}

export async function runScaling(quick: boolean): Promise<ScalingResult> {
  const counts = quick ? [1, 100, 10_000, 100_000] : [1, 100, 10_000, 1_000_000];
  const byEvents: { events: number; repeats: number; ours: number; base: number }[] = [];
  for (const events of counts) {
    const repeats = Math.max(1, Math.ceil((quick ? 20_000 : 100_000) / events));
    const ours = () => modelRunner({ models: entries(3), maxInFlight: IN_FLIGHT });
    await perEvent(ours, Math.min(events, 1000), 3); // warm-up
    byEvents.push({
      events,
      repeats,
      ours: await perEvent(ours, events, repeats),
      base: await perEvent(() => handFanOut(3), events, repeats),
    });
  }
  const byModels: { models: number; ours: RunFigures; base: RunFigures }[] = [];
  const total = quick ? 10_000 : 100_000;
  for (const n of [1, 4, 16]) {
    const base = await median(3, () => drive(handFanOut(n), total, IN_FLIGHT, body));
    const ours = await median(3, () =>
      drive(modelRunner({ models: entries(n), maxInFlight: IN_FLIGHT }), total, IN_FLIGHT, body, { isRejected: rejected }),
    );
    byModels.push({ models: n, ours, base });
  }
  return { byEvents, byModels };
}

export function scalingMarkdown(result: ScalingResult): string {
  const first = result.byEvents.at(-1)!;
  return [
    '| events per subscription | subscriptions | rxserve µs/event | hand-written RxJS µs/event | ratio | rxserve vs the longest run |',
    '|---|---|---|---|---|---|',
    ...result.byEvents.map(
      (r) =>
        `| ${r.events.toLocaleString('en-US')} | ${r.repeats.toLocaleString('en-US')} | ${r.ours.toFixed(2)} | ${r.base.toFixed(2)} | ${(r.ours / r.base).toFixed(2)}× | ${(r.ours / first.ours).toFixed(2)}× |`,
    ),
    '',
    '| asyncio models per event | rxserve µs/event | µs per model call | hand-written RxJS µs/event | ratio |',
    '|---|---|---|---|---|',
    ...result.byModels.map(
      (r) =>
        `| ${r.models} | ${r.ours.perEventUs.toFixed(2)} | ${(r.ours.perEventUs / r.models).toFixed(2)} | ${r.base.perEventUs.toFixed(2)} | ${(r.ours.perEventUs / r.base.perEventUs).toFixed(2)}× |`,
    ),
  ].join('\n');
}
