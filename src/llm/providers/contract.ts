// The provider contract: what LLModel calls and every provider implements. Its own file, so the
// providers (mock.ts, openai.ts, huggingface.ts) and the factory that picks one (provider.ts) do
// not import each other.
import type { ChatMessage } from '../prompt.js';
import type { Usage } from '../usage.js';

/** One LLM request. */
export interface ProviderRequest {
  readonly messages: readonly ChatMessage[];
  /** The model's defaultConfig with the prompt's invocationConfig over it (temperature, max_tokens, ...). */
  readonly config: Readonly<Record<string, unknown>>;
  readonly signal?: AbortSignal;
}

/** A whole answer with its usage. */
export interface Completion {
  readonly answer: string;
  readonly usage: Usage;
}

/** What a stream yields: answer text as it comes, and usage once known. */
export type StreamPart = { readonly delta: string } | { readonly usage: Usage };

/**
 * An LLM provider. Failures are `ProviderError`s with `status` and `retryable`; an abort
 * rejects with the signal's reason. Providers do not retry: the caller does (no stacked retries).
 */
export interface LLMProvider {
  readonly name: string;
  readonly model: string;
  invoke(request: ProviderRequest): Promise<Completion>;
  stream(request: ProviderRequest): AsyncIterable<StreamPart>;
}
