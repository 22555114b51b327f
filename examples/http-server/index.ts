// serve(): the seed's two-endpoint LLM selector graph over HTTP on loopback, called with fetch —
// the seed's selector at POST /advise, one model at a time at POST /v2/models/<name>/infer
// (a router keyed by v2ModelName), health, /v2/models, an API key and a refused body.
// Runs offline against rxserve's loopback OpenAI-compatible server unless OPENAI_API_KEY is set.
import { pipe } from 'rxjs';
import { createGraph, registerSelector, router, serve, step, v2ModelName } from 'rxserve';
// The seed's selector and LLM (the loopback server unless OPENAI_API_KEY is set): ../seed.ts.
import { MyClassifier, seedLLM } from '../seed.js';

registerSelector('MyClassifier', MyClassifier);
const { server: llm, prompt, description } = await seedLLM();

// The seed's graph: two LLM prompt endpoints in one step, the selector choosing per request.
const graph = createGraph({ name: 'advisors' });
const advisors = graph.modelRunner({
  name: 'advisors',
  models: [
    {
      endpointName: 'finance',
      modelClass: 'LLModel',
      executionMechanism: 'asyncio',
      modelArtifact: prompt('finance', 'financial advisor'),
      resultPath: 'output',
      inputs: ['question'],
      outputs: ['answer'],
    },
    {
      endpointName: 'travel',
      modelClass: 'LLModel',
      executionMechanism: 'asyncio',
      modelArtifact: prompt('travel', 'travel agent'),
      resultPath: 'output',
      inputs: ['question'],
      outputs: ['answer'],
    },
  ],
  selector: 'MyClassifier',
  selectorParams: { models: ['finance', 'travel'] },
  ordered: false, // a server: a fast answer need not wait behind a slow one
});
// /v2/models/<name>/infer asks that one model; any other path goes to the selector as it is.
const only = (name: string) =>
  pipe(
    step((body: object) => ({ ...body, models: [name] }), { name: `only-${name}` }),
    advisors,
  );
const pipeline = router({
  key: (event) => v2ModelName(event) ?? 'advise',
  routes: { advise: advisors, finance: only('finance'), travel: only('travel') },
});

const server = await serve(pipeline, { graph, port: 0, apiKeys: ['demo-key'], timeoutMs: 20_000, metrics: true });
console.log(`LLM: ${description}; rxserve listening on ${server.url}`);

const auth = { authorization: 'Bearer demo-key' };
async function call(method: string, path: string, body?: unknown, headers: Record<string, string> = auth) {
  const response = await fetch(`${server.url}${path}`, {
    method,
    headers: { ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
    ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
  });
  return { status: response.status, id: response.headers.get('x-request-id'), json: (await response.json()) as any };
}

let ok = true;
const check = (label: string, condition: boolean) => {
  if (!condition) {
    ok = false;
    console.log(`  !! unexpected: ${label}`);
  }
};

// Ready once graph.ready() has loaded the models (health routes need no key).
for (let i = 0; (await call('GET', '/v2/health/ready', undefined, {})).status !== 200; i++) {
  if (i > 100) throw new Error('the server never became ready');
  await new Promise((r) => setTimeout(r, 20));
}
const models = await call('GET', '/v2/models');
console.log(`\nGET /v2/models → ${models.status} ${JSON.stringify(models.json)}`);
check('two models listed', models.json.models?.join() === 'finance,travel');
const meta = await call('GET', '/v2/models/finance');
console.log(`GET /v2/models/finance → ${meta.status} ${JSON.stringify(meta.json)}`);

const show = (label: string, answer: { status: number; id: string | null; json: any }) => {
  console.log(`\n${label} → ${answer.status} (x-request-id ${answer.id})`);
  if (answer.json.error) console.log(`  error: ${answer.json.error}`);
  else
    for (const [endpoint, value] of Object.entries(
      answer.json as Record<string, { output: { answer: string; usage: { total_tokens: number } } }>,
    )) {
      console.log(`  [${endpoint}] ${value.output.answer} (${value.output.usage.total_tokens} tokens)`);
      check(`${endpoint} answered`, Boolean(value.output.answer) && value.output.usage.total_tokens > 0);
    }
};

const finance = await call('POST', '/advise', { question: 'How should I start investing 1000 euros?', models: ['finance'] });
show('POST /advise (models: finance)', finance);
check('finance 200', finance.status === 200 && 'finance' in finance.json);

const both = await call('POST', '/advise', { question: 'Can I afford a month in Portugal?', models: ['finance', 'travel'] });
show('POST /advise (models: finance, travel)', both);
check('both 200', both.status === 200 && 'finance' in both.json && 'travel' in both.json);

const infer = await call('POST', '/v2/models/travel/infer', { question: 'What is a good first trip to Japan?' });
show('POST /v2/models/travel/infer', infer);
check('v2 infer 200', infer.status === 200 && 'travel' in infer.json);

const unknown = await call('POST', '/v2/models/comedy/infer', { question: 'Tell me a joke' });
show('POST /v2/models/comedy/infer', unknown);
check('unknown model 404', unknown.status === 404);

const noKey = await call('POST', '/advise', { question: 'hi', models: ['travel'] }, {});
show('POST /advise without the API key', noKey);
check('401 without key', noKey.status === 401);

const text = await call('POST', '/advise', 'not json', { ...auth, 'content-type': 'text/plain' });
show('POST /advise with text/plain', text);
check('415 for text', text.status === 415);

// metrics: true — the graph's Prometheus exposition, behind the API key like every route.
const scrape = await fetch(`${server.url}/metrics`, { headers: auth });
const exposition = await scrape.text();
const financeCalls = /^rxserve_model_requests_total\{endpoint="finance",step="advisors",outcome="success"\} (\d+)$/m.exec(exposition)?.[1];
console.log(`\nGET /metrics → ${scrape.status}; finance calls counted: ${financeCalls}`);
check('metrics count the finance calls', scrape.status === 200 && Number(financeCalls) === 2);
check('metrics need the key', (await fetch(`${server.url}/metrics`)).status === 401);

await server.close(); // answers anything in flight, then closes the graph
await llm?.close();
console.log(`\nclosed: graph closed = ${graph.closed}`);
if (!ok || !graph.closed) {
  console.error('\nunexpected results');
  process.exit(1);
}
