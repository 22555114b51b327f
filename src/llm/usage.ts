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
  return `${messages.map((m) => `<|${m.role}|>\n${m.content}`).join('\n')}\n<|assistant|>\n`;
}

/** Tokens of a text with gpt-tokenizer's o200k_base BPE (see docs/llm.md for how close it is). */
export function countTextTokens(text: string): number {
  return text.length === 0 ? 0 : tokenizer()(text);
}

/** Usage estimated from the prompt text and the answer: `total = prompt + completion`. */
export function estimateUsage(prompt: string, answer: string, complete = true): Usage {
  const prompt_tokens = countTextTokens(prompt);
  const completion_tokens = countTextTokens(answer);
  return { prompt_tokens, completion_tokens, total_tokens: prompt_tokens + completion_tokens, estimated: true, ...(complete ? {} : { complete: false }) };
}
