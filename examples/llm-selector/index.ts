// The seed example: two LLM prompt endpoints in one modelRunner step, a selector choosing between
// them per event (finance vs travel), each answering { answer, usage }.
// Runs offline against rxserve's loopback OpenAI-compatible server unless OPENAI_API_KEY is set.
import { from, lastValueFrom, toArray } from 'rxjs';
import {
  ModelSelector,
  asEvents,
  llmPromptArtifact,
  modelArtifact,
  modelRunner,
  registerSelector,
  type ServingEvent,
} from 'rxserve';
import { startLLMServer } from 'rxserve/testing';

// MLRun's ModelSelector from the seed, ported line for line.
class MyClassifier extends ModelSelector {
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
registerSelector('MyClassifier', MyClassifier);

const live = Boolean(process.env.OPENAI_API_KEY);
const server = live
  ? undefined
  : await startLLMServer({
      answer: ({ messages }) => {
        const system = messages?.[0]?.content ?? '';
        const question = messages?.at(-1)?.content ?? '';
        return system.includes('financial')
          ? `Diversify: for "${question}", keep three months of expenses in cash first.`
          : `For "${question}", go in shoulder season and book trains early.`;
      },
    });

const gpt = modelArtifact({
  key: 'gpt-4o-mini',
  modelUrl: 'openai://gpt-4o-mini',
  defaultConfig: { temperature: 0.3, max_tokens: 120 },
  ...(server ? { providerOptions: { apiKey: 'loopback', baseURL: server.openaiBaseURL } } : {}),
});
const prompt = (key: string, role: string) =>
  llmPromptArtifact({
    key,
    model: gpt,
    promptTemplate: [
      { role: 'system', content: `You are a ${role}. Answer in two sentences.` },
      { role: 'user', content: '{question}' },
    ],
  });

const requests = [
  { question: 'How should I start investing 1000 euros?', models: ['finance'] },
  { question: 'What is a good first trip to Japan?', models: ['travel'] },
  { question: 'Can I afford a month in Portugal?', models: ['finance', 'travel'] },
  { question: 'Tell me a joke', models: ['comedy'] }, // not an endpoint: the selector picks none
];

console.log(live ? 'Using the OpenAI API (OPENAI_API_KEY is set).' : `Using the loopback OpenAI-compatible server at ${server!.url}.`);
const out = await lastValueFrom(
  from(requests).pipe(
    asEvents(),
    modelRunner({
      name: 'advisors',
      models: [
        { endpointName: 'finance', modelClass: 'LLModel', executionMechanism: 'asyncio', modelArtifact: prompt('finance', 'financial advisor'), resultPath: 'output' },
        { endpointName: 'travel', modelClass: 'LLModel', executionMechanism: 'asyncio', modelArtifact: prompt('travel', 'travel agent'), resultPath: 'output' },
      ],
      selector: 'MyClassifier',
      selectorParams: { models: ['finance', 'travel'] },
    }),
    toArray(),
  ),
);

let ok = true;
for (const event of out) {
  const input = (event.metadata.modelRunner as { inputs: { question: string } }).inputs.question;
  console.log(`\n> ${input}`);
  if (event.error) {
    ok = false;
    console.log(`  error: ${event.error.message}`);
    continue;
  }
  const endpoints = Object.entries(event.body as Record<string, { output: { answer: string; usage: { prompt_tokens: number; completion_tokens: number; total_tokens: number } } }>);
  if (endpoints.length === 0) console.log('  (the selector chose no endpoint)');
  for (const [endpoint, { output }] of endpoints) {
    console.log(`  [${endpoint}] ${output.answer}`);
    console.log(`  [${endpoint}] usage: ${output.usage.prompt_tokens} prompt + ${output.usage.completion_tokens} completion = ${output.usage.total_tokens} tokens`);
    if (!output.answer || !(output.usage.total_tokens > 0)) ok = false;
  }
}
await server?.close();
if (!ok || out.length !== requests.length) {
  console.error('\nunexpected results');
  process.exit(1);
}
