// Filling a prompt template from a request body (MLRun's LLModel.enrich_prompt).
import type { LLMPromptArtifact } from '../model/artifact.js';
import { callerMessages, invalidRequest, STRICT_POLICY, type CallerPolicy, type ChatMessage } from './invocation.js';

// Declared where the caller's messages are checked (invocation.ts), so the two files do not import each other.
export type { ChatMessage };

/**
 * The messages for one call. With a template, each `{placeholder}` is filled from the input:
 * by the body key of the same name, or the legend's `field` for it when that field has a value
 * (`{{` and `}}` are literal braces, as in Python's `str.format`). Without a template the input
 * supplies `messages`; with one, an input's `messages` array follows the template's messages
 * (a chat continued under the prompt). A placeholder with no value throws a `TypeError` naming it.
 *
 * The input's messages are the caller's, checked and copied under `policy` (default: string
 * content only; see `params.overridable` and `params.allowContentParts` in docs/llm.md): after a
 * template's messages a caller may not add `system` or `developer` ones, and a message with
 * anything else than `role`, `content` and `name` is refused, a `TypeError` whose `param` names it.
 */
export function buildMessages(
  prompt: LLMPromptArtifact | undefined,
  input: unknown,
  endpoint: string,
  policy: CallerPolicy = STRICT_POLICY,
): ChatMessage[] {
  const template = prompt?.promptTemplate;
  if (!template || template.length === 0) {
    const messages = (input as { messages?: unknown } | null)?.messages;
    if (!Array.isArray(messages)) {
      throw invalidRequest('messages', `LLModel '${endpoint}': no prompt template, so the input needs a 'messages' array`);
    }
    return callerMessages(messages, false, policy, endpoint);
  }
  if (input === null || typeof input !== 'object') {
    throw new TypeError(
      `LLModel '${endpoint}': the prompt '${prompt.key}' needs an object input to fill its placeholders, got ${typeof input}`,
    );
  }
  const values = input as Record<string, unknown>;
  const legend = prompt.promptLegend ?? {};
  const valueOf = (name: string): string => {
    const field = legend[name]?.field;
    const fromLegend = field ? values[field] : undefined;
    const value = fromLegend !== undefined && fromLegend !== null && fromLegend !== '' ? fromLegend : values[name];
    if (value === undefined || value === null) {
      const where = field ? `fields '${field}' and '${name}'` : `field '${name}'`;
      throw new TypeError(`LLModel '${endpoint}': prompt '${prompt.key}' has placeholder {${name}}, but the input has no ${where}`);
    }
    return typeof value === 'string' ? value : JSON.stringify(value);
  };
  const filled = template.map((message) => ({ role: message.role, content: fill(message.content, valueOf) }));
  const more = values.messages;
  if (more === undefined || more === null) return filled;
  if (!Array.isArray(more)) {
    throw invalidRequest(
      'messages',
      `LLModel '${endpoint}': 'messages' must be an array of { role, content } objects (they follow the prompt's), got ${typeof more}`,
    );
  }
  return more.length === 0 ? filled : filled.concat(callerMessages(more, true, policy, endpoint));
}

function fill(content: string, valueOf: (name: string) => string): string {
  return content.replace(/\{\{|\}\}|\{([^{}]+)\}/g, (match, name: string | undefined) => {
    if (match === '{{') return '{';
    if (match === '}}') return '}';
    return valueOf(name!.trim());
  });
}
