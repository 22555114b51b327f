// The router family's own cost (docs/design.md §18), over the same models as its baselines:
// (a) votingEnsemble of three thread_pool classifiers against the same three steps called by hand
//     (Promise.all of one call per step, then the vote in a loop), 64 requests in flight;
// (b) parallelRun of three one-model steps against one modelRunner of the same three models, on
//     asyncio (the operators' overhead alone) and on thread_pool (three threads either way).
import { Subject, type OperatorFunction } from 'rxjs';
import { createGraph, parallelRun, registerModel, toEvent, votingEnsemble, type ExecutionMechanism, type Graph, type ServingEvent } from 'rxserve';
import { drive, median, type RunFigures } from './driver.js';

const fixtures = new URL('./fixtures/models.mjs', import.meta.url).href;
registerModel('BenchStump', { module: fixtures, export: 'Stump' });
registerModel('BenchKeyed', { module: fixtures, export: 'Keyed' });

const NAMES = ['a', 'b', 'c'] as const;
const ROWS = [
  [0.9, 0.1, 0.6],
  [0.2, 0.8, 0.4],
];
const voteBody = () => ({ inputs: ROWS });
const keyedBody = (i: number) => ({ x: i });

export interface RouterComparison {
  readonly name: string;
  readonly baseline: string;
  readonly ours: RunFigures;
  readonly base: RunFigures;
  readonly goal: number;
}

/** One step driven call by call: its answers matched by event id. */
function caller(step: OperatorFunction<ServingEvent, ServingEvent>): { call(body: unknown): Promise<unknown>; close(): void } {
  const input = new Subject<ServingEvent>();
  const pending = new Map<string, (e: ServingEvent) => void>();
  let id = 0;
  const subscription = input.pipe(step).subscribe((event) => {
    const resolve = pending.get(event.id)!;
    pending.delete(event.id);
    resolve(event);
  });
  return {
    call: (body) =>
      new Promise((resolve, reject) => {
        const key = String(id++);
        pending.set(key, (event) => (event.error ? reject(event.error) : resolve(event.body)));
        input.next(toEvent(body, { id: key }));
      }),
    close: () => {
      input.complete();
      subscription.unsubscribe();
    },
  };
}

/** `inFlight` loops, each request Promise.all over the steps, then `combine` of their answers. */
async function byHand(
  steps: readonly OperatorFunction<ServingEvent, ServingEvent>[],
  total: number,
  inFlight: number,
  body: (i: number) => unknown,
  combine: (answers: unknown[]) => void,
): Promise<RunFigures> {
  const callers = steps.map(caller);
  let started = 0;
  const t0 = performance.now();
  const loop = async (): Promise<void> => {
    while (started < total) {
      const b = body(started++);
      combine(await Promise.all(callers.map((c) => c.call(b))));
    }
  };
  await Promise.all(Array.from({ length: inFlight }, loop));
  const seconds = (performance.now() - t0) / 1000;
  for (const c of callers) c.close();
  return { events: total, seconds, perEventUs: (seconds * 1e6) / total, perSecond: total / seconds, rejected: 0 };
}

/** The baseline's vote: per row, the class with the largest sum of (equal) weights, the smallest on a tie. */
function voteLoop(outputs: unknown[]): void {
  const answers = outputs as number[][];
  const weight = 1 / answers.length;
  const votes = new Array<number>(ROWS.length);
  for (let row = 0; row < ROWS.length; row++) {
    const scores = new Map<number, number>();
    for (let m = 0; m < answers.length; m++) scores.set(answers[m][row], (scores.get(answers[m][row]) ?? 0) + weight);
    let best = -1;
    let bestScore = -1;
    for (const [label, score] of scores) if (score > bestScore || (score === bestScore && label < best)) [best, bestScore] = [label, score];
    votes[row] = best;
  }
  if (votes.length !== ROWS.length) throw new Error('no vote');
}

/** The baseline's merge: the answers' objects into one. */
function mergeLoop(outputs: unknown[]): void {
  const merged: Record<string, unknown> = {};
  for (const out of outputs) Object.assign(merged, out);
  if (Object.keys(merged).length !== outputs.length) throw new Error('no merge');
}

/** Three one-model steps of `graph` (their pools live in the graph across subscriptions). */
function oneModelSteps(graph: Graph, modelClass: string, mechanism: ExecutionMechanism, params: (name: string, i: number) => Record<string, unknown>) {
  return NAMES.map((name, i) =>
    graph.modelRunner({ name: `step_${name}`, models: [{ endpointName: name, modelClass, executionMechanism: mechanism, params: params(name, i) }], pool: { maxThreads: 1 } }),
  );
}

export async function runRouters(quick: boolean): Promise<RouterComparison[]> {
  const runs = quick ? 3 : 5;
  const inFlight = 64;
  const results: RouterComparison[] = [];
  const rejected = (e: ServingEvent) => e.error !== undefined;

  // (a) votingEnsemble of three thread_pool classifiers vs the same steps by hand.
  {
    const total = quick ? 5_000 : 40_000;
    const graph = createGraph({ name: 'bench-vote' });
    const steps = oneModelSteps(graph, 'BenchStump', 'thread_pool', (_, i) => ({ feature: i }));
    await graph.ready();
    const ensemble = votingEnsemble({ name: 'ens', routes: Object.fromEntries(NAMES.map((n, i) => [n, steps[i]])), voteType: 'classification' });
    const base = await median(runs, () => byHand(steps, total, inFlight, voteBody, voteLoop));
    const ours = await median(runs, () => drive(ensemble, total, inFlight, voteBody, { isRejected: rejected }));
    results.push({ name: 'votingEnsemble, 3 thread_pool classifiers', baseline: 'the same 3 steps: Promise.all + vote loop', ours, base, goal: 1.2 });
    await graph.close();
  }

  // (b) parallelRun vs one modelRunner of the same three models.
  for (const mechanism of ['asyncio', 'thread_pool'] as const) {
    const total = mechanism === 'asyncio' ? (quick ? 20_000 : 200_000) : quick ? 5_000 : 40_000;
    const graph = createGraph({ name: `bench-parallel-${mechanism}` });
    const steps = oneModelSteps(graph, 'BenchKeyed', mechanism, () => ({}));
    const together = graph.modelRunner({
      name: 'together',
      models: NAMES.map((n) => ({ endpointName: `${n}_`, modelClass: 'BenchKeyed', executionMechanism: mechanism })),
      pool: { maxThreads: 3 },
    });
    await graph.ready();
    const fan = parallelRun({ name: 'fan', routes: Object.fromEntries(NAMES.map((n, i) => [n, steps[i]])) });
    const base = await median(runs, () => drive(together, total, inFlight, keyedBody, { isRejected: rejected }));
    const hand = await median(runs, () => byHand(steps, total, inFlight, keyedBody, mergeLoop));
    const ours = await median(runs, () => drive(fan, total, inFlight, keyedBody, { isRejected: rejected }));
    results.push({ name: `parallelRun, 3 ${mechanism} one-model steps`, baseline: `one modelRunner of the same 3 models (${mechanism})`, ours, base, goal: 1.1 });
    // The same three steps by hand: what parallelRun itself adds over running its routes.
    results.push({ name: `parallelRun, 3 ${mechanism} one-model steps`, baseline: 'the same 3 steps: Promise.all + merge loop', ours, base: hand, goal: 1.1 });
    await graph.close();
  }
  for (const r of results) if (r.ours.rejected > 0) throw new Error(`${r.name}: ${r.ours.rejected} events failed; the bench must not overflow`);
  return results;
}

export function routersMarkdown(results: readonly RouterComparison[]): string {
  return [
    '| case | rxserve µs/request | baseline | baseline µs/request | ratio | goal | rxserve requests/s |',
    '|---|---|---|---|---|---|---|',
    ...results.map((r) => {
      const ratio = r.ours.perEventUs / r.base.perEventUs;
      return `| ${r.name} | ${r.ours.perEventUs.toFixed(2)} | ${r.baseline} | ${r.base.perEventUs.toFixed(2)} | ${ratio.toFixed(2)}× | ≤ ${r.goal}× (${ratio <= r.goal ? 'met' : 'not met'}) | ${Math.round(r.ours.perSecond).toLocaleString('en-US')} |`;
    }),
  ].join('\n');
}

// `tsx bench/routers.bench.ts [--quick]` runs this benchmark alone.
if (import.meta.url === `file://${process.argv[1]}`) {
  const results = await runRouters(process.argv.includes('--quick'));
  console.log(routersMarkdown(results));
}
