// Retries of retryable provider failures, with backoff, honouring retry-after; abortable.
import { ProviderError } from '../errors.js';

export interface RetryOptions {
  /** Retries after the first attempt; default 2. */
  readonly maxRetries: number;
  /** First backoff; doubles each retry (capped at 10 s) unless the provider said retry-after. */
  readonly baseDelayMs: number;
  readonly signal?: AbortSignal;
}

/**
 * Runs `attempt` until it succeeds, fails with a non-retryable error, or `maxRetries` retries
 * were spent. Only `ProviderError`s with `retryable` are retried. The last error is rethrown with
 * the number of attempts in its message.
 */
export async function withRetries<T>(attempt: (n: number) => Promise<T>, options: RetryOptions): Promise<T> {
  for (let n = 0; ; n++) {
    try {
      return await attempt(n);
    } catch (error) {
      const retryable = error instanceof ProviderError && error.retryable && !options.signal?.aborted;
      if (!retryable || n >= options.maxRetries) {
        if (error instanceof ProviderError && n > 0) {
          throw new ProviderError(`${error.message} (after ${n + 1} attempts)`, error.status, error.retryable, { cause: error });
        }
        throw error;
      }
      const wait = error.retryAfterMs ?? Math.min(options.baseDelayMs * 2 ** n, 10_000);
      await sleep(wait, options.signal);
    }
  }
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
