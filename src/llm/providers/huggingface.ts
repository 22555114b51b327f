// 'huggingface://<org>/<model>': the official @huggingface/inference client; chat completion, or
// text generation (whose usage is estimated with a tokenizer).
import { InferenceClient, InferenceClientProviderApiError } from '@huggingface/inference';
import { ProviderError, toError } from '../../errors.js';
import { sharedNodeFetch } from '../nodeFetch.js';
import { estimateUsage, renderChat, type Usage } from '../usage.js';
import type { Completion, LLMProvider, ProviderRequest, StreamPart } from './provider.js';

export class HuggingFaceProvider implements LLMProvider {
  readonly name = 'huggingface';
  private readonly client: InferenceClient;
  private readonly task: 'chat' | 'text-generation';

  constructor(
    readonly model: string,
    options: { apiKey?: string; baseURL?: string; task?: 'chat' | 'text-generation'; transport?: 'fetch' | 'node-http' },
  ) {
    // baseURL is an endpoint speaking the TGI / Inference Endpoints API (e.g. a self-hosted TGI).
    this.client = new InferenceClient(options.apiKey ?? process.env.HF_TOKEN, {
      ...(options.baseURL ? { endpointUrl: options.baseURL } : {}),
      ...(options.transport === 'node-http' ? { fetch: sharedNodeFetch() } : {}),
    });
    this.task = options.task ?? 'chat';
  }

  async invoke({ messages, config, signal }: ProviderRequest): Promise<Completion> {
    // retry_on_error false: the client would retry 503s itself, under rxserve's own retries.
    const options = { signal, retry_on_error: false };
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
      throw toHfError(error, this.model, signal);
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
    try {
      for await (const chunk of this.client.chatCompletionStream(
        { ...config, model: this.model, messages: messages as never },
        { signal, retry_on_error: false },
      )) {
        const delta = chunk.choices?.[0]?.delta?.content;
        if (delta) {
          answer += delta;
          yield { delta };
        }
        if (chunk.usage) usage = { ...chunk.usage };
      }
    } catch (error) {
      throw toHfError(error, this.model, signal);
    }
    yield { usage: usage ?? estimateUsage(messages, answer) };
  }
}

function toHfError(error: unknown, model: string, signal?: AbortSignal): unknown {
  if (signal?.aborted) return signal.reason;
  if (error instanceof ProviderError) return error;
  if (error instanceof InferenceClientProviderApiError) {
    const status = (error.httpResponse as { status?: number } | undefined)?.status;
    const retryable = status === undefined || status === 408 || status === 429 || status >= 500;
    return new ProviderError(`huggingface '${model}': HTTP ${status ?? '?'}: ${error.message}`, status, retryable, { cause: error });
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
