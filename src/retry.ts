// Retry timing shared by the LLM providers (llm/retry.ts) and remoteStep (operators/internal/http.ts):
// openai-node's rule — exponential backoff less up to 25% jitter, `retry-after` honoured up to 60 s —
// and an abortable sleep. Below every unit that retries, so none has to import another's.

/** The longest rxserve waits for a server's `retry-after` (openai-node's limit for a "reasonable" one). */
export const MAX_RETRY_AFTER_MS = 60_000;
/** The longest backoff between two attempts when the server said nothing (default cap). */
export const MAX_BACKOFF_MS = 10_000;

/**
 * How long to wait before retry number `n + 1` (`n` = 0 after the first failure). A server's
 * `retry-after` wins, capped at 60 s; otherwise `baseDelayMs * 2^n` capped at `maxBackoffMs`
 * (default 10 s), less up to 25% jitter (as openai-node's `calculateDefaultRetryTimeoutMillis`),
 * so clients that failed together do not all come back together.
 */
export function retryDelayMs(
  n: number,
  retryAfterMs: number | undefined,
  baseDelayMs: number,
  random: () => number = Math.random,
  maxBackoffMs: number = MAX_BACKOFF_MS,
): number {
  if (retryAfterMs !== undefined && Number.isFinite(retryAfterMs) && retryAfterMs >= 0) return Math.min(retryAfterMs, MAX_RETRY_AFTER_MS);
  const backoff = Math.min(baseDelayMs * 2 ** n, maxBackoffMs);
  return backoff * (1 - random() * 0.25);
}

/**
 * The wait a response asks for, in ms: `retry-after-ms` (openai's), else `retry-after` as seconds
 * or as an HTTP date; `undefined` when absent or unreadable. `get` reads one header by its
 * lower-case name.
 */
export function retryAfterMs(get: (name: string) => string | null | undefined): number | undefined {
  const raw = get('retry-after-ms');
  if (raw != null) {
    const ms = Number(raw);
    if (raw.trim() !== '' && Number.isFinite(ms) && ms >= 0) return ms;
  }
  const value = get('retry-after');
  if (value == null || value.trim() === '') return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const date = Date.parse(value);
  return Number.isFinite(date) ? Math.max(0, date - Date.now()) : undefined;
}

/** What `sleep` listens to: an `AbortSignal`, or a lighter object with the same abort surface. */
export interface AbortLike {
  readonly aborted: boolean;
  readonly reason: unknown;
  addEventListener(type: 'abort', listener: () => void, options?: { once?: boolean }): void;
  removeEventListener(type: 'abort', listener: () => void): void;
}

/** Waits `ms`, or rejects with the signal's reason as soon as it aborts. */
export function sleep(ms: number, signal?: AbortLike): Promise<void> {
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
