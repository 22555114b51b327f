// The flow bench's cases (bench/flow.bench.ts): each a flow and the same work written by hand in
// RxJS, built fresh per run. Apart from the bench so that a child process (bench/flowChild.ts) can
// run one case on its own, in a fresh process or under callgrind.
//   (a) a 6-step linear flow vs the same six step() operators in pipe()              goal ≤ 1.15×
//   (b) a fan-out of 3 side branches + a responder vs hand-written share()/merge()   goal ≤ 1.3×
//   (c) a 3-iteration cycle (step → choice → back) vs a hand-written expand() loop   goal ≤ 1.3×
// (a) and (b) use the same rxserve step() operators on both sides; (c)'s baseline cannot reuse an
// operator per iteration, so both sides call the same plain functions (map in the flow). Rows with
// bare RxJS map() steps (a′, b′) show the flow's own cost where the steps cost next to nothing.
import { EMPTY, expand, filter, ignoreElements, map, merge, mergeMap, of, pipe, share, type OperatorFunction } from 'rxjs';
import { choice, flow, step, withBody, type ServingEvent } from 'rxserve';

type Op = OperatorFunction<ServingEvent, ServingEvent>;
interface Body {
  x: number;
  n?: number;
}
export const body = (i: number): Body => ({ x: i });
const inc = (b: Body): Body => ({ x: b.x + 1, n: b.n });
/** A bare RxJS step: the function on the body, errored events passed (as rxserve's steps do). */
const mapStep = (fn: (b: Body) => Body): Op => map((e: ServingEvent) => (e.error ? e : withBody(e, fn(e.body as Body))));
const rxStep = (fn: (b: Body) => Body): Op => step(fn);
type Make = (fn: (b: Body) => Body) => Op;

export interface FlowCase {
  /** The row's key: 'a', "a'", 'b', "b'", 'c'. */
  readonly key: string;
  readonly name: string;
  readonly baseline: string;
  readonly goal: number | undefined;
  readonly ours: () => Op;
  readonly base: () => Op;
}

// (a) six steps in a line.
const linearFlow = (make: Make) => (): Op => {
  const f = flow();
  let handle = f.to('s1', make(inc));
  for (let i = 2; i <= 6; i++) handle = handle.to(`s${i}`, make(inc));
  handle.respond();
  return f.build();
};
const linearPipe = (make: Make) => (): Op => pipe(make(inc), make(inc), make(inc), make(inc), make(inc), make(inc)) as Op;

// (b) an entry, three side branches and the responder.
const fanFlow = (make: Make) => (): Op => {
  const f = flow();
  f.to('entry', make(inc));
  for (const side of ['audit', 'log', 'metrics']) f.add(side, make(inc), { after: 'entry' });
  f.add('reply', make(inc), { after: 'entry' }).respond();
  return f.build();
};
const fanHand = (make: Make) => (): Op => (source) => {
  const shared = source.pipe(make(inc), share());
  return merge(
    shared.pipe(make(inc), ignoreElements()),
    shared.pipe(make(inc), ignoreElements()),
    shared.pipe(make(inc), ignoreElements()),
    shared.pipe(make(inc)),
  );
};

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

export const FLOW_CASES: readonly FlowCase[] = [
  {
    key: 'a',
    name: '(a) 6 step()s in a line',
    baseline: 'the same 6 step()s in pipe()',
    goal: 1.15,
    ours: linearFlow(rxStep),
    base: linearPipe(rxStep),
  },
  {
    key: "a'",
    name: '(a′) 6 bare map() steps in a line',
    baseline: 'the same 6 map()s in pipe()',
    goal: undefined,
    ours: linearFlow(mapStep),
    base: linearPipe(mapStep),
  },
  {
    key: 'b',
    name: '(b) fan-out: 3 side branches + responder (step()s)',
    baseline: 'share() + merge() of the same step()s',
    goal: 1.3,
    ours: fanFlow(rxStep),
    base: fanHand(rxStep),
  },
  {
    key: "b'",
    name: '(b′) the same fan-out with bare map() steps',
    baseline: 'share() + merge() of the same map()s',
    goal: undefined,
    ours: fanFlow(mapStep),
    base: fanHand(mapStep),
  },
  {
    key: 'c',
    name: '(c) a 3-iteration cycle (step → choice → back), then reply',
    baseline: 'mergeMap + expand() over the same functions',
    goal: 1.3,
    ours: cycleFlow,
    base: cycleHand,
  },
];

export function flowCase(key: string): FlowCase {
  const found = FLOW_CASES.find((c) => c.key === key);
  if (found === undefined) throw new Error(`flow bench: no case '${key}' (cases: ${FLOW_CASES.map((c) => c.key).join(', ')})`);
  return found;
}
