// onResult(): runs a call whose result may be a value, a promise or an Observable, and reports it once.
import { EmptyError, isObservable, type Subscription } from 'rxjs';

/**
 * Calls `run` and reports its outcome to exactly one of `onValue` / `onError`: at once for a
 * plain value or a throw, on settlement for a promise, at the first value for an Observable (as
 * `firstValueFrom`; it is then unsubscribed, and one that completes empty is an `EmptyError`).
 * Returns a canceller for an Observable still running, else `undefined`.
 */
export function onResult(
  run: () => unknown,
  onValue: (value: unknown) => void,
  onError: (error: unknown) => void,
): (() => void) | undefined {
  let result: unknown;
  try {
    result = run();
  } catch (error) {
    onError(error);
    return undefined;
  }
  if (isObservable(result)) {
    let done = false;
    let subscription: Subscription | undefined;
    // eslint-disable-next-line prefer-const -- next() reads it: a `const` would be in its TDZ when the source emits synchronously
    subscription = result.subscribe({
      next(value) {
        if (done) return;
        done = true;
        subscription?.unsubscribe();
        onValue(value);
      },
      error(error) {
        if (done) return;
        done = true;
        onError(error);
      },
      complete() {
        if (done) return;
        done = true;
        onError(new EmptyError());
      },
    });
    if (done) {
      subscription.unsubscribe();
      return undefined;
    }
    return () => subscription.unsubscribe();
  }
  if (result !== null && typeof result === 'object' && typeof (result as PromiseLike<unknown>).then === 'function') {
    (result as PromiseLike<unknown>).then(onValue, onError);
    return undefined;
  }
  onValue(result);
  return undefined;
}

/**
 * True when `onResult` would report `value` later (a promise-like or an Observable); false for a
 * plain value, reported at once. Lets a caller with a value in hand skip `onResult`'s closures.
 */
export function settlesLater(value: unknown): boolean {
  // The same tests as onResult's, in its order.
  return isObservable(value) || (value !== null && typeof value === 'object' && typeof (value as PromiseLike<unknown>).then === 'function');
}
