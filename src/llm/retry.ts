// Retries of retryable provider failures: exponential backoff with jitter, retry-after honoured
// up to a cap; abortable. The timing itself (retryDelayMs, sleep) is src/retry.ts, shared with remoteStep.
import { ProviderError } from '../errors.js';
import { retryDelayMs, sleep } from '../retry.js';

export { MAX_BACKOFF_MS, MAX_RETRY_AFTER_MS, retryDelayMs } from '../retry.js';

export interface RetryOptions {
  /** Retries after the first attempt; default 2. */
  readonly maxRetries: number;
  /** First backoff; doubles each retry (capped at 10 s), minus up to 25% jitter, unless the provider said retry-after. */
  readonly baseDelayMs: number;
  readonly signal?: AbortSignal;
  /** The random source for jitter, in [0, 1); default `Math.random` (tests inject their own). */
  readonly random?: () => number;
  /** Waits `ms` or rejects on abort; default a timer (tests inject their own clock). */
  readonly sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
}

/**
 * Runs `attempt` until it succeeds, fails with a non-retryable error, or `maxRetries` retries
 * were spent. Only `ProviderError`s with `retryable` are retried. The last error is rethrown with
 * the number of attempts in its message.
 */
export async function withRetries<T>(attempt: (n: number) => Promise<T>, options: RetryOptions): Promise<T> {
  const wait = options.sleep ?? sleep;
  for (let n = 0; ; n++) {
    try {
      return await attempt(n);
    } catch (error) {
      const retryable = error instanceof ProviderError && error.retryable && !options.signal?.aborted;
      if (!retryable || n >= options.maxRetries) {
        if (error instanceof ProviderError && n > 0) throw restateProviderError(error, `${error.message} (after ${n + 1} attempts)`);
        throw error;
      }
      await wait(retryDelayMs(n, error.retryAfterMs, options.baseDelayMs, options.random), options.signal);
    }
  }
}

/**
 * The same failure with another message (and `error` as its cause): what the provider
 * said (status, retry-after, timed out) is kept, so serve() answers with its status.
 */
export function restateProviderError(error: ProviderError, message: string, retryable = error.retryable): ProviderError {
  return new ProviderError(message, error.status, retryable, {
    cause: error,
    ...(error.retryAfterMs !== undefined ? { retryAfterMs: error.retryAfterMs } : {}),
    ...(error.retryAfter !== undefined ? { retryAfter: error.retryAfter } : {}),
    ...(error.timedOut === true ? { timedOut: true } : {}),
  });
}
