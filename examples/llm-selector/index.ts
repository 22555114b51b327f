// The seed example: two LLM prompt endpoints in one modelRunner step, a selector choosing between
// them per event (finance vs travel), each answering { answer, usage }.
// Runs offline against rxserve's loopback OpenAI-compatible server unless OPENAI_API_KEY is set.
import { from, lastValueFrom, toArray } from 'rxjs';
import { asEvents, modelRunner, registerSelector } from 'rxserve';
// The seed's selector and LLM (the loopback server unless OPENAI_API_KEY is set): ../seed.ts.
import { MyClassifier, seedLLM } from '../seed.js';

registerSelector('MyClassifier', MyClassifier);
const { server, prompt, description } = await seedLLM();

const requests = [
  { question: 'How should I start investing 1000 euros?', models: ['finance'] },
  { question: 'What is a good first trip to Japan?', models: ['travel'] },
  { question: 'Can I afford a month in Portugal?', models: ['finance', 'travel'] },
  { question: 'Tell me a joke', models: ['comedy'] }, // not an endpoint: the selector picks none
];

console.log(`Using ${description}.`);
const out = await lastValueFrom(
  from(requests).pipe(
    asEvents(),
    modelRunner({
      name: 'advisors',
      models: [
        {
          endpointName: 'finance',
          modelClass: 'LLModel',
          executionMechanism: 'asyncio',
          modelArtifact: prompt('finance', 'financial advisor'),
          resultPath: 'output',
        },
        {
          endpointName: 'travel',
          modelClass: 'LLModel',
          executionMechanism: 'asyncio',
          modelArtifact: prompt('travel', 'travel agent'),
          resultPath: 'output',
        },
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
  const endpoints = Object.entries(
    event.body as Record<
      string,
      { output: { answer: string; usage: { prompt_tokens: number; completion_tokens: number; total_tokens: number } } }
    >,
  );
  if (endpoints.length === 0) console.log('  (the selector chose no endpoint)');
  for (const [endpoint, { output }] of endpoints) {
    console.log(`  [${endpoint}] ${output.answer}`);
    console.log(
      `  [${endpoint}] usage: ${output.usage.prompt_tokens} prompt + ${output.usage.completion_tokens} completion = ${output.usage.total_tokens} tokens`,
    );
    if (!output.answer || !(output.usage.total_tokens > 0)) ok = false;
  }
}
await server?.close();
if (!ok || out.length !== requests.length) {
  console.error('\nunexpected results');
  process.exit(1);
}
