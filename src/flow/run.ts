// The compiled flow as one operator (DESIGN §17): per subscription, one Subject and one
// subscription per step, a trampoline that moves copies of events between steps, and the
// accounting (per input event: its copies inside the flow) that answers each input exactly once.
// Over 300 lines because the accounting, the routing and the error rules share one state and
// must change together; the plan (what goes where) is compiled apart, in plan.ts.
import { Observable, Subject, type Subscription } from 'rxjs';
import { CycleLimitError, QueueFullError, RouteNotFoundError, describeError, toError } from '../errors.js';
import { isServingEvent, withError, type ServingEvent } from '../event.js';
import { describeValue } from '../config.js';
import { notAnEvent } from '../operators/internal/dispatch.js';
import { KIND_CHOICE, KIND_HANDLER, type FlowPlan, type PlanStep } from './plan.js';
import type { FlowRuntime, FlowSubscription } from './runtime.js';

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
  /** Steps where copies ended without reaching the responder (for RouteNotFoundError). */
  ended: string[] | undefined = undefined;
  /** Runs per bounded step (allocated on the first). */
  runs: Uint32Array | undefined = undefined;
  /** For the flow's shared handler: the failing step of each copy inside it, oldest first. */
  origins: number[] | undefined = undefined;
  constructor(readonly event: ServingEvent) {}
}

/** The operator of a compiled flow; all state is made per subscription. */
export function runFlow(plan: FlowPlan, runtime: FlowRuntime, maxInFlight: number): (source: Observable<ServingEvent>) => Observable<ServingEvent> {
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
      const intakes: (Subject<ServingEvent> | undefined)[] = new Array(stepCount);
      const subscriptions: Subscription[] = [];
      // The trampoline: [step, event, input] triples, so a long cycle of synchronous steps does
      // not recurse once per hop.
      const queue: unknown[] = [];
      let head = 0;
      let draining = false;
      let closed = false;
      let sourceDone = false;
      let warnedStray = false;

      const push = (step: number, event: ServingEvent, input: Input): void => {
        input.copies++;
        queue.push(step, event, input);
      };

      const drain = (): void => {
        if (draining) return;
        draining = true;
        try {
          while (head < queue.length && !closed) {
            const step = steps[queue[head] as number];
            const event = queue[head + 1] as ServingEvent;
            const input = queue[head + 2] as Input;
            queue[head + 1] = queue[head + 2] = undefined;
            head += 3;
            if (step.kind === KIND_CHOICE) runChoice(step, event, input);
            else feed(step, event, input);
          }
        } finally {
          queue.length = 0;
          head = 0;
          draining = false;
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

      /** A copy left the flow (at `endedAt` when its branch ended short of the responder). */
      const release = (input: Input, endedAt: string | undefined): void => {
        if (endedAt !== undefined && !input.answered) {
          const ended = (input.ended ??= []);
          if (!ended.includes(endedAt)) ended.push(endedAt);
        }
        if (--input.copies > 0) return;
        remove(input);
        if (!input.answered) {
          input.answered = true;
          const where = input.ended?.length ? `it ended at ${input.ended.map((s) => `'${s}'`).join(', ')}` : 'it ended nowhere';
          const error = new RouteNotFoundError(undefined, input.ended ?? [], flowName, {
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

      const remove = (input: Input): void => {
        live--;
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
        const runs = (input.runs ??= new Uint32Array(stepCount));
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
        intakes[step.index]!.next(event);
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
            if (typeof name !== 'string' || !targets.has(name)) problem = `no next step ${typeof name === 'string' ? `'${name}'` : String(name)}`;
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
        for (let i = 0; i < chosen.length; i++) push(targets.get(chosen[i])!, event, input);
        release(input, chosen.length === 0 && !step.responder ? step.name : undefined);
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
            push(step.handler, toHandler(event, step.name), input);
            release(input, undefined);
            return;
          }
        }
        if (step.responder) respond(input, event);
        const targets = event.error === undefined ? step.all : step.next;
        for (let i = 0; i < targets.length; i++) push(targets[i], event, input);
        release(input, targets.length === 0 && !step.responder ? step.name : undefined);
      };

      /** A handler's output: on to its `before` steps, else the response (failing step on the responder's path) or the end. */
      const leaveHandler = (handler: PlanStep, event: ServingEvent, input: Input): void => {
        const failed = handler.owner >= 0 ? handler.owner : (input.origins?.shift() ?? -1);
        if (handler.next.length > 0) {
          for (const t of handler.next) push(t, event, input);
          release(input, undefined);
        } else if (failed >= 0 && steps[failed].onResponderPath) {
          respond(input, event);
          release(input, undefined);
        } else {
          release(input, handler.name);
        }
      };

      /** An output of a step's operator. */
      const onOutput = (step: PlanStep, event: ServingEvent): void => {
        if (closed) return;
        if (!isServingEvent(event)) {
          fail(new TypeError(`flow '${flowName}': step '${step.name}' emitted ${describeValue(event)}, not a ServingEvent; a flow step must emit events`));
          return;
        }
        let input = inputs.get(event.id);
        while (input !== undefined && input.inOps === 0 && input.sibling !== undefined) input = input.sibling;
        if (input === undefined) {
          stray(step, event);
          return;
        }
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
        process.emitWarning(
          `flow '${flowName}': step '${step.name}' emitted an event (id '${event.id}') that no input inside the flow has; it was dropped. ` +
            'A flow step must keep each event\'s id and emit it once (an rxserve step does).',
          { code: 'RXSERVE_FLOW_STRAY' },
        );
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
        for (const s of subscriptions) s.unsubscribe();
        inputs.clear();
        live = 0;
        inside.fill(0);
        queue.length = 0;
        runtime.subscriptions.delete(state);
        runtime.settled();
      });
      runtime.subscriptions.add(state);

      // Each step's operator is subscribed once per flow subscription (a modelRunner's lanes and
      // pools are per subscription), fed by its own Subject.
      for (const step of steps) {
        if (step.kind === KIND_CHOICE || closed) continue;
        const intake = new Subject<ServingEvent>();
        intakes[step.index] = intake;
        subscriptions.push(
          intake.pipe(step.op!).subscribe({
            next: (event) => onOutput(step, event),
            error: (error: unknown) => fail(error),
            complete: () =>
              fail(new TypeError(`flow '${flowName}': step '${step.name}' completed while the flow was running; a flow step must take events until the flow ends`)),
          }),
        );
      }

      let sourceSubscription: Subscription | undefined;
      if (closed) return;
      sourceSubscription = source.subscribe({
        next(event) {
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
          const first = inputs.get(event.id);
          if (first === undefined) inputs.set(event.id, input);
          else {
            let last = first;
            while (last.sibling !== undefined) last = last.sibling;
            last.sibling = input;
          }
          // Without a responder the input is the answer, at once; the flow's work goes on.
          if (!hasResponder) {
            input.answered = true;
            emit(event);
            if (closed) return;
          }
          for (let i = 0; i < entries.length; i++) push(entries[i], event, input);
          drain();
        },
        error: (error: unknown) => fail(error),
        complete() {
          sourceDone = true;
          if (live === 0 && !closed) {
            closed = true;
            subscriber.complete();
          }
        },
      });
    });
}

/** A handler's input: the error cleared (a plain step can answer) and described in `metadata.error`. */
function toHandler(event: ServingEvent, step: string): ServingEvent {
  const { error, origin: _origin, ...rest } = event;
  return Object.freeze({ ...rest, metadata: Object.freeze({ ...event.metadata, error: { step, error: describeError(error) } }) });
}
