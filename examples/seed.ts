// The seed's pieces, shared by the examples that serve it (llm-selector, http-server, spec):
// MLRun's ModelSelector ported line for line, and the LLM its two prompt endpoints call — the
// OpenAI API when OPENAI_API_KEY is set, else rxserve's loopback OpenAI-compatible server answering
// like the two advisors. Not an example of its own (examples are folders).
import { ModelSelector, llmPromptArtifact, modelArtifact, type ServingEvent } from 'rxserve';
import { startLLMServer, type LLMServer, type LLMServerOptions } from 'rxserve/testing';

type AnswerRequest = Parameters<NonNullable<LLMServerOptions['answer']>>[0];

// MLRun's ModelSelector from the seed, ported line for line.
export class MyClassifier extends ModelSelector {
  private readonly models: string[];
  constructor({ models }: { models: string[] }) {
    super();
    this.models = structuredClone(models);
  }
  override select(event: ServingEvent<{ models?: string[] }>) {
    const currentModels = event.body.models;
    if (currentModels && currentModels.every((m) => this.models.includes(m))) {
      return currentModels;
    }
    return [];
  }
}

/** What the loopback server answers: a financial or a travel advisor's line, by the system prompt. */
export function advisorAnswer({ messages }: AnswerRequest): string {
  const system = String(messages?.[0]?.content ?? '');
  const question = String(messages?.at(-1)?.content ?? '');
  return system.includes('financial')
    ? `Diversify: for "${question}", keep three months of expenses in cash first.`
    : `For "${question}", go in shoulder season and book trains early.`;
}

/** A prompt endpoint's artifact over `model`: "You are a <role>. Answer in two sentences." then the question. */
export function advisorPrompt(model: ReturnType<typeof modelArtifact>, key: string, role: string): ReturnType<typeof llmPromptArtifact> {
  return llmPromptArtifact({
    key,
    model,
    promptTemplate: [
      { role: 'system', content: `You are a ${role}. Answer in two sentences.` },
      { role: 'user', content: '{question}' },
    ],
  });
}

/** The seed's LLM: where it runs, its model artifact and the prompt endpoints' artifacts over it. */
export interface SeedLLM {
  /** OPENAI_API_KEY is set: the OpenAI API answers. */
  readonly live: boolean;
  /** The loopback server when not live (close it at the end). */
  readonly server: LLMServer | undefined;
  readonly gpt: ReturnType<typeof modelArtifact>;
  /** `advisorPrompt` over `gpt`. */
  prompt(key: string, role: string): ReturnType<typeof llmPromptArtifact>;
  /** Where the answers come from, for the example's first line. */
  readonly description: string;
}

export async function seedLLM(): Promise<SeedLLM> {
  const live = Boolean(process.env.OPENAI_API_KEY);
  const server = live ? undefined : await startLLMServer({ answer: advisorAnswer });
  const gpt = modelArtifact({
    key: 'gpt-4o-mini',
    modelUrl: 'openai://gpt-4o-mini',
    defaultConfig: { temperature: 0.3, max_tokens: 120 },
    ...(server ? { providerOptions: { apiKey: 'loopback', baseURL: server.openaiBaseURL } } : {}),
  });
  const prompt = (key: string, role: string) => advisorPrompt(gpt, key, role);
  const description = server ? `the loopback OpenAI-compatible server at ${server.url}` : 'the OpenAI API (OPENAI_API_KEY is set)';
  return { live, server, gpt, prompt, description };
}
