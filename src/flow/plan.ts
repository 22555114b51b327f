// A flow's declarations compiled into the plan its operator runs: steps by index, edges resolved,
// and every build-time rule of docs/design.md §17 checked (unknown targets, loops of `after` edges,
// cycleTo targets that are not upstream, `before` targets that are not downstream, unbounded cycles).
// Over 300 lines: every rule is checked here, once, with the message a user reads, beside the
// compiled form (edges, chains, the responder's path) those checks are computed on.
import type { OperatorFunction } from 'rxjs';
import { ConfigError } from '../errors.js';
import { queueStepMark } from '../operators/internal/queueMarker.js';
import type { ServingEvent } from '../event.js';
import type { FlowShape } from '../monitoring/monitor.js';
import { isChoice, selectOf, type Choice, type ChoiceFn } from './choice.js';

/** What a flow step runs: any operator from events to events, or a choice. */
export type StepOperator = OperatorFunction<ServingEvent, ServingEvent>;

/** A step as the builder collected it. */
export interface StepDecl {
  readonly name: string;
  readonly op: StepOperator | Choice;
  /** The steps it comes after; `[]` for an entry. */
  readonly after: readonly string[];
  readonly maxIterations: number | undefined;
  responder: boolean;
  readonly cycleTo: string[];
  handler: HandlerDecl | undefined;
}

export interface HandlerDecl {
  readonly name: string;
  readonly op: StepOperator;
  readonly before: readonly string[];
}

/** Everything the builder collected. */
export interface FlowDecl {
  readonly name: string;
  readonly steps: readonly StepDecl[];
  readonly handler: HandlerDecl | undefined;
  /** The path errors name for a step (`flow.steps['judge']`, or a spec's `flow.steps[2]`). */
  readonly pathOf: (step: string) => string;
  /** The path of the flow's own error handler. */
  readonly handlerPath: string;
}

export const KIND_STEP = 0;
export const KIND_CHOICE = 1;
export const KIND_HANDLER = 2;

/** A compiled step. Indexes point into `FlowPlan.steps`. */
export interface PlanStep {
  readonly index: number;
  readonly name: string;
  readonly kind: typeof KIND_STEP | typeof KIND_CHOICE | typeof KIND_HANDLER;
  /** The operator of a step or a handler. */
  readonly op: StepOperator | undefined;
  /** The function of a choice. */
  readonly select: ChoiceFn | undefined;
  /** Forward edges (a handler: its `before` steps). Errored events follow these only. */
  readonly next: readonly number[];
  /** Forward and cycle edges: where an event that is not errored goes. */
  readonly all: readonly number[];
  /** A choice's next steps by name (forward and cycle). */
  readonly targets: ReadonlyMap<string, number> | undefined;
  readonly responder: boolean;
  /** Runs allowed per input event; Infinity when unbounded. */
  readonly maxIterations: number;
  /** The handler that takes this step's errored events (its own, else the flow's), or -1. */
  readonly handler: number;
  /** The responder is this step or downstream of it: a handler answering for it answers the caller. */
  readonly onResponderPath: boolean;
  /** A step's own handler: the step it serves; the flow's handler: -1. */
  readonly owner: number;
  /**
   * The step this one's operator is piped straight into (a chain: its only next step, which has
   * no other way in), or -1. A chain runs as one `pipe()` with a small check between operators,
   * instead of a hop through the flow per step.
   */
  readonly chainNext: number;
  /** True when another step's `chainNext` is this one: it has no intake of its own. */
  readonly chained: boolean;
}

export interface FlowPlan {
  readonly name: string;
  readonly steps: readonly PlanStep[];
  readonly entries: readonly number[];
  /** The responder's index, or -1 (no responder: inputs are answered at once). */
  readonly responder: number;
  /** Some step has maxIterations: events count their runs. */
  readonly bounded: boolean;
  /**
   * The steps are one chain from the one entry to the responder (no choice, no bound, no cycle;
   * handlers without `before`): every step is on the responder's path and each input has one way
   * through, so the flow runs it with counts instead of a record per input (linear.ts).
   */
  readonly linear: boolean;
  readonly shape: FlowShape;
}

const issue = (path: string, message: string) => new ConfigError([{ path, expected: '', message }]);
const quoted = (names: Iterable<string>) => [...names].map((n) => `'${n}'`).join(', ');

/** Checks the declarations and compiles them; throws ConfigError naming the step path. */
export function compile(decl: FlowDecl): FlowPlan {
  const { steps: decls, pathOf } = decl;
  if (decls.length === 0) {
    throw issue(`flow '${decl.name}'`, 'a flow needs at least one step: add one with flow.to(name, operator)');
  }
  const index = new Map<string, number>(decls.map((d, i) => [d.name, i]));
  const known = () => `steps: ${quoted(index.keys())}`;
  const n = decls.length;
  const forward: number[][] = decls.map(() => []);
  decls.forEach((d, i) => {
    for (const a of d.after) {
      const from = index.get(a);
      if (from === undefined) throw issue(`${pathOf(d.name)}.after`, `'${a}' is not a step of the flow (${known()})`);
      forward[from].push(i);
    }
  });
  const loop = findLoop(n, (i) => forward[i]);
  if (loop !== undefined) {
    const names = loop.map((i) => decls[i].name);
    throw issue(
      `${pathOf(names[1])}.after`,
      `the steps come after one another in a loop (${names.join(' → ')}): declare a loop with cycleTo and bound it with maxIterations`,
    );
  }
  const reach = (from: number): Set<number> => {
    const seen = new Set<number>();
    const stack = [from];
    while (stack.length > 0)
      for (const t of forward[stack.pop()!])
        if (!seen.has(t)) {
          seen.add(t);
          stack.push(t);
        }
    return seen;
  };
  const downstream = decls.map((_, i) => reach(i));
  const cycles: number[][] = decls.map(() => []);
  decls.forEach((d, i) => {
    for (const c of d.cycleTo) {
      const to = index.get(c);
      if (to === undefined) throw issue(`${pathOf(d.name)}.cycleTo`, `'${c}' is not a step of the flow (${known()})`);
      if (to !== i && !downstream[to].has(i)) {
        throw issue(
          `${pathOf(d.name)}.cycleTo`,
          `'${c}' is not upstream of '${d.name}': cycleTo loops back to an earlier step (use .to() or after for a later one)`,
        );
      }
      if (!cycles[i].includes(to)) cycles[i].push(to);
    }
  });

  // Handlers come after the steps: a step's own, then the flow's.
  type Handler = { decl: HandlerDecl; owner: number; before: number[]; path: string };
  const handlers: Handler[] = [];
  const names = new Set(index.keys());
  const claim = (name: string, path: string) => {
    if (names.has(name)) throw issue(path, `'${name}' is already a step of the flow; names are unique among steps and handlers`);
    names.add(name);
  };
  decls.forEach((d, i) => {
    if (d.handler === undefined) return;
    const path = `${pathOf(d.name)}.errorHandler`;
    claim(d.handler.name, `${path}.name`);
    const before = d.handler.before.map((b) => {
      const to = index.get(b);
      if (to === undefined) throw issue(`${path}.before`, `'${b}' is not a step of the flow (${known()})`);
      if (!downstream[i].has(to)) {
        throw issue(
          `${path}.before`,
          to === i || downstream[to].has(i)
            ? `'${b}' is upstream of '${d.name}': a handler's output goes on to steps after the failing one only (as in MLRun)`
            : `'${b}' is not downstream of '${d.name}': a handler's output goes on to steps after the failing one only`,
        );
      }
      return to;
    });
    handlers.push({ decl: d.handler, owner: i, before, path });
  });
  if (decl.handler !== undefined) {
    claim(decl.handler.name, `${decl.handlerPath}.name`);
    handlers.push({ decl: decl.handler, owner: -1, before: [], path: decl.handlerPath });
  }
  const flowHandler = decl.handler === undefined ? -1 : n + handlers.length - 1;
  const handlerOf = decls.map((_, i) => {
    const own = handlers.findIndex((h) => h.owner === i);
    return own >= 0 ? n + own : flowHandler;
  });

  // Every cycle needs a bound: with the bounded steps taken out, the routing graph (forward,
  // cycle, error and before edges) must have no loop left.
  const total = n + handlers.length;
  const edgesOf = (i: number): number[] => {
    if (i >= n) return handlers[i - n].before;
    return handlerOf[i] >= 0 ? [...forward[i], ...cycles[i], handlerOf[i]] : [...forward[i], ...cycles[i]];
  };
  const bounded = (i: number) => i < n && decls[i].maxIterations !== undefined;
  const unbounded = findLoop(total, (i) => (bounded(i) ? [] : edgesOf(i).filter((t) => !bounded(t))));
  if (unbounded !== undefined) {
    const nameOf = (i: number) => (i < n ? decls[i].name : handlers[i - n].decl.name);
    // Name the edge that closes the loop: a cycleTo, else a handler's before.
    let path = `${pathOf(nameOf(unbounded[0]))}.cycleTo`;
    for (let k = 0; k + 1 < unbounded.length; k++) {
      const [from, to] = [unbounded[k], unbounded[k + 1]];
      if (from < n && cycles[from].includes(to)) {
        path = `${pathOf(decls[from].name)}.cycleTo`;
        break;
      }
      if (from >= n) path = `${handlers[from - n].path}.before`;
    }
    throw issue(
      path,
      `the cycle ${unbounded.map(nameOf).join(' → ')} has no bound: give one of its steps maxIterations (how many times it may run for one event)`,
    );
  }

  const responders = decls.flatMap((d, i) => (d.responder ? [i] : []));
  const responder = responders[0] ?? -1;
  // The responder's path: the steps from which it can be reached (forward and cycle edges).
  const onPath = new Set<number>();
  if (responder >= 0) {
    const into: number[][] = decls.map(() => []);
    decls.forEach((_, i) => {
      for (const t of [...forward[i], ...cycles[i]]) into[t].push(i);
    });
    const stack = [responder];
    onPath.add(responder);
    while (stack.length > 0)
      for (const f of into[stack.pop()!])
        if (!onPath.has(f)) {
          onPath.add(f);
          stack.push(f);
        }
  }

  // A queue hop (queueStep, docs/design.md §19) ends an event's work in this process: nothing may come
  // after it, and the responder cannot wait behind it.
  decls.forEach((d, i) => {
    const mark = queueStepMark(d.op);
    if (mark === undefined) return;
    if (forward[i].length > 0 || cycles[i].length > 0) {
      const next = [...forward[i], ...cycles[i]].map((t) => decls[t].name);
      throw issue(
        pathOf(next[0]),
        `'${next[0]}' comes after queue step '${d.name}' (stream '${mark.stream}'): steps after a queue run in the consumer's process: start them with redisStream()`,
      );
    }
    if (i === responder) {
      throw issue(
        `${pathOf(d.name)}.respond`,
        `queue step '${d.name}' cannot respond: its events' answers come from the consumer's process; put it on a side branch`,
      );
    }
  });

  // Chains: a step whose only way on is one next step that has no other way in.
  const entries = decls.flatMap((d, i) => (d.after.length === 0 ? [i] : []));
  const ways = new Uint32Array(n);
  for (const i of entries) ways[i]++;
  decls.forEach((_, i) => {
    for (const t of forward[i]) ways[t]++;
    for (const t of cycles[i]) ways[t]++;
  });
  for (const h of handlers) for (const t of h.before) ways[t]++;
  const isOp = (i: number) => !isChoice(decls[i].op);
  const chainNext = decls.map((d, i) => {
    const t = forward[i][0];
    const single = forward[i].length === 1 && cycles[i].length === 0;
    return single && isOp(i) && isOp(t) && !d.responder && ways[t] === 1 && decls[t].maxIterations === undefined ? t : -1;
  });
  const chained = new Set(chainNext.filter((t) => t >= 0));

  // The plan and its steps are frozen; its lists of indexes (steps, entries, next, all) are
  // `readonly` by type only: the runners index them on every copy of every event, and V8 (Node 20)
  // loads from a frozen array through its generic keyed-load stub, not inline (~70 instructions a
  // load: ~10 loads per event in a fan-out of four branches).
  // Next steps on the responder's path go first: the answer leaves before side branches start.
  const responderFirst = (list: number[]) => [...list.filter((t) => onPath.has(t)), ...list.filter((t) => !onPath.has(t))];
  const steps: PlanStep[] = decls.map((d, i) => {
    const chooses = isChoice(d.op);
    const all = responderFirst([...forward[i], ...cycles[i].filter((c) => !forward[i].includes(c))]);
    return Object.freeze({
      index: i,
      name: d.name,
      kind: chooses ? KIND_CHOICE : KIND_STEP,
      op: chooses ? undefined : d.op,
      select: chooses ? selectOf(d.op) : undefined,
      next: responderFirst(forward[i]),
      all,
      targets: chooses ? new Map(all.map((t) => [decls[t].name, t])) : undefined,
      responder: d.responder,
      maxIterations: d.maxIterations ?? Infinity,
      handler: handlerOf[i],
      onResponderPath: onPath.has(i),
      owner: -1,
      chainNext: chainNext[i],
      chained: chained.has(i),
    } satisfies PlanStep);
  });
  handlers.forEach((h, k) => {
    steps.push(
      Object.freeze({
        index: n + k,
        name: h.decl.name,
        kind: KIND_HANDLER,
        op: h.decl.op,
        select: undefined,
        next: h.before,
        all: h.before,
        targets: undefined,
        responder: false,
        maxIterations: Infinity,
        handler: -1,
        onResponderPath: false,
        owner: h.owner,
        chainNext: -1,
        chained: false,
      } satisfies PlanStep),
    );
  });
  const anyBound = decls.some((d) => d.maxIterations !== undefined);
  // Linear: following the chain from the only entry passes every step and ends at the responder,
  // which goes nowhere after (a handler's `before` would have broken the chain: its target has two ways in).
  let tail = entries.length === 1 ? entries[0] : -1;
  let chainLength = 1;
  while (tail >= 0 && chainNext[tail] >= 0) {
    tail = chainNext[tail];
    chainLength++;
  }
  const linear =
    !anyBound && tail >= 0 && tail === responder && chainLength === n && forward[tail].length === 0 && cycles[tail].length === 0;
  return Object.freeze({
    name: decl.name,
    steps,
    entries,
    responder,
    bounded: anyBound,
    linear,
    shape: shapeOf(decl.name, steps, entries, forward, cycles, handlerOf, n),
  });
}

function shapeOf(
  flow: string,
  steps: readonly PlanStep[],
  entries: readonly number[],
  forward: number[][],
  cycles: number[][],
  handlerOf: number[],
  n: number,
): FlowShape {
  const edges: { from: string; to: string; kind: 'next' | 'cycle' | 'error' | 'before' }[] = [];
  for (const s of steps) {
    if (s.kind === KIND_HANDLER) {
      for (const t of s.next) edges.push({ from: s.name, to: steps[t].name, kind: 'before' });
      continue;
    }
    for (const t of forward[s.index]) edges.push({ from: s.name, to: steps[t].name, kind: 'next' });
    for (const t of cycles[s.index]) edges.push({ from: s.name, to: steps[t].name, kind: 'cycle' });
    // The flow's handler serves every step without its own: one edge from each would say nothing more.
    if (handlerOf[s.index] >= 0 && steps[handlerOf[s.index]].owner === s.index) {
      edges.push({ from: s.name, to: steps[handlerOf[s.index]].name, kind: 'error' });
    }
  }
  return {
    flow,
    steps: steps.map((s) => ({
      step: s.name,
      kind: s.kind === KIND_CHOICE ? 'choice' : s.kind === KIND_HANDLER ? 'errorHandler' : 'step',
      ...(s.index < n && entries.includes(s.index) ? { entry: true as const } : {}),
      ...(s.responder ? { responder: true as const } : {}),
      ...(s.maxIterations !== Infinity ? { maxIterations: s.maxIterations } : {}),
    })),
    edges,
  };
}

/** A loop in a directed graph of `n` nodes, as its nodes with the first repeated at the end; or undefined. */
function findLoop(n: number, edges: (i: number) => readonly number[]): number[] | undefined {
  const state = new Uint8Array(n); // 0 new, 1 on the stack, 2 done
  const stack: number[] = [];
  const visit = (i: number): number[] | undefined => {
    state[i] = 1;
    stack.push(i);
    for (const t of edges(i)) {
      if (state[t] === 1) return [...stack.slice(stack.indexOf(t)), t];
      if (state[t] === 0) {
        const found = visit(t);
        if (found) return found;
      }
    }
    stack.pop();
    state[i] = 2;
    return undefined;
  };
  for (let i = 0; i < n; i++) {
    if (state[i] === 0) {
      const found = visit(i);
      if (found) return found;
    }
  }
  return undefined;
}
