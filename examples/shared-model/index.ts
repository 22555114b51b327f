// One shared model, two modelRunner steps, three proxies: the model is loaded once, in one
// dedicated process, and every proxy is its own endpoint with its own prompt and labels.
import { from, lastValueFrom, toArray } from 'rxjs';
import { asEvents, createGraph, step } from 'rxserve';

const graph = createGraph({ name: 'assistants' });
const model = { key: 'assistant', uri: 'store://models/assistant', modelUrl: 'mock://' };
const prompt = (key: string, content: string) => ({
  key,
  uri: `store://prompts/${key}`,
  model, // proxies find the shared model through their prompt's parent model URI
  promptTemplate: [{ role: 'user', content }],
});

graph.addSharedModel({
  name: 'assistant',
  modelClass: { module: new URL('./models.mjs', import.meta.url).href, export: 'Assistant' },
  executionMechanism: 'dedicated_process',
  modelArtifact: model,
});
const finance = graph.sharedModelProxy({
  endpointName: 'finance',
  modelArtifact: prompt('finance', 'As a banker: {question}'),
  labels: { domain: 'finance' },
});
const travel = graph.sharedModelProxy({
  endpointName: 'travel',
  modelArtifact: prompt('travel', 'As a travel agent: {question}'),
  labels: { domain: 'travel' },
});
const review = graph.sharedModelProxy({ endpointName: 'review', sharedModelName: 'assistant', labels: { domain: 'qa' } });

// Steps bound to the graph: their endpoint names are registered (unique across the graph) now.
const advisors = graph.modelRunner({ name: 'advisors', models: [finance, travel] });
const qa = graph.modelRunner({ name: 'qa', models: [review] });

const started = performance.now();
await graph.ready(); // loads every model once (the shared one in its own process), before traffic
console.log(`graph ready in ${(performance.now() - started).toFixed(0)} ms; endpoints:`);
for (const { endpointName, where } of graph.endpointNames()) console.log(`  ${endpointName.padEnd(8)} ${where}`);

const out = await lastValueFrom(
  from([{ question: 'Should I save for a trip to Lisbon?' }]).pipe(
    asEvents(),
    advisors,
    step((body: Record<string, { answer: string }>) => ({ question: `${body.finance.answer} / ${body.travel.answer}` })),
    qa,
    toArray(),
  ),
);
const result = out[0].body as { answer: string; servedBy: { pid: number; loads: number; origin: string } };
console.log(`\nreview → ${result.answer}`);
console.log(
  `served by pid ${result.servedBy.pid} (this process is ${process.pid}), model loaded ${result.servedBy.loads} time(s), origin '${result.servedBy.origin}'`,
);

await graph.close(); // closes the model and ends its process
if (result.servedBy.loads !== 1 || result.servedBy.origin !== 'review' || !result.answer.includes('As a banker')) {
  console.error('unexpected result');
  process.exit(1);
}
