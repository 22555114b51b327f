// What both runners of a compiled flow (run.ts, the general one; linear.ts, for one chain of steps)
// build the same way, per subscription: each step's operator subscribed once, fed by an intake of
// its own or piped into the next step's operator through a `Link`; and the messages of a step that
// breaks the rules (an output that is not an event, or that no input inside has).
import { Observable, Subscriber, type Subscription } from 'rxjs';
import { describeError } from '../errors.js';
import type { ServingEvent } from '../event.js';
import { describeValue } from '../decode.js';
import { Intake, Take } from '../operators/internal/lean.js';
import { KIND_CHOICE, type FlowPlan, type PlanStep } from './plan.js';
import type { FlowRuntime, FlowSubscription } from './runtime.js';

/** What the wiring hands the events of a flow's steps to. */
export interface StepWiring {
  /** Copies inside each step now (by step index); a `Link` moves a copy's count along a chain. */
  readonly inside: Float64Array;
  /** Filled in: the intake of each step that has one (not a choice, not a chained step). */
  readonly intakes: (Intake<ServingEvent> | undefined)[];
  /** An errored event between two chained operators; true lets it on into `to`. */
  readonly cross: (from: PlanStep, to: PlanStep, event: ServingEvent) => boolean;
  /** An output of a step's operator (the last operator of a chain). */
  readonly output: (step: PlanStep, event: ServingEvent) => void;
  readonly fail: (error: unknown) => void;
  readonly closed: () => boolean;
}

/**
 * Each step's operator is subscribed once per flow subscription (a modelRunner's lanes and pools
 * are per subscription), fed by an intake of its own — or, in a chain, piped straight into the next
 * step's operator, a `Link` between them doing the flow's bookkeeping. Each subscription goes
 * into `subscriptions` as it is made (a teardown during the wiring finds the ones made so far).
 */
export function wireSteps(plan: FlowPlan, wiring: StepWiring, subscriptions: Subscription[]): void {
  const { steps, name: flowName } = plan;
  // Taken out of `wiring` once: the closures below run on every event.
  const { inside, intakes, cross, output, fail, closed } = wiring;
  for (const head of steps) {
    if (head.kind === KIND_CHOICE || head.chained || closed()) continue;
    const intake = new Intake<ServingEvent>();
    intakes[head.index] = intake;
    let events = head.op!(intake.events);
    let step = head;
    while (step.chainNext >= 0) {
      const from = step;
      const to = steps[step.chainNext];
      const upstream = events;
      const errored = (event: ServingEvent): boolean => cross(from, to, event);
      events = to.op!(
        new Observable<ServingEvent>((downstream) => upstream.subscribe(new Link(downstream, inside, from.index, to.index, errored))),
      );
      step = to;
    }
    const tail = step;
    const what = tail === head ? `step '${tail.name}'` : `a step of the chain '${head.name}' → ... → '${tail.name}'`;
    subscriptions.push(
      events.subscribe(
        new Take<ServingEvent>((event) => output(tail, event), {
          error: (error: unknown) => fail(error),
          complete: () =>
            fail(
              new TypeError(
                `flow '${flowName}': ${what} completed while the flow was running; a flow step must take events until the flow ends`,
              ),
            ),
        }),
      ),
    );
  }
}

/**
 * Between two operators of a chain: counts each copy across (out of step `from`, into step `to`)
 * and passes it on; an errored event goes to `errored` (the flow's `cross`). A class of its own, as
 * small as it can be: it sits between every two chained steps on every event, and V8 inlines the
 * next step's intake into it only while the whole stays small.
 */
class Link extends Subscriber<ServingEvent> {
  constructor(
    downstream: Subscriber<ServingEvent>,
    private readonly inside: Float64Array,
    private readonly from: number,
    private readonly to: number,
    private readonly errored: (event: ServingEvent) => boolean,
  ) {
    super(downstream);
  }

  override next(event: ServingEvent): void {
    if (this.isStopped) return;
    if (event.error === undefined) {
      this.inside[this.from]--;
      this.inside[this.to]++;
      this.destination.next(event);
    } else if (this.errored(event)) this.destination.next(event);
  }
}

/**
 * The end of a runner's subscription, after the runner closed itself and stopped its source: the
 * steps' subscriptions stop (their work is aborted), nothing is counted inside or queued any more,
 * and the flow's runtime forgets this subscription (close() may then settle).
 */
export function unwire(
  subscriptions: Subscription[],
  inside: Float64Array,
  queue: unknown[],
  runtime: FlowRuntime,
  state: FlowSubscription,
): void {
  for (const s of subscriptions) s.unsubscribe();
  inside.fill(0);
  queue.length = 0;
  runtime.subscriptions.delete(state);
  runtime.settled();
}

/** A handler's input: the error cleared (a plain step can answer) and described in `metadata.error`. */
export function toHandler(event: ServingEvent, step: string): ServingEvent {
  const { error, origin: _origin, ...rest } = event;
  return Object.freeze({ ...rest, metadata: Object.freeze({ ...event.metadata, error: { step, error: describeError(error) } }) });
}

/** The error of a flow whose step emitted something that is not an event. */
export function notAStepEvent(flowName: string, step: PlanStep, value: unknown): TypeError {
  return new TypeError(
    `flow '${flowName}': step '${step.name}' emitted ${describeValue(value)}, not a ServingEvent; a flow step must emit events`,
  );
}

/** Warns (once per flow subscription: the caller keeps the flag) of an output no input inside has. */
export function warnStray(flowName: string, step: PlanStep, event: ServingEvent): void {
  process.emitWarning(
    `flow '${flowName}': step '${step.name}' emitted an event (id '${event.id}') that no input inside the flow has; it was dropped. ` +
      "A flow step must keep each event's id and emit it once (an rxserve step does).",
    { code: 'RXSERVE_FLOW_STRAY' },
  );
}
