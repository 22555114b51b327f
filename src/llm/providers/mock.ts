// 'mock://': a fixed answer and zero usage, as MLRun's mock provider.
import type { Completion, LLMProvider, ProviderRequest, StreamPart } from './contract.js';

export const MOCK_ANSWER = 'You are using a mock model provider, no actual inference is performed.';

export class MockProvider implements LLMProvider {
  readonly name = 'mock';
  constructor(readonly model: string) {}

  // eslint-disable-next-line @typescript-eslint/require-await -- LLMProvider.invoke is async: an aborted signal rejects it, as a real provider's does
  async invoke(request: ProviderRequest): Promise<Completion> {
    request.signal?.throwIfAborted();
    return { answer: MOCK_ANSWER, usage: { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 } };
  }

  async *stream(request: ProviderRequest): AsyncIterable<StreamPart> {
    const { answer, usage } = await this.invoke(request);
    yield { delta: answer };
    yield { usage };
  }
}
