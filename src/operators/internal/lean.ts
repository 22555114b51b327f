// Two pieces of RxJS plumbing with less work per event than a Subject and a subscribe() of an
// observer, for operators that move every event between inner operators themselves (a flow's steps,
// a router-family step's routes): each layer they replace cost three or four calls per event.
import { Observable, Subscriber } from 'rxjs';

/**
 * What a Subject does for an operator subscribing to it (usually once): `next` calls each
 * subscriber, without a Subject's error-context closure and observer-array copy per value.
 */
export class Intake<T> {
  readonly #subscribers: Subscriber<T>[] = [];
  #done = false;
  readonly events = new Observable<T>((subscriber) => {
    if (this.#done) return subscriber.complete();
    this.#subscribers.push(subscriber);
    return () => {
      const at = this.#subscribers.indexOf(subscriber);
      if (at >= 0) this.#subscribers.splice(at, 1);
    };
  });

  next(value: T): void {
    const subscribers = this.#subscribers;
    if (subscribers.length === 1) subscribers[0].next(value);
    else for (const subscriber of subscribers.slice()) subscriber.next(value);
  }

  complete(): void {
    if (this.#done) return;
    this.#done = true;
    for (const subscriber of this.#subscribers.splice(0)) subscriber.complete();
  }
}

/**
 * A subscriber that hands each value to `take`: one call per value where `filter(...)` or a
 * subscribe's SafeSubscriber cost three or four. Errors and completion go to `observer` (a
 * downstream subscriber given as `observer` also unsubscribes this one when it ends).
 */
export class Take<T> extends Subscriber<T> {
  constructor(
    private readonly take: (value: T) => void,
    observer: { error(error: unknown): void; complete(): void },
  ) {
    super(observer as Subscriber<T>);
  }

  override next(value: T): void {
    if (!this.isStopped) this.take(value);
  }
}
