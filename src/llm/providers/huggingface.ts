// 'huggingface://<org>/<model>': the official @huggingface/inference client; chat completion, or
// text generation (whose usage is estimated with a tokenizer).
import { InferenceClient, InferenceClientProviderApiError } from '@huggingface/inference';
import { ProviderError, toError } from '../../errors.js';
import { globalDispatcherFetch, sharedNodeFetch } from '../nodeFetch.js';
import { estimateUsage, renderChat, type Usage } from '../usage.js';
import type { Completion, LLMProvider, ProviderRequest, StreamPart } from './contract.js';

export class HuggingFaceProvider implements LLMProvider {
  readonly name = 'huggingface';
  private readonly client: InferenceClient;
  private readonly task: 'chat' | 'text-generation';
  /** The transport, wrapped per call to read a failed answer's `retry-after` (the client's errors carry no headers). */
  private readonly fetch: typeof fetch;

  constructor(
    readonly model: string,
    options: { apiKey?: string; baseURL?: string; task?: 'chat' | 'text-generation'; transport?: 'dispatcher' | 'fetch' | 'node-http' },
  ) {
    // baseURL is an endpoint speaking the TGI / Inference Endpoints API (e.g. a self-hosted TGI).
    this.client = new InferenceClient(options.apiKey ?? process.env.HF_TOKEN, {
      ...(options.baseURL ? { endpointUrl: options.baseURL } : {}),
    });
    this.fetch =
      options.transport === 'node-http'
        ? sharedNodeFetch()
        : options.transport === 'fetch'
          ? (input, init) => fetch(input, init)
          : globalDispatcherFetch;
    this.task = options.task ?? 'chat';
  }

  /** The client's options for one call, and what its failed answer said to wait. */
  private callOptions(signal: AbortSignal | undefined): {
    signal?: AbortSignal;
    retry_on_error: false;
    fetch: typeof fetch;
    failed: { retryAfter?: string };
  } {
    const failed: { retryAfter?: string } = {};
    const base = this.fetch;
    const wrapped: typeof fetch = async (input, init) => {
      const response = await base(input, init);
      if (!response.ok) {
        const header = response.headers.get('retry-after');
        if (header !== null) failed.retryAfter = header;
      }
      return response;
    };
    // retry_on_error false: the client would retry 503s itself, under rxserve's own retries.
    return { ...(signal ? { signal } : {}), retry_on_error: false, fetch: wrapped, failed };
  }

  async invoke({ messages, config, signal }: ProviderRequest): Promise<Completion> {
    const { failed, ...options } = this.callOptions(signal);
    try {
      if (this.task === 'text-generation') {
        const prompt = renderChat(messages);
        const out = await this.client.textGeneration({ model: this.model, inputs: prompt, parameters: config }, options);
        const answer = out.generated_text ?? '';
        // Text generation reports no usage: estimate it.
        return { answer, usage: estimateUsage(prompt, answer) };
      }
      const out = await this.client.chatCompletion({ ...config, model: this.model, messages: messages as never }, options);
      const answer = out.choices?.[0]?.message?.content ?? '';
      const usage: Usage = out.usage ? { ...out.usage } : estimateUsage(messages, answer);
      return { answer, usage };
    } catch (error) {
      throw toHfError(error, this.model, signal, failed.retryAfter);
    }
  }

  async *stream(request: ProviderRequest): AsyncIterable<StreamPart> {
    if (this.task === 'text-generation') {
      const { answer, usage } = await this.invoke(request);
      yield { delta: answer };
      yield { usage };
      return;
    }
    const { messages, config, signal } = request;
    let answer = '';
    let usage: Usage | undefined;
    const { failed, ...options } = this.callOptions(signal);
    try {
      for await (const chunk of this.client.chatCompletionStream({ ...config, model: this.model, messages: messages as never }, options)) {
        const delta = chunk.choices?.[0]?.delta?.content;
        if (delta) {
          answer += delta;
          yield { delta };
        }
        if (chunk.usage) usage = { ...chunk.usage };
      }
    } catch (error) {
      throw toHfError(error, this.model, signal, failed.retryAfter);
    }
    yield { usage: usage ?? estimateUsage(messages, answer) };
  }
}

function toHfError(error: unknown, model: string, signal?: AbortSignal, retryAfter?: string): unknown {
  if (signal?.aborted) return signal.reason;
  if (error instanceof ProviderError) return error;
  if (error instanceof InferenceClientProviderApiError) {
    const status = (error.httpResponse as { status?: number } | undefined)?.status;
    const retryable = status === undefined || status === 408 || status === 429 || status >= 500;
    const seconds = retryAfter === undefined ? NaN : Number(retryAfter);
    return new ProviderError(`huggingface '${model}': HTTP ${status ?? '?'}: ${error.message}`, status, retryable, {
      cause: error,
      ...(retryAfter !== undefined ? { retryAfter } : {}),
      ...(Number.isFinite(seconds) && seconds >= 0 ? { retryAfterMs: seconds * 1000 } : {}),
      ...(status === 408 || status === 504 ? { timedOut: true } : {}),
    });
  }
  const e = toError(error);
  if (e instanceof SyntaxError || /JSON|malformed/i.test(e.message)) {
    return new ProviderError(`huggingface '${model}': malformed response (${e.message})`, undefined, false, { cause: error });
  }
  if (e.name === 'TypeError' && /fetch failed|terminated|socket/i.test(e.message)) {
    return new ProviderError(`huggingface '${model}': connection failed (${e.message})`, undefined, true, { cause: error });
  }
  return new ProviderError(`huggingface '${model}': ${e.message}`, undefined, false, { cause: error });
}
