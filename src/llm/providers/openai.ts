// 'openai://<model>': the official openai client, any OpenAI-compatible base URL.
import OpenAI from 'openai';
import { ProviderError, toError } from '../../errors.js';
import { sharedNodeFetch } from '../nodeFetch.js';
import { SSEParser } from './sseParser.js';
import { estimateUsage, type Usage } from '../usage.js';
import type { Completion, LLMProvider, ProviderRequest, StreamPart } from './provider.js';

export class OpenAIProvider implements LLMProvider {
  readonly name = 'openai';
  private readonly client: OpenAI;

  constructor(
    readonly model: string,
    options: { apiKey?: string; baseURL?: string; transport?: 'fetch' | 'node-http' },
  ) {
    // maxRetries 0: rxserve retries (bounded, before the first token), so retries never stack.
    this.client = new OpenAI({
      apiKey: options.apiKey ?? process.env.OPENAI_API_KEY,
      ...(options.baseURL ?? process.env.OPENAI_BASE_URL ? { baseURL: options.baseURL ?? process.env.OPENAI_BASE_URL } : {}),
      maxRetries: 0,
      ...(options.transport === 'node-http' ? { fetch: sharedNodeFetch() } : {}),
    });
  }

  async invoke({ messages, config, signal }: ProviderRequest): Promise<Completion> {
    let response: OpenAI.Chat.Completions.ChatCompletion;
    try {
      response = (await this.client.chat.completions.create(
        { ...config, model: this.model, messages: messages as OpenAI.Chat.ChatCompletionMessageParam[], stream: false },
        { signal },
      )) as OpenAI.Chat.Completions.ChatCompletion;
    } catch (error) {
      throw toProviderError(error, signal);
    }
    if (!Array.isArray(response?.choices) || response.choices.length === 0) {
      throw new ProviderError(`openai '${this.model}': the response has no choices`, 200, false);
    }
    if (response.choices.length > 1) {
      throw new ProviderError(`openai '${this.model}': the response has ${response.choices.length} choices; LLModel takes one (n: 1)`, 200, false);
    }
    const answer = response.choices[0].message?.content ?? '';
    // OpenAI's usage object is passed through whole (with its *_tokens_details).
    const usage: Usage = response.usage ? { ...response.usage } : estimateUsage(messages, answer);
    return { answer, usage };
  }

  /**
   * Streams one answer. The request (and its errors: statuses, connection failures) is the
   * openai client's; the response's event stream is parsed here, per network read, by
   * `SSEParser` — the client's own `Stream` costs several times more CPU per token. It yields
   * what the client's chunks would give: `{ delta }` per content chunk, `{ usage }` when the server
   * sends it; `[DONE]` ends the answer; an `{ error }` event throws the client's `APIError`.
   */
  async *stream({ messages, config, signal }: ProviderRequest): AsyncIterable<StreamPart> {
    let response: Response;
    try {
      response = await this.client.chat.completions
        .create(
          {
            ...config,
            model: this.model,
            messages: messages as OpenAI.Chat.ChatCompletionMessageParam[],
            stream: true,
            stream_options: { include_usage: true },
          },
          { signal },
        )
        .asResponse();
    } catch (error) {
      throw toProviderError(error, signal);
    }
    if (response.body === null) throw new ProviderError(`openai '${this.model}': the streamed response has no body`, response.status, false);
    const reader = response.body.getReader();
    const parser = new SSEParser();
    let finished = false;
    let done = false;
    try {
      while (!done) {
        const read = await reader.read();
        const messages = read.done ? parser.end() : parser.push(read.value);
        done = read.done;
        for (const message of messages) {
          if (finished) continue; // after [DONE]: read to the end, as the client does
          if (message.data.startsWith('[DONE]')) {
            finished = true;
            continue;
          }
          const chunk = JSON.parse(message.data) as OpenAI.Chat.Completions.ChatCompletionChunk & { error?: unknown };
          if (chunk?.error) throw new OpenAI.APIError(undefined, chunk.error as object, undefined, response.headers);
          const delta = chunk.choices?.[0]?.delta?.content;
          if (delta) yield { delta };
          if (chunk.usage) yield { usage: { ...chunk.usage } };
        }
      }
    } catch (error) {
      throw toProviderError(error, signal);
    } finally {
      // Stopped early (the consumer returned, or a failure): release the connection.
      if (!done) reader.cancel().catch(() => undefined);
    }
  }
}

/** Maps the openai client's errors to ProviderError (status, retryable, retry-after). */
export function toProviderError(error: unknown, signal?: AbortSignal): unknown {
  if (signal?.aborted) return signal.reason;
  if (error instanceof ProviderError) return error;
  if (error instanceof OpenAI.APIUserAbortError) return error;
  if (error instanceof OpenAI.APIConnectionTimeoutError) {
    return new ProviderError(`openai: the request timed out`, undefined, true, { cause: error });
  }
  if (error instanceof OpenAI.APIConnectionError) {
    return new ProviderError(`openai: connection failed (${connectionCause(error)})`, undefined, true, { cause: error });
  }
  if (error instanceof OpenAI.APIError && typeof error.status === 'number') {
    const status = error.status;
    const retryable = status === 408 || status === 409 || status === 429 || status >= 500;
    const retryAfterMs = retryAfter(error.headers);
    return new ProviderError(`openai: HTTP ${status}: ${error.message}`, status, retryable, {
      cause: error,
      ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
    });
  }
  const e = toError(error);
  if (e instanceof SyntaxError || /JSON/i.test(e.message)) {
    return new ProviderError(`openai: malformed response (${e.message})`, undefined, false, { cause: error });
  }
  if (/terminated|socket|ECONNRESET|other side closed/i.test(e.message)) {
    return new ProviderError(`openai: connection dropped (${e.message})`, undefined, true, { cause: error });
  }
  return new ProviderError(`openai: ${e.message}`, undefined, false, { cause: error });
}

function connectionCause(error: Error): string {
  const cause = (error as { cause?: { message?: string; code?: string } }).cause;
  return cause?.code ?? cause?.message ?? error.message;
}

function retryAfter(headers: unknown): number | undefined {
  const get = (name: string): string | null | undefined =>
    typeof (headers as Headers | undefined)?.get === 'function'
      ? (headers as Headers).get(name)
      : (headers as Record<string, string> | undefined)?.[name];
  const ms = Number(get('retry-after-ms'));
  if (Number.isFinite(ms) && ms >= 0 && get('retry-after-ms') != null) return ms;
  const value = get('retry-after');
  if (value == null) return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const date = Date.parse(value);
  return Number.isFinite(date) ? Math.max(0, date - Date.now()) : undefined;
}
