// Token usage as a model call reports it: part of the Model contract, so that monitoring (records,
// Prometheus counters, trace spans, the dashboard) reads it without knowing any model family.

/** Usage as OpenAI reports it; estimated usage says so, partial usage too. */
export interface Usage {
  readonly prompt_tokens: number;
  readonly completion_tokens: number;
  readonly total_tokens?: number;
  /** Counted by rxserve with a tokenizer, not reported by the provider. */
  readonly estimated?: boolean;
  /** False when the call ended before the answer was complete (error, timeout, unsubscribe). */
  readonly complete?: boolean;
  readonly [detail: string]: unknown;
}

/**
 * The usage a finished model call reports, if any: a result's `usage` (an LLModel's
 * `{ answer, usage }`, or any model's result of that shape) or a failed call's `error.usage` (a
 * `ProviderError`'s partial usage).
 * Anything that is not an object with a numeric `prompt_tokens` or `completion_tokens` is none.
 * Monitoring records, Prometheus token counters and trace spans all read usage through this.
 */
export function callUsage(value: unknown, error?: unknown): Usage | undefined {
  const holder = error !== undefined ? error : value;
  const usage = typeof holder === 'object' && holder !== null ? (holder as { usage?: unknown }).usage : undefined;
  if (typeof usage !== 'object' || usage === null) return undefined;
  const u = usage as Record<string, unknown>;
  return typeof u.prompt_tokens === 'number' || typeof u.completion_tokens === 'number' ? (usage as Usage) : undefined;
}
