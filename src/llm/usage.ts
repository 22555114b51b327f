// Token usage: estimated with a real BPE tokenizer where a provider reports none.
import { createRequire } from 'node:module';
import type { ChatMessage } from './prompt.js';

// The tokenizer's tables take ~0.4 s to load: loaded on the first count, not with the library
// (every worker thread and process imports rxserve). Synchronous, so counting stays synchronous.
let countTokens: ((text: string) => number) | undefined;
const tokenizer = (): ((text: string) => number) =>
  (countTokens ??= (createRequire(import.meta.url)('gpt-tokenizer') as typeof import('gpt-tokenizer')).countTokens);

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

/** Renders chat messages as one prompt text (a generic chat template) for text generation. */
export function renderChat(messages: readonly ChatMessage[]): string {
  return `${messages.map((m) => `<|${m.role}|>\n${textOf(m.content)}`).join('\n')}\n<|assistant|>\n`;
}

/** A message's text: its content, or the text of its content parts (an endpoint with `params.allowContentParts`). */
function textOf(content: unknown): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  return content.map((part: { text?: unknown } | null) => (typeof part?.text === 'string' ? part.text : '')).join('');
}

/** Tokens of a text with gpt-tokenizer's o200k_base BPE (see docs/llm.md for how close it is). */
export function countTextTokens(text: string): number {
  return text.length === 0 ? 0 : tokenizer()(text);
}

/**
 * Usage estimated with the tokenizer: `total_tokens = prompt_tokens + completion_tokens`, and
 * `estimated: true`. The prompt is its text, or chat messages (rendered with the generic chat
 * template; no messages count 0). Pass `complete = false` for a call that ended before its answer
 * was whole (the answer so far is counted, and the usage says `complete: false`).
 */
export function estimateUsage(prompt: string | readonly ChatMessage[], answer: string, complete = true): Usage {
  const prompt_tokens = typeof prompt === 'string' ? countTextTokens(prompt) : prompt.length === 0 ? 0 : countTextTokens(renderChat(prompt));
  const completion_tokens = countTextTokens(answer);
  return { prompt_tokens, completion_tokens, total_tokens: prompt_tokens + completion_tokens, estimated: true, ...(complete ? {} : { complete: false }) };
}

/**
 * The usage a finished model call reports, if any: a result's `usage` (an LLModel's
 * `{ answer, usage }`) or a failed call's `error.usage` (a `ProviderError`'s partial usage).
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
