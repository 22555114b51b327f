// A model call's PredictContext; its AbortController is made only if `signal` is read.
import type { PredictContext } from './model.js';

/**
 * Most calls never look at `signal`, so the `AbortController` (about a microsecond each) is
 * created on first access; an abort before that yields an already aborted signal.
 */
export class LazySignal {
  #controller: AbortController | undefined;
  #reason: unknown;
  #aborted = false;

  get signal(): AbortSignal {
    if (this.#controller === undefined) {
      this.#controller = new AbortController();
      if (this.#aborted) this.#controller.abort(this.#reason);
    }
    return this.#controller.signal;
  }

  abort(reason: unknown): void {
    if (this.#aborted) return;
    this.#aborted = true;
    this.#reason = reason;
    this.#controller?.abort(reason);
  }
}

/** A model call's `PredictContext`. */
export class CallContext extends LazySignal implements PredictContext {
  constructor(
    readonly eventId: string,
    readonly origin: string,
    readonly path: string | undefined,
    /** Where `emit` sends partials; none: they are dropped (nobody asked for them). */
    private readonly sink?: (partial: unknown) => void,
    /** The V2 operation (see `PredictContext.operation`); undefined: `predict`. */
    readonly operation?: string,
  ) {
    super();
  }

  emit(partial: unknown): void {
    this.sink?.(partial);
  }

  /** Someone receives this call's partials: a pool sends them back from its worker only then. */
  get listening(): boolean {
    return this.sink !== undefined;
  }
}

/**
 * Whether a model call's partials reach anyone: a `CallContext` with a sink, or a context made by
 * hand that has an `emit`. A call nobody listens to gets a context without a sink in a worker, so
 * no partial crosses back for nothing.
 */
export function listens(context: PredictContext): boolean {
  return context instanceof CallContext ? context.listening : typeof context.emit === 'function';
}
