// In-process fan-out: three models with a selector through modelRunner, against a hand-written
// RxJS fan-out (mergeMap + forkJoin) over the same functions and the same selection.
import { forkJoin, from, map, mergeMap, of } from 'rxjs';
import { Model, createGraph, modelRunner, type ModelEntry, type ServingEvent } from 'rxserve';
import { drive, median, type RunFigures } from './driver.js';

interface Body {
  x: number;
  pick: number;
}
const NAMES = ['a', 'b', 'c'] as const;
const choose = (body: Body): readonly string[] => (body.pick % 2 === 0 ? NAMES : ['a', 'c']);
const body = (i: number): Body => ({ x: i, pick: i });

class AsyncScore extends Model<Body, { y: number }> {
  override async predict(b: Body) {
    return { y: b.x * 2 + 1 };
  }
}
class SyncScore extends Model<Body, { y: number }> {
  override predict(b: Body) {
    return { y: b.x * 2 + 1 };
  }
}

export interface Comparison {
  readonly name: string;
  readonly baseline: string;
  readonly ours: RunFigures;
  readonly base: RunFigures;
}

export async function runModelRunner(quick: boolean): Promise<Comparison[]> {
  const total = quick ? 20_000 : 200_000;
  const runs = quick ? 3 : 5;
  const inFlight = 64;
  const entries = (cls: typeof AsyncScore | typeof SyncScore, mechanism: 'asyncio' | 'naive'): ModelEntry[] =>
    NAMES.map((endpointName) => ({ endpointName, modelClass: cls, executionMechanism: mechanism }));
  const selector = (e: ServingEvent) => choose(e.body as Body);

  const asyncModels = Object.fromEntries(NAMES.map((n) => [n, new AsyncScore({ name: n })]));
  const syncModels = Object.fromEntries(NAMES.map((n) => [n, new SyncScore({ name: n })]));
  const handAsync = mergeMap((event: ServingEvent) => {
    const names = choose(event.body as Body);
    return forkJoin(names.map((n) => from(asyncModels[n].predict(event.body as Body)))).pipe(
      map((outs) => Object.fromEntries(names.map((n, i) => [n, outs[i]]))),
    );
  });
  const handSync = mergeMap((event: ServingEvent) => {
    const names = choose(event.body as Body);
    return forkJoin(names.map((n) => of(syncModels[n].predict(event.body as Body)))).pipe(
      map((outs) => Object.fromEntries(names.map((n, i) => [n, outs[i]]))),
    );
  });
  const rejected = (e: ServingEvent) => e.error !== undefined;

  const results: Comparison[] = [];
  const base1 = await median(runs, () => drive(handAsync, total, inFlight, body));
  const ours1 = await median(runs, () =>
    drive(modelRunner({ models: entries(AsyncScore, 'asyncio'), selector, maxInFlight: inFlight }), total, inFlight, body, rejected),
  );
  results.push({ name: '3 asyncio models + selector', baseline: 'mergeMap + forkJoin (async)', ours: ours1, base: base1 });
  const base2 = await median(runs, () => drive(handSync, total, inFlight, body));
  const ours2 = await median(runs, () =>
    drive(modelRunner({ models: entries(SyncScore, 'naive'), selector, maxInFlight: inFlight }), total, inFlight, body, rejected),
  );
  results.push({ name: '3 naive models + selector', baseline: 'mergeMap + forkJoin(of) (sync)', ours: ours2, base: base2 });

  // Monitoring: the same asyncio step bound to a graph, with records at 100% sampling vs untracked.
  const graphStep = (tracked: boolean) => {
    const graph = createGraph(tracked ? { monitoring: { samplingPercentage: 100 } } : {});
    graph.monitoring$.subscribe(() => undefined);
    return graph.modelRunner({ models: entries(AsyncScore, 'asyncio'), selector, maxInFlight: inFlight });
  };
  const off = await median(runs, () => drive(graphStep(false), total, inFlight, body, rejected));
  const on = await median(runs, () => drive(graphStep(true), total, inFlight, body, rejected));
  results.push({ name: 'monitoring on (100% sampling, records built)', baseline: 'the same graph step, untracked', ours: on, base: off });
  for (const r of results) if (r.ours.rejected > 0) throw new Error(`${r.name}: ${r.ours.rejected} events rejected; the bench must not overflow`);
  return results;
}

export function modelRunnerMarkdown(results: readonly Comparison[]): string {
  return [
    '| case | rxserve µs/event | baseline | baseline µs/event | ratio | rxserve events/s |',
    '|---|---|---|---|---|---|',
    ...results.map(
      (r) =>
        `| ${r.name} | ${r.ours.perEventUs.toFixed(2)} | ${r.baseline} | ${r.base.perEventUs.toFixed(2)} | ${(r.ours.perEventUs / r.base.perEventUs).toFixed(2)}× | ${Math.round(r.ours.perSecond).toLocaleString('en-US')} |`,
    ),
  ].join('\n');
}
