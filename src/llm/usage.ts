// Token usage: estimated with a real BPE tokenizer where a provider reports none.
import { createRequire } from 'node:module';
import type { Usage } from '../model/usage.js';
import type { ChatMessage } from './prompt.js';

// Declared with the Model contract (any model call may report usage); LLModel is what reports it.
// callUsage lives there too (monitoring reads any model's usage); re-exported for code that took it from here.
export type { Usage };
export { callUsage } from '../model/usage.js';

// The tokenizer's tables take ~0.4 s to load: loaded on the first count, not with the library
// (every worker thread and process imports rxserve). Synchronous, so counting stays synchronous.
let countTokens: ((text: string) => number) | undefined;
const tokenizer = (): ((text: string) => number) =>
  (countTokens ??= (createRequire(import.meta.url)('gpt-tokenizer') as typeof import('gpt-tokenizer')).countTokens);

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
  const prompt_tokens =
    typeof prompt === 'string' ? countTextTokens(prompt) : prompt.length === 0 ? 0 : countTextTokens(renderChat(prompt));
  const completion_tokens = countTextTokens(answer);
  return {
    prompt_tokens,
    completion_tokens,
    total_tokens: prompt_tokens + completion_tokens,
    estimated: true,
    ...(complete ? {} : { complete: false }),
  };
}
