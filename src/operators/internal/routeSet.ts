// The routes of one subscription of a router-family step (modelRouter, parallelRun, votingEnsemble):
// each route subscribed once, events sent to a route and its answers handed back to their senders.
import { Observable, type OperatorFunction, type Subscriber, type Subscription } from 'rxjs';
import { RxServeError, toError } from '../../errors.js';
import { isServingEvent, withError, type ServingEvent } from '../../event.js';
import { notAnEvent } from './dispatch.js';
import { Intake, Take } from './lean.js';

type Route = OperatorFunction<ServingEvent, ServingEvent>;

/**
 * One event sent to one route (`route` ≥ 0), or to every route (`route` -1: `answers` fills in
 * route order and `done` gets them once the last one came), waiting for its answers.
 */
interface Pending {
  readonly route: number;
  readonly id: string;
  /** 0 when the event went to the routes as it came (no other event with its id was waiting). */
  readonly ticket: number;
  readonly answer?: (out: ServingEvent) => void;
  readonly answers?: ServingEvent[];
  readonly done?: (answers: ServingEvent[]) => void;
  remaining: number;
  /** The next event waiting with the same id (sent later). */
  sibling: Pending | undefined;
}

/**
 * Every route of a step, subscribed for as long as the step is (so their models load when the step
 * is subscribed, and a V2 `ready` can tell). Answers find their sender by event id; while another
 * event with the same id is still waiting, an event goes to the routes with a ticket under a symbol
 * of this set (copied by the spreads every step makes of an event), so that each gets its own
 * answers — only then: a copy per event, and a symbol key in every spread the routes make of it,
 * cost more than the rest of the matching. An answer without a ticket (the usual case, or a route
 * that builds its answers afresh) goes to the oldest event with its id still waiting for that
 * route. A route answers each event once (the step contract); what it emits beyond that is
 * ignored. When the input ends, the routes complete; an event a route never answered is answered
 * errored then, never left waiting.
 */
export class RouteSet {
  readonly names: readonly string[];
  readonly #ticketKey: symbol;
  readonly #inputs: Intake<ServingEvent>[] = [];
  readonly #subscriptions: Subscription[] = [];
  /** Waiting events by id: the oldest, the others chained by `sibling`. */
  readonly #pending = new Map<string, Pending>();
  /** Routes that completed (before the input did: a route that takes a few events and ends). */
  readonly #ended: boolean[];
  #lastTicket = 0;
  #open: number;
  #inputDone = false;

  /**
   * @param step The step's name, for errors.
   * @param out Where the step's stream errors go (a route whose stream errors is a pipeline fault),
   *   and whose `complete` ends the step once every route has completed.
   */
  constructor(
    routes: Readonly<Record<string, Route>>,
    private readonly step: string,
    private readonly out: Subscriber<ServingEvent>,
  ) {
    this.names = Object.keys(routes);
    this.#ticketKey = Symbol(`rxserve.route(${step})`);
    this.#open = this.names.length;
    this.#ended = this.names.map(() => false);
    this.names.forEach((name, index) => {
      const input = new Intake<ServingEvent>();
      this.#inputs.push(input);
      this.#subscriptions.push(
        routes[name](input.events).subscribe(
          new Take<ServingEvent>((answer) => this.#answered(index, answer), {
            error: (error: unknown) => out.error(error),
            complete: () => this.#completed(index),
          }),
        ),
      );
    });
  }

  /** The index of a route by name, or -1. */
  indexOf(name: string): number {
    return this.names.indexOf(name);
  }

  /**
   * Sends `event` to route `route` (an index); `answer` gets the route's output event once. The
   * answer may carry this set's ticket: read its `body`, `error`, `origin` and `metadata`, and
   * build what the step emits from the step's own input event.
   */
  send(route: number, event: ServingEvent, answer: (out: ServingEvent) => void): void {
    if (this.#ended[route]) return answer(withError(event, this.#unanswered(route, event.id), this.step));
    // Registered before the route sees the event: a synchronous route answers inside next().
    const pending = this.#wait(event.id, route, answer, undefined, undefined, 1);
    this.#inputs[route].next(this.#tagged(event, pending));
  }

  /**
   * Sends `event` to every route (one event, at most one ticket); `done` gets their answers in
   * route order once the last has come (see `send` for what to read of them).
   */
  broadcast(event: ServingEvent, done: (answers: ServingEvent[]) => void): void {
    const pending = this.#wait(event.id, -1, undefined, new Array<ServingEvent>(this.names.length), done, this.names.length);
    const sent = this.#tagged(event, pending);
    for (let route = 0; route < this.#inputs.length; route++) {
      if (this.#ended[route]) this.#fill(pending, route, withError(event, this.#unanswered(route, event.id), this.step));
      else this.#inputs[route].next(sent);
    }
  }

  /** The input has ended: every route completes once its events are answered. */
  complete(): void {
    this.#inputDone = true;
    for (const input of this.#inputs) input.complete();
    if (this.#open === 0) this.out.complete();
  }

  /** Stops every route (their work is aborted by their own teardown). */
  unsubscribe(): void {
    for (const subscription of this.#subscriptions) subscription.unsubscribe();
    this.#pending.clear();
  }

  /** A waiting event, in the map by id (after any other waiting with its id, then with a ticket). */
  #wait(
    id: string,
    route: number,
    answer: Pending['answer'],
    answers: Pending['answers'],
    done: Pending['done'],
    remaining: number,
  ): Pending {
    const first = this.#pending.get(id);
    const pending: Pending = {
      route,
      id,
      ticket: first === undefined ? 0 : ++this.#lastTicket,
      answer,
      answers,
      done,
      remaining,
      sibling: undefined,
    };
    if (first === undefined) this.#pending.set(id, pending);
    else {
      let last = first;
      while (last.sibling !== undefined) last = last.sibling;
      last.sibling = pending;
    }
    return pending;
  }

  /** The event as the routes get it: itself, or a copy with the pending's ticket. */
  #tagged(event: ServingEvent, pending: Pending): ServingEvent {
    return pending.ticket === 0 ? event : Object.freeze({ ...event, [this.#ticketKey]: pending.ticket });
  }

  /** Whether `pending` still waits for route `route`. */
  #waits(pending: Pending, route: number): boolean {
    return pending.route === route || (pending.route === -1 && pending.answers![route] === undefined);
  }

  #answered(route: number, out: ServingEvent): void {
    const ticket = (out as unknown as Record<symbol, number | undefined>)[this.#ticketKey];
    let pending = this.#pending.get(out?.id);
    if (ticket !== undefined) {
      let tagged = pending;
      while (tagged !== undefined && (tagged.ticket !== ticket || !this.#waits(tagged, route))) tagged = tagged.sibling;
      // The ticket answered already, or the route changed the id: the oldest waiting with this id.
      if (tagged !== undefined) return this.#fill(tagged, route, out);
    }
    while (pending !== undefined && !this.#waits(pending, route)) pending = pending.sibling;
    if (pending !== undefined) this.#fill(pending, route, out);
  }

  #fill(pending: Pending, route: number, out: ServingEvent): void {
    if (pending.route >= 0) {
      this.#remove(pending);
      pending.answer!(out);
      return;
    }
    pending.answers![route] = out;
    if (--pending.remaining > 0) return;
    this.#remove(pending);
    pending.done!(pending.answers!);
  }

  #remove(pending: Pending): void {
    const first = this.#pending.get(pending.id);
    if (first === pending) {
      if (pending.sibling === undefined) this.#pending.delete(pending.id);
      else this.#pending.set(pending.id, pending.sibling);
      return;
    }
    let before = first;
    while (before !== undefined && before.sibling !== pending) before = before.sibling;
    if (before !== undefined) before.sibling = pending.sibling;
  }

  #completed(route: number): void {
    this.#ended[route] = true;
    const waiting: Pending[] = [];
    for (const first of this.#pending.values()) {
      for (let p: Pending | undefined = first; p !== undefined; p = p.sibling) if (this.#waits(p, route)) waiting.push(p);
    }
    for (const pending of waiting) {
      this.#fill(
        pending,
        route,
        withError({ id: pending.id, body: undefined, metadata: {} }, this.#unanswered(route, pending.id), this.step),
      );
    }
    if (--this.#open === 0 && this.#inputDone) this.out.complete();
  }

  #unanswered(route: number, id: string): RxServeError {
    return new RxServeError(`step '${this.step}': route '${this.names[route]}' completed without answering event '${id}'`);
  }
}

/**
 * The operator of a router-family step: per subscription, its routes (a `RouteSet`) and a handler
 * made by `setup` (which holds that subscription's state); errored events pass untouched; the
 * step completes when its source has and every route has answered and completed.
 */
export function routerStep(
  operator: string,
  step: string,
  routes: Readonly<Record<string, Route>>,
  setup: (routes: RouteSet, emit: (out: ServingEvent) => void) => (event: ServingEvent) => void,
): OperatorFunction<ServingEvent, ServingEvent> {
  return (source) =>
    new Observable<ServingEvent>((subscriber) => {
      const set = new RouteSet(routes, step, subscriber);
      if (subscriber.closed) {
        set.unsubscribe();
        return undefined;
      }
      const emit = (out: ServingEvent): void => subscriber.next(out);
      const handle = setup(set, emit);
      const take = (event: ServingEvent): void => {
        if (!isServingEvent(event)) return subscriber.error(notAnEvent(event, operator, step));
        if (event.error !== undefined) return emit(event);
        try {
          handle(event);
        } catch (thrown) {
          // A fault of the handler is this event's failure, not the stream's.
          emit(withError(event, toError(thrown), step));
        }
      };
      const subscription = source.subscribe(
        new Take<ServingEvent>(take, {
          error: (error: unknown) => subscriber.error(error),
          complete: () => set.complete(),
        }),
      );
      return () => {
        subscription.unsubscribe();
        set.unsubscribe();
      };
    });
}
