// The router family's own cost (docs/design.md §18), over the same models as its baselines:
// (a) votingEnsemble of three thread_pool classifiers against the same three steps called by hand
//     (Promise.all of one call per step, then the vote in a loop), 64 requests in flight;
// (b) parallelRun of three one-model steps against one modelRunner of the same three models, on
//     asyncio (the operators' overhead alone) and on thread_pool (three threads either way).
import { loadavg } from 'node:os';
import { Observable, Subject, type OperatorFunction } from 'rxjs';
import {
  createGraph,
  parallelRun,
  registerModel,
  toEvent,
  votingEnsemble,
  withBody,
  type ExecutionMechanism,
  type Graph,
  type ServingEvent,
} from 'rxserve';
import { drive, type RunFigures } from './driver.js';

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
  /** The median of the rounds' ratios of CPU time per request (every thread of this process). */
  readonly cpuRatio: number;
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
function oneModelSteps(
  graph: Graph,
  modelClass: string,
  mechanism: ExecutionMechanism,
  params: (name: string, i: number) => Record<string, unknown>,
) {
  return NAMES.map((name, i) =>
    graph.modelRunner({
      name: `step_${name}`,
      models: [{ endpointName: name, modelClass, executionMechanism: mechanism, params: params(name, i) }],
      pool: { maxThreads: 1 },
    }),
  );
}

/** The three routes alone against one modelRunner (asyncio): how far below its goal parallelRun's floor is. */
export interface RouterFloor {
  readonly mechanism: string;
  /** CPU µs per request: one modelRunner of the 3 models, the 3 steps alone summed, parallelRun. */
  readonly together: number;
  readonly alone: number;
  readonly ours: number;
  /** Medians of the rounds' CPU ratios: the sum over one modelRunner, parallelRun over the sum. */
  readonly floorRatio: number;
  readonly oursOverAlone: number;
  /** CPU µs per request of the minimal RxJS join, and its CPU ratio over one modelRunner. */
  readonly join: number;
  readonly joinRatio: number;
}
const floors: RouterFloor[] = [];

export async function runRouters(quick: boolean): Promise<RouterComparison[]> {
  floors.length = 0;
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
    const ensemble = votingEnsemble({
      name: 'ens',
      routes: Object.fromEntries(NAMES.map((n, i) => [n, steps[i]])),
      voteType: 'classification',
    });
    const [base, ours] = await interleaved(runs, [
      () => byHand(steps, total, inFlight, voteBody, voteLoop),
      () => drive(ensemble, total, inFlight, voteBody, { isRejected: rejected }),
    ]);
    results.push(compared('votingEnsemble, 3 thread_pool classifiers', 'the same 3 steps: Promise.all + vote loop', ours, base, 1.2));
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
    // The floor of the goal against one modelRunner: the three steps alone, each driven on its own
    // and their figures summed (no fan-out, no join, no merge) — asyncio only, where everything
    // runs on this thread and the sum is what running the three routes costs.
    const alone = async (): Promise<Measured> => {
      const each: Measured[] = [];
      for (const s of steps) each.push(await measured(() => drive(s, total, inFlight, keyedBody, { isRejected: rejected })));
      const perEventUs = each.reduce((sum, f) => sum + f.perEventUs, 0);
      return {
        events: total,
        seconds: (perEventUs * total) / 1e6,
        perEventUs,
        perSecond: 1e6 / perEventUs,
        rejected: 0,
        cpuUs: each.reduce((sum, f) => sum + f.cpuUs, 0),
      };
    };
    const joined = rxJoin(steps);
    const [base, hand, ours, rx, sum] = await interleaved(runs, [
      () => drive(together, total, inFlight, keyedBody, { isRejected: rejected }),
      () => byHand(steps, total, inFlight, keyedBody, mergeLoop),
      () => drive(fan, total, inFlight, keyedBody, { isRejected: rejected }),
      () => drive(joined, total, inFlight, keyedBody, { isRejected: rejected }),
      ...(mechanism === 'asyncio' ? [alone] : []),
    ]);
    results.push(
      compared(`parallelRun, 3 ${mechanism} one-model steps`, `one modelRunner of the same 3 models (${mechanism})`, ours, base, 1.1),
    );
    // The same three steps by hand: what parallelRun itself adds over running its routes.
    results.push(compared(`parallelRun, 3 ${mechanism} one-model steps`, 'the same 3 steps: Promise.all + merge loop', ours, hand, 1.1));
    results.push(
      compared(
        `parallelRun, 3 ${mechanism} one-model steps`,
        'the same 3 steps: a minimal RxJS join (one Subject, answers by id, bodies merged)',
        ours,
        rx,
        1.1,
      ),
    );
    if (sum !== undefined)
      floors.push({
        mechanism,
        together: median(base.map((r) => r.cpuUs)),
        alone: median(sum.map((r) => r.cpuUs)),
        ours: median(ours.map((r) => r.cpuUs)),
        floorRatio: pairedRatio(sum, base),
        oursOverAlone: pairedRatio(ours, sum),
        join: median(rx.map((r) => r.cpuUs)),
        joinRatio: pairedRatio(rx, base),
      });
    await graph.close();
  }
  for (const r of results)
    if (r.ours.rejected > 0) throw new Error(`${r.name}: ${r.ours.rejected} events failed; the bench must not overflow`);
  return results;
}

/**
 * The least a hand-written fan-out and join of `steps` does: one Subject into every step, answers
 * counted by id, bodies merged into one output (no metadata merge, no failure handling, no shared
 * ids). What parallelRun costs beyond this is its own; what this costs beyond one modelRunner is
 * running three steps instead of one.
 */
function rxJoin(steps: readonly OperatorFunction<ServingEvent, ServingEvent>[]): OperatorFunction<ServingEvent, ServingEvent> {
  return (source) =>
    new Observable<ServingEvent>((out) => {
      const subject = new Subject<ServingEvent>();
      const waiting = new Map<string, { event: ServingEvent; answers: ServingEvent[]; left: number }>();
      const subscriptions = steps.map((step, i) =>
        subject.pipe(step).subscribe((answer) => {
          const w = waiting.get(answer.id)!;
          w.answers[i] = answer;
          if (--w.left > 0) return;
          waiting.delete(answer.id);
          const merged: Record<string, unknown> = {};
          for (const a of w.answers) Object.assign(merged, a.body);
          out.next(withBody(w.event, merged));
        }),
      );
      subscriptions.push(
        source.subscribe((event) => {
          waiting.set(event.id, { event, answers: [], left: steps.length });
          subject.next(event);
        }),
      );
      return () => subscriptions.forEach((s) => s.unsubscribe());
    });
}

/** A run's figures with the CPU time (user + system, every thread of this process) per request. */
type Measured = RunFigures & { readonly cpuUs: number };

async function measured(run: () => Promise<RunFigures>): Promise<Measured> {
  const before = process.cpuUsage();
  const figures = await run();
  const cpu = process.cpuUsage(before);
  return { ...figures, cpuUs: (cpu.user + cpu.system) / figures.events };
}

/**
 * After a warm-up of each, `rounds` rounds that run every case once in turn: a burst of load from
 * elsewhere hits all of them, and ratios are taken round by round.
 */
async function interleaved(rounds: number, cases: readonly (() => Promise<RunFigures>)[]): Promise<Measured[][]> {
  for (const run of cases) await measured(run);
  const out: Measured[][] = cases.map(() => []);
  for (let r = 0; r < rounds; r++) for (let c = 0; c < cases.length; c++) out[c].push(await measured(cases[c]));
  return out;
}

const median = (xs: readonly number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
/** The median of the rounds' CPU ratios. */
const pairedRatio = (ours: readonly Measured[], base: readonly Measured[]): number => median(ours.map((o, i) => o.cpuUs / base[i].cpuUs));
/** The median run (by wall time) of each side, and the CPU ratio of the rounds. */
const byWall = (xs: readonly Measured[]): Measured => [...xs].sort((a, b) => a.perEventUs - b.perEventUs)[Math.floor(xs.length / 2)];
const compared = (
  name: string,
  baseline: string,
  ours: readonly Measured[],
  base: readonly Measured[],
  goal: number,
): RouterComparison => ({
  name,
  baseline,
  ours: byWall(ours),
  base: byWall(base),
  cpuRatio: pairedRatio(ours, base),
  goal,
});

export function routersMarkdown(results: readonly RouterComparison[]): string {
  return [
    `Load average at the end: ${loadavg()
      .map((l) => l.toFixed(1))
      .join(
        ', ',
      )}. Wall-clock µs per request (median of the interleaved rounds); the CPU ratio is the median of the rounds' ratios of this process's CPU time per request (worker threads included), which a shared machine moves less.`,
    '',
    '| case | rxserve µs/request | baseline | baseline µs/request | ratio (wall) | CPU ratio | goal (wall) | rxserve requests/s |',
    '|---|---|---|---|---|---|---|---|',
    ...results.map((r) => {
      const ratio = r.ours.perEventUs / r.base.perEventUs;
      return `| ${r.name} | ${r.ours.perEventUs.toFixed(2)} | ${r.baseline} | ${r.base.perEventUs.toFixed(2)} | ${ratio.toFixed(2)}× | ${r.cpuRatio.toFixed(2)}× | ≤ ${r.goal}× (${ratio <= r.goal ? 'met' : 'not met'}) | ${Math.round(r.ours.perSecond).toLocaleString('en-US')} |`;
    }),
    ...floors.flatMap((f) => [
      '',
      `Floor (${f.mechanism}): the 3 one-model steps each driven alone, CPU µs per request summed: ${f.alone.toFixed(2)} against ${f.together.toFixed(2)} for one modelRunner of the 3 models — ` +
        `**${f.floorRatio.toFixed(2)}× before any fan-out or join**; parallelRun (${f.ours.toFixed(2)}) is ${f.oursOverAlone.toFixed(2)}× that sum (which counts the driver three times). ` +
        `The minimal RxJS join of the same steps: ${f.join.toFixed(2)}, **${f.joinRatio.toFixed(2)}× one modelRunner**.`,
    ]),
  ].join('\n');
}

// `tsx bench/routers.bench.ts [--quick]` runs this benchmark alone.
if (import.meta.url === `file://${process.argv[1]}`) {
  const results = await runRouters(process.argv.includes('--quick'));
  console.log(routersMarkdown(results));
}
