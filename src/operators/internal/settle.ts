// Runs a user callback whose result may be a value, a promise or an Observable, and reports once.
import { EmptyError, isObservable } from 'rxjs';

/**
 * Calls `run` and reports its outcome to exactly one of `onValue` / `onError`: at once for a
 * plain value or a throw, on settlement for a promise, on completion (last value) for an
 * Observable. Returns a canceller for an Observable still running, else `undefined`.
 */
export function settle(
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
    let last: unknown;
    let has = false;
    const subscription = result.subscribe({
      next(value) {
        last = value;
        has = true;
      },
      error: onError,
      complete() {
        if (has) onValue(last);
        else onError(new EmptyError());
      },
    });
    return () => subscription.unsubscribe();
  }
  if (result !== null && typeof result === 'object' && typeof (result as PromiseLike<unknown>).then === 'function') {
    (result as PromiseLike<unknown>).then(onValue, onError);
    return undefined;
  }
  onValue(result);
  return undefined;
}
