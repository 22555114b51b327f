// In-process fan-out: three models with a selector through modelRunner, against a hand-written
// RxJS fan-out (mergeMap + forkJoin) over the same functions and the same selection (the floor),
// and against LangChain.js RunnableParallel over the same three functions (a peer).
import { RunnableLambda, RunnableParallel } from '@langchain/core/runnables';
import { forkJoin, from, map, mergeMap, of } from 'rxjs';
import { Model, createGraph, modelRunner, type ModelEntry, type ServingEvent } from 'rxserve';
import { drive, median, type RunFigures } from './driver.js';

interface Body {
  x: number;
  pick: number;
}
const NAMES = ['a', 'b', 'c'] as const;
const SOME = ['a', 'c'] as const;
const choose = (body: Body): readonly string[] => (body.pick % 2 === 0 ? NAMES : SOME);
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
  /** A peer library on the same functions, when there is one for this case. */
  readonly peer?: { readonly name: string; readonly figures: RunFigures };
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
  // LangChain: one RunnableParallel per selection (RunnableParallel has no per-input selection),
  // each branch a RunnableLambda over the same model instance.
  const parallelOf = (names: readonly string[]) =>
    RunnableParallel.from(Object.fromEntries(names.map((n) => [n, RunnableLambda.from((b: Body) => asyncModels[n].predict(b))])));
  const parallels = new Map<readonly string[], ReturnType<typeof parallelOf>>([NAMES, SOME].map((names) => [names, parallelOf(names)]));
  const langchain = mergeMap((event: ServingEvent) => from(parallels.get(choose(event.body as Body))!.invoke(event.body as Body)));

  const results: Comparison[] = [];
  const base1 = await median(runs, () => drive(handAsync, total, inFlight, body));
  const ours1 = await median(runs, () =>
    drive(modelRunner({ models: entries(AsyncScore, 'asyncio'), selector, maxInFlight: inFlight }), total, inFlight, body, {
      isRejected: rejected,
    }),
  );
  const peer1 = await median(runs, () => drive(langchain, Math.ceil(total / 10), inFlight, body));
  results.push({
    name: '3 asyncio models + selector',
    baseline: 'mergeMap + forkJoin (async)',
    ours: ours1,
    base: base1,
    peer: { name: 'LangChain RunnableParallel.invoke', figures: peer1 },
  });
  const base2 = await median(runs, () => drive(handSync, total, inFlight, body));
  const ours2 = await median(runs, () =>
    drive(modelRunner({ models: entries(SyncScore, 'naive'), selector, maxInFlight: inFlight }), total, inFlight, body, {
      isRejected: rejected,
    }),
  );
  results.push({ name: '3 naive models + selector', baseline: 'mergeMap + forkJoin(of) (sync)', ours: ours2, base: base2 });

  // Monitoring: the same asyncio step bound to a graph, with records at 100% sampling vs untracked.
  const graphStep = (tracked: boolean) => {
    const graph = createGraph(tracked ? { monitoring: { samplingPercentage: 100 } } : {});
    graph.monitoring$.subscribe(() => undefined);
    return graph.modelRunner({ models: entries(AsyncScore, 'asyncio'), selector, maxInFlight: inFlight });
  };
  const off = await median(runs, () => drive(graphStep(false), total, inFlight, body, { isRejected: rejected }));
  const on = await median(runs, () => drive(graphStep(true), total, inFlight, body, { isRejected: rejected }));
  results.push({ name: 'monitoring on (100% sampling, records built)', baseline: 'the same graph step, untracked', ours: on, base: off });
  for (const r of results)
    if (r.ours.rejected > 0) throw new Error(`${r.name}: ${r.ours.rejected} events rejected; the bench must not overflow`);
  return results;
}

export function modelRunnerMarkdown(results: readonly Comparison[]): string {
  const table = [
    '| case | rxserve µs/event | baseline | baseline µs/event | ratio | rxserve events/s |',
    '|---|---|---|---|---|---|',
    ...results.map(
      (r) =>
        `| ${r.name} | ${r.ours.perEventUs.toFixed(2)} | ${r.baseline} | ${r.base.perEventUs.toFixed(2)} | ${(r.ours.perEventUs / r.base.perEventUs).toFixed(2)}× | ${Math.round(r.ours.perSecond).toLocaleString('en-US')} |`,
    ),
  ];
  const peers = results.filter((r) => r.peer !== undefined);
  if (peers.length === 0) return table.join('\n');
  return [
    ...table,
    '',
    '| case | peer | peer µs/event | rxserve µs/event | rxserve is faster by |',
    '|---|---|---|---|---|',
    ...peers.map(
      (r) =>
        `| ${r.name} | ${r.peer!.name} | ${r.peer!.figures.perEventUs.toFixed(2)} | ${r.ours.perEventUs.toFixed(2)} | ${(r.peer!.figures.perEventUs / r.ours.perEventUs).toFixed(1)}× |`,
    ),
  ].join('\n');
}
