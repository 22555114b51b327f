// Retries of retryable provider failures: exponential backoff with jitter, retry-after honoured
// up to a cap; abortable.
import { ProviderError } from '../errors.js';

/** The longest rxserve waits for a provider's `retry-after` (openai-node's limit for a "reasonable" one). */
export const MAX_RETRY_AFTER_MS = 60_000;
/** The longest backoff between two attempts when the provider said nothing. */
export const MAX_BACKOFF_MS = 10_000;

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
 * How long to wait before retry number `n + 1` (`n` = 0 after the first failure). A provider's
 * `retry-after` wins, capped at 60 s; otherwise `baseDelayMs * 2^n` capped at 10 s, less up to 25%
 * jitter (as openai-node's `calculateDefaultRetryTimeoutMillis`), so clients that failed together
 * do not all come back together.
 */
export function retryDelayMs(n: number, retryAfterMs: number | undefined, baseDelayMs: number, random: () => number = Math.random): number {
  if (retryAfterMs !== undefined && Number.isFinite(retryAfterMs) && retryAfterMs >= 0) return Math.min(retryAfterMs, MAX_RETRY_AFTER_MS);
  const backoff = Math.min(baseDelayMs * 2 ** n, MAX_BACKOFF_MS);
  return backoff * (1 - random() * 0.25);
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
