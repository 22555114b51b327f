// The routes of one subscription of a router-family step (modelRouter, parallelRun, votingEnsemble):
// each route subscribed once, events sent to a route and its answers handed back to their senders.
import { Observable, Subject, type OperatorFunction, type Subscriber, type Subscription } from 'rxjs';
import { RxServeError, toError } from '../../errors.js';
import { isServingEvent, withError, type ServingEvent } from '../../event.js';
import { notAnEvent } from './dispatch.js';

type Route = OperatorFunction<ServingEvent, ServingEvent>;

/**
 * One event sent to one route (`route` ≥ 0), or to every route (`route` -1: `answers` fills in
 * route order and `done` gets them once the last one came), waiting for its answers.
 */
interface Pending {
  readonly route: number;
  readonly id: string;
  readonly answer?: (out: ServingEvent) => void;
  readonly answers?: ServingEvent[];
  readonly done?: (answers: ServingEvent[]) => void;
  remaining: number;
}

/**
 * Every route of a step, subscribed for as long as the step is (so their models load when the step
 * is subscribed, and a V2 `ready` can tell). An event sent to routes carries a ticket under a
 * symbol of this set, copied by the spreads every step makes of an event, so its answers find their
 * sender even when two events share an id; a route that builds its answers afresh (no ticket) is
 * matched by event id. A route answers each event once (the step contract); what it emits beyond
 * that is ignored. When the input ends, the routes complete; an event a route never answered is
 * answered errored then, never left waiting.
 */
export class RouteSet {
  readonly names: readonly string[];
  readonly #ticketKey: symbol;
  readonly #inputs: Subject<ServingEvent>[] = [];
  readonly #subscriptions: Subscription[] = [];
  readonly #pending = new Map<number, Pending>();
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
      const input = new Subject<ServingEvent>();
      this.#inputs.push(input);
      this.#subscriptions.push(
        routes[name](input.asObservable()).subscribe({
          next: (answer) => this.#answered(index, answer),
          error: (error: unknown) => out.error(error),
          complete: () => this.#completed(index),
        }),
      );
    });
  }

  /** The index of a route by name, or -1. */
  indexOf(name: string): number {
    return this.names.indexOf(name);
  }

  /**
   * Sends `event` to route `route` (an index); `answer` gets the route's output event once. The
   * answer carries this set's ticket: read its `body`, `error`, `origin` and `metadata`, and build
   * what the step emits from the step's own input event.
   */
  send(route: number, event: ServingEvent, answer: (out: ServingEvent) => void): void {
    if (this.#ended[route]) return answer(withError(event, this.#unanswered(route, event.id), this.step));
    const ticket = ++this.#lastTicket;
    // Registered before the route sees the event: a synchronous route answers inside next().
    this.#pending.set(ticket, { route, id: event.id, answer, remaining: 1 });
    this.#inputs[route].next(Object.freeze({ ...event, [this.#ticketKey]: ticket }));
  }

  /**
   * Sends `event` to every route (one copy, one ticket); `done` gets their answers in route order
   * once the last has come (see `send` for what to read of them).
   */
  broadcast(event: ServingEvent, done: (answers: ServingEvent[]) => void): void {
    const ticket = ++this.#lastTicket;
    const pending: Pending = { route: -1, id: event.id, answers: new Array<ServingEvent>(this.names.length), done, remaining: this.names.length };
    this.#pending.set(ticket, pending);
    const copy: ServingEvent = Object.freeze({ ...event, [this.#ticketKey]: ticket });
    for (let route = 0; route < this.#inputs.length; route++) {
      if (this.#ended[route]) this.#fill(ticket, pending, route, withError(event, this.#unanswered(route, event.id), this.step));
      else this.#inputs[route].next(copy);
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

  /** Whether `pending` still waits for route `route`. */
  #waits(pending: Pending, route: number): boolean {
    return pending.route === route || (pending.route === -1 && pending.answers![route] === undefined);
  }

  #answered(route: number, out: ServingEvent): void {
    let ticket = (out as unknown as Record<symbol, number | undefined>)[this.#ticketKey];
    let pending = ticket === undefined ? undefined : this.#pending.get(ticket);
    if (pending === undefined || !this.#waits(pending, route)) {
      // No ticket (a route that builds its answers afresh), or one already answered: by event id.
      pending = undefined;
      for (const [k, p] of this.#pending) {
        if (p.id === out.id && this.#waits(p, route)) {
          ticket = k;
          pending = p;
          break;
        }
      }
    }
    if (pending !== undefined) this.#fill(ticket!, pending, route, out);
  }

  #fill(ticket: number, pending: Pending, route: number, out: ServingEvent): void {
    if (pending.route >= 0) {
      this.#pending.delete(ticket);
      pending.answer!(out);
      return;
    }
    pending.answers![route] = out;
    if (--pending.remaining > 0) return;
    this.#pending.delete(ticket);
    pending.done!(pending.answers!);
  }

  #completed(route: number): void {
    this.#ended[route] = true;
    for (const [ticket, pending] of this.#pending) {
      if (!this.#waits(pending, route)) continue;
      this.#fill(ticket, pending, route, withError({ id: pending.id, body: undefined, metadata: {} }, this.#unanswered(route, pending.id), this.step));
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
      const subscription = source.subscribe({
        next: (event) => {
          if (!isServingEvent(event)) return subscriber.error(notAnEvent(event, operator, step));
          if (event.error !== undefined) return emit(event);
          try {
            handle(event);
          } catch (thrown) {
            // A fault of the handler is this event's failure, not the stream's.
            emit(withError(event, toError(thrown), step));
          }
        },
        error: (error: unknown) => subscriber.error(error),
        complete: () => set.complete(),
      });
      return () => {
        subscription.unsubscribe();
        set.unsubscribe();
      };
    });
}
