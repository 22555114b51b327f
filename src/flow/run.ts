// The compiled flow as one operator (docs/design.md §17): per subscription, one intake and one
// subscription per step (or per chain of steps piped into one another), direct calls and a queue
// that move copies of events between steps, and the accounting (per input event: its copies
// inside the flow) that answers each input exactly once.
// Over 300 lines because the accounting, the routing and the error rules share one state and
// must change together; the plan (what goes where) is compiled apart, in plan.ts.
import { Observable, type Subscription } from 'rxjs';
import { CycleLimitError, QueueFullError, RouteNotFoundError, toError } from '../errors.js';
import { isServingEvent, withError, type ServingEvent } from '../event.js';
import { notAnEvent } from '../operators/internal/dispatch.js';
import { Take, type Intake } from '../operators/internal/lean.js';
import { KIND_CHOICE, KIND_HANDLER, type FlowPlan, type PlanStep } from './plan.js';
import type { FlowRuntime, FlowSubscription } from './runtime.js';
import { notAStepEvent, toHandler, unwire, warnStray, wireSteps } from './wiring.js';

/**
 * One input event inside the flow. Steps emit new event objects with the input's id, so copies
 * are found by id; inputs that share an id while both inside (a client reusing a request id while
 * the first request's side branches still run) are chained, and an output goes to the oldest one
 * with a copy inside a step.
 */
class Input {
  /** Copies inside the flow: queued between steps or inside a step's operator. */
  copies = 0;
  /** Of those, copies inside a step's operator (an output with none is an extra copy). */
  inOps = 0;
  answered = false;
  /** Another input with the same id, inside at the same time. */
  sibling: Input | undefined = undefined;
  /** Steps where copies ended short of the responder (for RouteNotFoundError): a bit per step index below 31. */
  endedMask = 0;
  /** The same for step indexes from 31 on. */
  endedMore: number[] | undefined = undefined;
  /** Runs per bounded step (allocated on the first). */
  runs: number[] | undefined = undefined;
  /** For the flow's shared handler: the failing step of each copy inside it, oldest first. */
  origins: number[] | undefined = undefined;
  /** In the map by id: an input still inside once its synchronous part is over. */
  registered = false;
  constructor(readonly event: ServingEvent) {}
}

/** The operator of a compiled flow; all state is made per subscription. */
export function runFlow(
  plan: FlowPlan,
  runtime: FlowRuntime,
  maxInFlight: number,
): (source: Observable<ServingEvent>) => Observable<ServingEvent> {
  const { steps, entries, responder, bounded, name: flowName } = plan;
  const stepCount = steps.length;
  const hasResponder = responder >= 0;

  return (source) =>
    new Observable<ServingEvent>((subscriber) => {
      const inputs = new Map<string, Input>();
      // Inputs inside (the map holds one per id; inputs sharing an id are chained).
      let live = 0;
      const inside = new Float64Array(stepCount);
      const state: FlowSubscription = {
        get live() {
          return live;
        },
        inside,
      };
      // Errored events fed into a step: if one comes out as it went in, it passed through (§1.2)
      // and is not that step's own error. Only errored events are kept, weakly.
      const passing = new WeakSet<ServingEvent>();
      const intakes: (Intake<ServingEvent> | undefined)[] = new Array<Intake<ServingEvent> | undefined>(stepCount);
      // Steps whose operator is taking an event now: a copy for one of them waits in the queue
      // rather than re-entering its `next`.
      const busy = new Uint8Array(stepCount);
      const subscriptions: Subscription[] = [];
      // Copies move between steps by direct calls up to MAX_DEPTH, then through this queue of
      // [step, event, input] triples, so a long cycle of synchronous steps does not grow the stack.
      const queue: unknown[] = [];
      let head = 0;
      let depth = 0;
      let closed = false;
      let sourceDone = false;
      let warnedStray = false;
      // The input of the copy fed last: a synchronous step's output belongs to it, no lookup needed.
      let lastInput: Input | undefined;
      // The input whose synchronous part runs now (not yet in the map).
      let current: Input | undefined;

      /** One more copy of `input`, into step `index`. */
      const hop = (index: number, event: ServingEvent, input: Input): void => {
        input.copies++;
        if (depth >= MAX_DEPTH || busy[index] === 1) {
          queue.push(index, event, input);
          return;
        }
        depth++;
        try {
          run(steps[index], event, input);
        } finally {
          depth--;
        }
      };

      const run = (step: PlanStep, event: ServingEvent, input: Input): void => {
        if (closed) return;
        if (step.kind === KIND_CHOICE) runChoice(step, event, input);
        else feed(step, event, input);
      };

      /** Runs the queued copies; only from the outermost call (depth 0). */
      const drain = (): void => {
        if (depth > 0 || head >= queue.length) return;
        depth++;
        try {
          while (head < queue.length && !closed) {
            const index = queue[head] as number;
            const event = queue[head + 1] as ServingEvent;
            const input = queue[head + 2] as Input;
            queue[head + 1] = queue[head + 2] = undefined;
            head += 3;
            run(steps[index], event, input);
          }
        } finally {
          depth--;
          queue.length = 0;
          head = 0;
        }
      };

      const emit = (event: ServingEvent): void => {
        if (!closed) subscriber.next(event);
      };

      const respond = (input: Input, event: ServingEvent): void => {
        if (input.answered) return;
        input.answered = true;
        emit(event);
      };

      /**
       * A copy left the flow (at `endedAt` when its branch ended short of the responder). Kept
       * small so that V8 inlines it where copies leave (once per copy); the rest is in `noteEnd`
       * and `gone`.
       */
      const release = (input: Input, endedAt: number): void => {
        if (endedAt >= 0 && !input.answered) noteEnd(input, endedAt);
        if (--input.copies <= 0) gone(input);
      };

      /** Notes where a copy of an unanswered input ended (for RouteNotFoundError). */
      const noteEnd = (input: Input, endedAt: number): void => {
        if (endedAt < 31) input.endedMask |= 1 << endedAt;
        else if (!(input.endedMore ??= []).includes(endedAt)) input.endedMore.push(endedAt);
      };

      /** The last copy of `input` left: out of the accounting, answered with RouteNotFoundError if it was not. */
      const gone = (input: Input): void => {
        remove(input);
        if (!input.answered) {
          input.answered = true;
          const ended = steps
            .filter((step) => (step.index < 31 ? (input.endedMask & (1 << step.index)) !== 0 : input.endedMore?.includes(step.index)))
            .map((step) => step.name);
          const where = ended.length > 0 ? `it ended at ${ended.map((s) => `'${s}'`).join(', ')}` : 'it ended nowhere';
          const error = new RouteNotFoundError(undefined, ended, flowName, {
            message: `flow '${flowName}': event '${input.event.id}' never reached the responder '${steps[responder].name}'; ${where}`,
          });
          emit(withError(input.event, error, flowName));
        }
        if (live === 0) {
          runtime.settled();
          if (sourceDone && !closed) {
            closed = true;
            subscriber.complete();
          }
        }
      };

      /**
       * Puts an input in the map by id. Only inputs still inside once their synchronous part is
       * over need it (a step will answer later): a flow of synchronous steps makes no map entry.
       */
      const register = (input: Input): void => {
        input.registered = true;
        const first = inputs.get(input.event.id);
        if (first === undefined) inputs.set(input.event.id, input);
        else {
          let last = first;
          while (last.sibling !== undefined) last = last.sibling;
          last.sibling = input;
        }
      };

      const remove = (input: Input): void => {
        live--;
        if (!input.registered) return;
        const id = input.event.id;
        let first = inputs.get(id);
        if (first === input) {
          if (input.sibling === undefined) inputs.delete(id);
          else inputs.set(id, input.sibling);
          return;
        }
        while (first !== undefined && first.sibling !== input) first = first.sibling;
        if (first !== undefined) first.sibling = input.sibling;
      };

      /** True when `step` may run once more for `input` (and counts the run); false past its bound. */
      const mayRun = (step: PlanStep, input: Input): boolean => {
        const runs = (input.runs ??= new Array<number>(stepCount).fill(0));
        if (runs[step.index] >= step.maxIterations) return false;
        runs[step.index]++;
        return true;
      };

      const cycleLimit = (step: PlanStep, event: ServingEvent): ServingEvent =>
        withError(event, new CycleLimitError(step.name, step.maxIterations, event.id), step.name);

      /** Into a step's operator (or, past its bound, out of it errored). */
      const feed = (step: PlanStep, event: ServingEvent, input: Input): void => {
        if (event.error !== undefined) passing.add(event);
        else if (bounded && step.maxIterations !== Infinity && !mayRun(step, input)) {
          leave(step, cycleLimit(step, event), input, true);
          return;
        }
        input.inOps++;
        inside[step.index]++;
        lastInput = input;
        busy[step.index] = 1;
        try {
          intakes[step.index]!.next(event);
        } finally {
          busy[step.index] = 0;
        }
      };

      const runChoice = (step: PlanStep, event: ServingEvent, input: Input): void => {
        if (event.error !== undefined) return leave(step, event, input, false);
        if (bounded && step.maxIterations !== Infinity && !mayRun(step, input)) return leave(step, cycleLimit(step, event), input, true);
        let picked: unknown;
        try {
          picked = step.select!(event);
        } catch (thrown) {
          return leave(step, withError(event, toError(thrown), step.name), input, true);
        }
        if (picked === null || picked === undefined) return leave(step, event, input, false);
        const names = typeof picked === 'string' ? [picked] : picked;
        const targets = step.targets!;
        let problem: string | undefined;
        if (!Array.isArray(names)) problem = `select returned ${typeof picked}, not a step name or a list of them`;
        else {
          for (let i = 0; i < names.length && problem === undefined; i++) {
            const name: unknown = names[i];
            if (typeof name !== 'string' || !targets.has(name))
              problem = `no next step ${typeof name === 'string' ? `'${name}'` : String(name)}`;
            else if (names.indexOf(name) !== i) problem = `next step '${name}' named twice`;
          }
        }
        if (problem !== undefined) {
          const error = new RouteNotFoundError(undefined, [...targets.keys()], step.name, {
            message: `choice '${step.name}': ${problem} for event '${event.id}'; its next steps: ${[...targets.keys()].map((t) => `'${t}'`).join(', ') || '(none)'}`,
          });
          return leave(step, withError(event, error, step.name), input, true);
        }
        const chosen = names as readonly string[];
        if (step.responder) respond(input, event);
        for (let i = 0; i < chosen.length; i++) hop(targets.get(chosen[i])!, event, input);
        release(input, chosen.length === 0 && !step.responder ? step.index : -1);
      };

      /**
       * A copy leaves `step` as `event`: its own error goes to its handler; otherwise the responder
       * answers with it, and it goes on along the step's edges (an errored one forward only).
       */
      const leave = (step: PlanStep, event: ServingEvent, input: Input, own: boolean): void => {
        if (event.error !== undefined && own) {
          runtime.errors[step.index]++;
          if (step.handler >= 0) {
            const handler = steps[step.handler];
            if (handler.owner < 0) (input.origins ??= []).push(step.index);
            hop(step.handler, toHandler(event, step.name), input);
            release(input, -1);
            return;
          }
        }
        if (step.responder) respond(input, event);
        const targets = event.error === undefined ? step.all : step.next;
        for (let i = 0; i < targets.length; i++) hop(targets[i], event, input);
        release(input, targets.length === 0 && !step.responder ? step.index : -1);
      };

      /** A handler's output: on to its `before` steps, else the response (failing step on the responder's path) or the end. */
      const leaveHandler = (handler: PlanStep, event: ServingEvent, input: Input): void => {
        const failed = handler.owner >= 0 ? handler.owner : (input.origins?.shift() ?? -1);
        if (handler.next.length > 0) {
          for (const t of handler.next) hop(t, event, input);
          release(input, -1);
        } else if (failed >= 0 && steps[failed].onResponderPath) {
          respond(input, event);
          release(input, -1);
        } else {
          release(input, handler.index);
        }
      };

      /**
       * The input a step's output belongs to (the oldest with a copy inside a step, for a shared
       * id). The input of the copy fed last, checked first inline (a synchronous step's output);
       * the rest in `lookUp`, apart so that this stays small enough for V8 to inline.
       */
      const find = (step: PlanStep, event: ServingEvent): Input | undefined => {
        const input = lastInput;
        return input !== undefined && input.inOps > 0 && input.event.id === event?.id ? input : lookUp(step, event);
      };

      const lookUp = (step: PlanStep, event: ServingEvent): Input | undefined => {
        let input = current;
        if (input !== undefined && input.inOps > 0 && input.event.id === event?.id) return input;
        if (!isServingEvent(event)) {
          fail(notAStepEvent(flowName, step, event));
          return undefined;
        }
        input = inputs.get(event.id);
        while (input !== undefined && input.inOps === 0 && input.sibling !== undefined) input = input.sibling;
        if (input === undefined) stray(step, event);
        return input;
      };

      /**
       * Between two operators of a chain (`from` piped into `to`), for an errored event (a `Link`
       * counts the others): counts the copy across, and takes `from`'s own errors out to its
       * handler. True lets the event on into `to`.
       */
      const cross = (from: PlanStep, to: PlanStep, event: ServingEvent): boolean => {
        if (closed) return false;
        if (event.error === undefined || passing.has(event)) {
          inside[from.index]--;
          inside[to.index]++;
          return true;
        }
        runtime.errors[from.index]++;
        if (from.handler < 0) {
          // Not handled: it passes the rest of the chain untouched, as nobody's own error.
          passing.add(event);
          inside[from.index]--;
          inside[to.index]++;
          return true;
        }
        const input = find(from, event);
        if (input === undefined) return false;
        inside[from.index]--;
        if (input.inOps > 0) input.inOps--;
        else input.copies++;
        if (steps[from.handler].owner < 0) (input.origins ??= []).push(from.index);
        hop(from.handler, toHandler(event, from.name), input);
        release(input, -1);
        drain();
        return false;
      };

      /** An output of a step's operator (of the last operator of a chain). */
      const onOutput = (step: PlanStep, event: ServingEvent): void => {
        if (closed) return;
        const input = find(step, event);
        if (input === undefined) return;
        if (inside[step.index] > 0) inside[step.index]--;
        // An output beyond the copies that went in (an operator emitting several per event) is one more copy.
        if (input.inOps > 0) input.inOps--;
        else input.copies++;
        if (step.kind === KIND_HANDLER) leaveHandler(step, event, input);
        else leave(step, event, input, event.error !== undefined && !passing.has(event));
        drain();
      };

      const stray = (step: PlanStep, event: ServingEvent): void => {
        if (warnedStray) return;
        warnedStray = true;
        warnStray(flowName, step, event);
      };

      const fail = (error: unknown): void => {
        if (closed) return;
        closed = true;
        subscriber.error(error);
      };

      // Registered before subscribing: a downstream that unsubscribes while a synchronous source
      // is still emitting stops every step at once (their work is aborted).
      subscriber.add(() => {
        closed = true;
        sourceSubscription?.unsubscribe();
        inputs.clear();
        live = 0;
        unwire(subscriptions, inside, queue, runtime, state);
      });
      runtime.subscriptions.add(state);

      wireSteps(plan, { inside, intakes, cross, output: onOutput, fail, closed: () => closed }, subscriptions);

      let sourceSubscription: Subscription | undefined;
      if (closed) return;
      const onInput = (event: ServingEvent): void => {
        if (closed) return;
        if (!isServingEvent(event)) {
          fail(notAnEvent(event, 'flow', flowName));
          return;
        }
        // An errored event passes a flow untouched, as it passes any step (§1.2).
        if (event.error !== undefined) {
          emit(event);
          return;
        }
        if (live >= maxInFlight) {
          emit(withError(event, new QueueFullError(flowName, maxInFlight, 0), flowName));
          return;
        }
        const input = new Input(event);
        live++;
        // An input arriving while another is in its synchronous part (a subscriber pushing from
        // inside an answer): the other one's outputs must be found by id from now on.
        const outer = current;
        if (outer !== undefined && !outer.registered && outer.copies > 0) register(outer);
        current = input;
        try {
          // Without a responder the input is the answer, at once; the flow's work goes on.
          if (!hasResponder) {
            input.answered = true;
            emit(event);
            if (closed) return;
          }
          for (let i = 0; i < entries.length; i++) hop(entries[i], event, input);
          drain();
        } finally {
          current = outer;
        }
        if (input.copies > 0 && !input.registered && !closed) register(input);
      };
      sourceSubscription = source.subscribe(
        new Take<ServingEvent>(onInput, {
          error: (error: unknown) => fail(error),
          complete() {
            sourceDone = true;
            if (live === 0 && !closed) {
              closed = true;
              subscriber.complete();
            }
          },
        }),
      );
    });
}

/** How many hops a copy makes by direct calls before the rest go through the queue. */
const MAX_DEPTH = 48;
