// Model and prompt artifacts (DESIGN §10). The LLM issue adds their constructors and codecs.

/** A model artifact: where the model lives and how to call it. */
export interface ModelArtifact {
  readonly key: string;
  readonly uri?: string;
  /** `'openai://gpt-4o-mini'`, `'huggingface://org/model'`, `'mock://'`, or a model's own URL. */
  readonly modelUrl: string;
  readonly defaultConfig?: Readonly<Record<string, unknown>>;
  readonly providerOptions?: {
    readonly apiKey?: string;
    readonly baseURL?: string;
    /** Hugging Face only: 'chat' (chat completion, the default) or 'text-generation'. */
    readonly task?: 'chat' | 'text-generation';
    /**
     * The HTTP client under the provider's official client: `'fetch'` (the global fetch, the
     * default) or `'node-http'` (node:http with keep-alive; far less CPU per call, for many
     * concurrent calls; see docs/llm.md).
     */
    readonly transport?: 'fetch' | 'node-http';
  };
}

/** A prompt over a model artifact. */
export interface LLMPromptArtifact {
  readonly key: string;
  readonly uri?: string;
  readonly model: ModelArtifact;
  /** `{placeholder}` syntax in `content`. */
  readonly promptTemplate?: readonly { readonly role: string; readonly content: string }[];
  readonly promptLegend?: Readonly<Record<string, { readonly field?: string; readonly description?: string }>>;
  /** Overrides the model's `defaultConfig`. */
  readonly invocationConfig?: Readonly<Record<string, unknown>>;
}
