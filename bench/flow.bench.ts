// Flows (docs/design.md §17) against the same work written by hand in RxJS:
//   (a) a 6-step linear flow vs the same six step() operators in pipe()              goal ≤ 1.15×
//   (b) a fan-out of 3 side branches + a responder vs hand-written share()/merge()   goal ≤ 1.3×
//   (c) a 3-iteration cycle (step → choice → back) vs a hand-written expand() loop   goal ≤ 1.3×
// (a) and (b) use the same rxserve step() operators on both sides; (c)'s baseline cannot reuse an
// operator per iteration, so both sides call the same plain functions (map in the flow). Rows with
// bare RxJS map() steps show the flow's own cost where the steps cost next to nothing (no goal).
import { loadavg } from 'node:os';
import { EMPTY, expand, filter, ignoreElements, map, merge, mergeMap, of, pipe, share, type OperatorFunction } from 'rxjs';
import { choice, flow, step, withBody, type ServingEvent } from 'rxserve';
import { drive, type RunFigures } from './driver.js';
import type { Comparison } from './modelRunner.bench.js';
import { formatRatio, medianBy, paired } from './paired.js';

type Op = OperatorFunction<ServingEvent, ServingEvent>;
interface Body {
  x: number;
  n?: number;
}
const body = (i: number): Body => ({ x: i });
const inc = (b: Body): Body => ({ x: b.x + 1, n: b.n });
/** A bare RxJS step: the function on the body, errored events passed (as rxserve's steps do). */
const mapStep = (fn: (b: Body) => Body): Op => map((e: ServingEvent) => (e.error ? e : withBody(e, fn(e.body as Body))));
const rxStep = (fn: (b: Body) => Body): Op => step(fn);

/** Figures of one case: CPU time per event (this process), and the median (quartiles) of the paired ratios. */
export interface FlowComparison extends Comparison {
  readonly ratio: number;
  readonly low: number;
  readonly high: number;
}

/**
 * One run: `total` events through `op`, timed by this process's CPU time (user + system) rather
 * than the wall clock, so that other processes on a shared machine weigh less on the figure.
 */
async function cpuRun(op: Op, total: number): Promise<RunFigures> {
  const before = process.cpuUsage();
  const figures = await drive(op, total, 64, body);
  const cpu = process.cpuUsage(before);
  const perEventUs = (cpu.user + cpu.system) / total;
  return { ...figures, perEventUs, perSecond: 1e6 / perEventUs };
}

let loadAtStart = loadavg();

export async function runFlow(quick: boolean): Promise<FlowComparison[]> {
  loadAtStart = loadavg();
  const total = quick ? 20_000 : 100_000;
  const rounds = quick ? 5 : 11;
  const results: FlowComparison[] = [];
  // Ours and the baseline alternate, round after round (after a warm-up of each): a burst of load
  // from elsewhere hits both, and the ratio is the median of the rounds' ratios (bench/paired.ts).
  const compare = async (name: string, baseline: string, ours: () => Op, base: () => Op) => {
    const p = await paired(
      () => cpuRun(ours(), total),
      () => cpuRun(base(), total),
      { rounds, metric: (x) => x.perEventUs },
    );
    const perEvent = (x: RunFigures) => x.perEventUs;
    results.push({
      name,
      baseline,
      ours: medianBy(p.ours, perEvent),
      base: medianBy(p.base, perEvent),
      ratio: p.ratio,
      low: p.low,
      high: p.high,
    });
  };

  // (a) six steps in a line.
  const linearFlow = (make: (fn: (b: Body) => Body) => Op) => () => {
    const f = flow();
    let handle = f.to('s1', make(inc));
    for (let i = 2; i <= 6; i++) handle = handle.to(`s${i}`, make(inc));
    handle.respond();
    return f.build();
  };
  const linearPipe = (make: (fn: (b: Body) => Body) => Op) => () =>
    pipe(make(inc), make(inc), make(inc), make(inc), make(inc), make(inc)) as Op;
  await compare('(a) 6 step()s in a line', 'the same 6 step()s in pipe()', linearFlow(rxStep), linearPipe(rxStep));
  await compare('(a′) 6 bare map() steps in a line', 'the same 6 map()s in pipe()', linearFlow(mapStep), linearPipe(mapStep));

  // (b) an entry, three side branches and the responder.
  const fanFlow = (make: (fn: (b: Body) => Body) => Op) => () => {
    const f = flow();
    f.to('entry', make(inc));
    for (const side of ['audit', 'log', 'metrics']) f.add(side, make(inc), { after: 'entry' });
    f.add('reply', make(inc), { after: 'entry' }).respond();
    return f.build();
  };
  const fanHand = (make: (fn: (b: Body) => Body) => Op) => (): Op => (source) => {
    const shared = source.pipe(make(inc), share());
    return merge(
      shared.pipe(make(inc), ignoreElements()),
      shared.pipe(make(inc), ignoreElements()),
      shared.pipe(make(inc), ignoreElements()),
      shared.pipe(make(inc)),
    );
  };
  await compare(
    '(b) fan-out: 3 side branches + responder (step()s)',
    'share() + merge() of the same step()s',
    fanFlow(rxStep),
    fanHand(rxStep),
  );
  await compare('(b′) the same fan-out with bare map() steps', 'share() + merge() of the same map()s', fanFlow(mapStep), fanHand(mapStep));

  // (c) generate three times round a loop, then answer.
  const gen = (b: Body): Body => ({ x: b.x + 1, n: (b.n ?? 0) + 1 });
  const reply = (b: Body): Body => ({ x: b.x, n: b.n });
  const cycleFlow = (): Op => {
    const f = flow();
    f.to('generate', mapStep(gen), { maxIterations: 3 })
      .to(
        'judge',
        choice((e) => ((e.body as Body).n! >= 3 ? 'reply' : 'generate')),
      )
      .cycleTo('generate');
    f.add('reply', mapStep(reply), { after: 'judge' }).respond();
    return f.build();
  };
  const cycleHand = (): Op =>
    mergeMap((e: ServingEvent) =>
      of(withBody(e, gen(e.body as Body))).pipe(
        expand((x) => ((x.body as Body).n! >= 3 ? EMPTY : of(withBody(x, gen(x.body as Body))))),
        filter((x) => (x.body as Body).n! >= 3),
        map((x) => withBody(x, reply(x.body as Body))),
      ),
    );
  await compare(
    '(c) a 3-iteration cycle (step → choice → back), then reply',
    'mergeMap + expand() over the same functions',
    cycleFlow,
    cycleHand,
  );
  return results;
}

export function flowMarkdown(results: readonly FlowComparison[]): string {
  const goals: Record<string, string> = { '(a)': '≤ 1.15×', '(b)': '≤ 1.3×', '(c)': '≤ 1.3×' };
  return [
    `CPU µs per event (this process's user + system time), medians of alternating rounds; load average at the start: ${loadAtStart
      .map((l) => l.toFixed(1))
      .join(', ')}.`,
    '',
    '| case | flow CPU µs/event | baseline | baseline CPU µs/event | ratio: median of rounds (quartiles) | goal |',
    '|---|---|---|---|---|---|',
    ...results.map((r) => {
      const goal = goals[r.name.slice(0, 3)] ?? '–';
      return `| ${r.name} | ${r.ours.perEventUs.toFixed(2)} | ${r.baseline} | ${r.base.perEventUs.toFixed(2)} | ${formatRatio(r)} | ${goal} |`;
    }),
  ].join('\n');
}
