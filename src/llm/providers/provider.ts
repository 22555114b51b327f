// Picking a provider by the model URL (the contract they implement is contract.ts).
import { ConfigError } from '../../errors.js';
import type { ModelArtifact } from '../../model/artifact.js';
import type { LLMProvider } from './contract.js';
import { MockProvider } from './mock.js';

/**
 * The provider for a model URL: `openai://<model>`, `huggingface://<org>/<model>`, `mock://`.
 * An unknown scheme is a `ConfigError`. A provider's client library is imported here, when a
 * model first needs it, not with rxserve (each worker thread and process imports rxserve).
 */
/** The model URL schemes `createProvider` knows (`hf` is short for `huggingface`). */
export const PROVIDER_SCHEMES: readonly string[] = ['openai', 'huggingface', 'hf', 'mock'];

/** The scheme of a model URL (`openai://gpt-4o` → `openai`), lower-cased; undefined when it has none. */
export function providerScheme(url: string): string | undefined {
  return /^([a-z][a-z0-9+.-]*):\/\//i.exec(url)?.[1].toLowerCase();
}

export async function createProvider(artifact: ModelArtifact, endpoint: string): Promise<LLMProvider> {
  const url = artifact.modelUrl;
  const match = /^([a-z][a-z0-9+.-]*):\/\/(.*)$/i.exec(url);
  const scheme = match?.[1].toLowerCase();
  const model = match?.[2] ?? '';
  const options = artifact.providerOptions ?? {};
  switch (scheme) {
    case 'openai':
      return new (await import('./openai.js')).OpenAIProvider(model, options);
    case 'huggingface':
    case 'hf':
      return new (await import('./huggingface.js')).HuggingFaceProvider(model, options);
    case 'mock':
      return new MockProvider(model);
    default:
      throw new ConfigError([
        {
          path: `LLModel '${endpoint}'.artifact.modelUrl`,
          expected: "a URL with a known provider: 'openai://<model>', 'huggingface://<org>/<model>' or 'mock://'",
          actual: JSON.stringify(url),
        },
      ]);
  }
}
