// The operator of a linear flow (plan.linear: its steps one chain from the entry to the responder,
// no choice, no bound, handlers without `before`; docs/design.md §17). Every step is on the
// responder's path and an input has one way through, so what run.ts keeps per input (its copies,
// where they ended, its runs, its failing steps) says nothing more here: each input is answered by
// the first output with its id, from the chain's last step or from a handler. What is kept is a count
// of inputs inside (for close() and completion), a count per id of those still inside once their
// synchronous part is over (for outputs that come later), and the per-step counts of run.ts.
// Per input, nothing is allocated while it runs synchronously: the flow's own cost per event is
// then its counts and the Links of the chain, as close to `pipe()` as the bookkeeping allows.
import { Observable, type Subscription } from 'rxjs';
import { QueueFullError } from '../errors.js';
import { isServingEvent, withError, type ServingEvent } from '../event.js';
import { notAnEvent } from '../operators/internal/dispatch.js';
import { Take, type Intake } from '../operators/internal/lean.js';
import { KIND_STEP, type FlowPlan, type PlanStep } from './plan.js';
import type { FlowRuntime, FlowSubscription } from './runtime.js';
import { notAStepEvent, toHandler, unwire, warnStray, wireSteps } from './wiring.js';

/** The operator of a compiled linear flow; all state is made per subscription. */
export function runLinear(
  plan: FlowPlan,
  runtime: FlowRuntime,
  maxInFlight: number,
): (source: Observable<ServingEvent>) => Observable<ServingEvent> {
  const { steps, name: flowName } = plan;
  const entry = plan.entries[0];

  return (source) =>
    new Observable<ServingEvent>((subscriber) => {
      // Inputs inside: not answered yet.
      let live = 0;
      const inside = new Float64Array(steps.length);
      const state: FlowSubscription = {
        get live() {
          return live;
        },
        inside,
      };
      // Errored events a step let through (not its own error), as in run.ts; only errored ones, weakly.
      const passing = new WeakSet<ServingEvent>();
      const intakes: (Intake<ServingEvent> | undefined)[] = new Array<Intake<ServingEvent> | undefined>(steps.length);
      // The input in its synchronous part (fed into the entry now), and whether it is still unanswered.
      let current: ServingEvent | undefined;
      let currentInside = false;
      // Inputs still inside once their synchronous part was over, by id: how many share it.
      const waiting = new Map<string, number>();
      // Steps whose operator is taking an event now, and how many such calls are open: a copy for a
      // busy step (an input pushed from inside an answer, a second error for a busy handler) waits in
      // `queue` as [step, event] pairs, run once no step is busy, as run.ts does.
      const busy = new Uint8Array(steps.length);
      let depth = 0;
      let draining = false;
      const queue: unknown[] = [];
      let closed = false;
      let sourceDone = false;
      let warnedStray = false;
      const subscriptions: Subscription[] = [];

      const feed = (index: number, event: ServingEvent): void => {
        if (busy[index] === 1) {
          queue.push(index, event);
          return;
        }
        inside[index]++;
        busy[index] = 1;
        depth++;
        try {
          intakes[index]!.next(event);
        } finally {
          busy[index] = 0;
          depth--;
        }
      };

      /** An input into the entry (not busy): while it runs synchronously, it is `current`. (`feed`, inlined: once per input.) */
      const enter = (event: ServingEvent): void => {
        current = event;
        currentInside = true;
        inside[entry]++;
        busy[entry] = 1;
        depth++;
        try {
          entryIntake!.next(event);
        } finally {
          busy[entry] = 0;
          depth--;
          // Not answered yet: an output will come later (or never: held, as run.ts holds it).
          if (currentInside && !closed) waiting.set(event.id, (waiting.get(event.id) ?? 0) + 1);
          current = undefined;
          currentInside = false;
        }
      };

      /** Runs the waiting copies; only when no step is taking an event, from the outermost call. */
      const drain = (): void => {
        if (depth > 0 || draining || queue.length === 0) return;
        draining = true;
        try {
          for (let at = 0; at < queue.length && !closed; at += 2) {
            const index = queue[at] as number;
            const event = queue[at + 1] as ServingEvent;
            queue[at + 1] = undefined;
            if (index === entry) enter(event);
            else feed(index, event);
          }
        } finally {
          draining = false;
          queue.length = 0;
        }
      };

      /**
       * True when an input with the output's id is inside (`take`: and answers it, the one running
       * synchronously first); a stray output is dropped with a warning, a non-event fails the flow.
       */
      const match = (step: PlanStep, event: ServingEvent, take: boolean): boolean => {
        if (currentInside && event?.id === current!.id) {
          if (take) currentInside = false;
          return true;
        }
        if (!isServingEvent(event)) {
          fail(notAStepEvent(flowName, step, event));
          return false;
        }
        const count = waiting.get(event.id);
        if (count === undefined) {
          if (!warnedStray) {
            warnedStray = true;
            warnStray(flowName, step, event);
          }
          return false;
        }
        if (take) {
          if (count === 1) waiting.delete(event.id);
          else waiting.set(event.id, count - 1);
        }
        return true;
      };

      /** Answers an input (matched), then counts it out. */
      const answer = (event: ServingEvent): void => {
        if (!closed) subscriber.next(event);
        if (--live > 0) return;
        runtime.settled();
        if (sourceDone && !closed) {
          closed = true;
          subscriber.complete();
        }
      };

      /** A step's own error to its handler (the input stays inside until the handler answers). */
      const toItsHandler = (step: PlanStep, event: ServingEvent): void => {
        feed(step.handler, toHandler(event, step.name));
        drain();
      };

      /** An errored event between two chained steps (run.ts's `cross`, for one way through). */
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
        if (!match(from, event, false)) return false;
        inside[from.index]--;
        toItsHandler(from, event);
        return false;
      };

      /** An output of the chain's last step (the responder) or of a handler: the answer. */
      const onOutput = (step: PlanStep, event: ServingEvent): void => {
        if (closed) return;
        const own = step.kind === KIND_STEP && event?.error !== undefined && !passing.has(event);
        if (own && step.handler >= 0) {
          if (!match(step, event, false)) return;
          runtime.errors[step.index]++;
          if (inside[step.index] > 0) inside[step.index]--;
          toItsHandler(step, event);
          return;
        }
        if (!match(step, event, true)) return;
        if (own) runtime.errors[step.index]++;
        if (inside[step.index] > 0) inside[step.index]--;
        answer(event);
        if (queue.length > 0) drain();
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
        waiting.clear();
        live = 0;
        unwire(subscriptions, inside, queue, runtime, state);
      });
      runtime.subscriptions.add(state);
      wireSteps(plan, { inside, intakes, cross, output: onOutput, fail, closed: () => closed }, subscriptions);
      const entryIntake = intakes[entry];

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
          if (!closed) subscriber.next(event);
          return;
        }
        if (live >= maxInFlight) {
          subscriber.next(withError(event, new QueueFullError(flowName, maxInFlight, 0), flowName));
          return;
        }
        live++;
        if (busy[entry] === 1) queue.push(entry, event);
        else enter(event);
        if (queue.length > 0) drain();
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
