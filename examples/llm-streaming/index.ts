// Token streaming (docs/streaming.md). Part 1: an LLModel on its own — streamed answers over the
// default transport (undici's request() on the global dispatcher, docs/llm.md), usage reported once per call (also when the caller stops reading), and the
// rxserve/llm helpers for counting tokens. Part 2: the seed's prompt endpoints (finance, travel)
// with `stream: true` in a graph, streamed to the terminal through the invoker (client.stream),
// then served by serve() with its OpenAI-compatible /v1 and called with the official openai client
// (streaming and not). Runs offline against rxserve's loopback OpenAI-compatible server.
import OpenAI from 'openai';
import { lastValueFrom, take, tap, toArray } from 'rxjs';
import { LLModel, createGraph, invoker, llmPromptArtifact, modelArtifact, serve, type LLMUsageReport, type ServingEvent } from 'rxserve';
import { countTextTokens, estimateUsage } from 'rxserve/llm';
import { startLLMServer } from 'rxserve/testing';
import { advisorAnswer, advisorPrompt } from '../seed.js';

const server = await startLLMServer({ latencyMs: 200 });
try {
  const advisor = new LLModel({
    name: 'advisor',
    artifact: llmPromptArtifact({
      key: 'advisor',
      model: modelArtifact({
        key: 'gpt-4o-mini',
        modelUrl: 'openai://gpt-4o-mini',
        providerOptions: { apiKey: 'loopback', baseURL: server.openaiBaseURL },
      }),
      promptTemplate: [
        { role: 'system', content: 'You are a financial advisor.' },
        { role: 'user', content: '{question}' },
      ],
    }),
  });
  const reports: LLMUsageReport[] = [];
  advisor.usage$.subscribe((r) => reports.push(r));

  // No `await advisor.load()`: the first call loads the model.
  let streamed = '';
  const events = await lastValueFrom(advisor.predictStream({ question: 'Should I buy index funds?' }, { eventId: 'q1' }).pipe(toArray()));
  for (const e of events) if (e.type === 'chunk') streamed += e.text;
  const final = events.at(-1);
  if (final?.type !== 'final' || final.answer !== streamed) throw new Error('the final answer should be the chunks joined');
  console.log(`answer (${events.length - 1} chunks): ${final.answer}`);
  console.log('usage reported by the server:', final.usage);

  // Stop reading after two chunks: the request is aborted and the call reported once, as 'unsubscribe'.
  await lastValueFrom(
    advisor.predictStream({ question: 'And bonds, in a long answer please?' }, { eventId: 'q2' }).pipe(take(2), toArray()),
  );
  await new Promise((resolve) => setTimeout(resolve, 300));
  console.log(
    'usage$ reports:',
    reports.map(
      (r) => `${r.eventId} ${r.outcome} ${r.usage.total_tokens} tokens${r.usage.complete === false ? ' (partial, estimated)' : ''}`,
    ),
  );
  if (reports.map((r) => r.outcome).join() !== 'success,unsubscribe')
    throw new Error(`expected one success and one unsubscribe, got ${reports.map((r) => r.outcome)}`);

  // rxserve/llm: the same tokenizer rxserve estimates with.
  const estimate = estimateUsage([{ role: 'user', content: 'Should I buy index funds?' }], final.answer);
  console.log(`countTextTokens(answer) = ${countTextTokens(final.answer)}; estimateUsage:`, estimate);
  if (estimate.total_tokens !== estimate.prompt_tokens + estimate.completion_tokens) throw new Error('total = prompt + completion');
  advisor.close();
} finally {
  await server.close();
}

// ---- Part 2: the seed's prompt endpoints, streamed through the invoker and over OpenAI's wire format.
// The seed's advisors (../seed.ts), on a loopback server of their own that streams a little slower.
const loopback = await startLLMServer({ latencyMs: 150, answer: advisorAnswer });
const gpt = modelArtifact({
  key: 'gpt-4o-mini',
  modelUrl: 'openai://gpt-4o-mini',
  defaultConfig: { temperature: 0.3, max_tokens: 120 },
  providerOptions: { apiKey: 'loopback', baseURL: loopback.openaiBaseURL },
});
const prompt = (key: string, role: string) => advisorPrompt(gpt, key, role);
const graph = createGraph({ name: 'advisors' });
// One LLModel loaded once, streaming; each prompt endpoint is a proxy of it.
graph.addSharedModel({ name: 'llm', modelClass: 'LLModel', executionMechanism: 'asyncio', modelArtifact: gpt, params: { stream: true } });
const step = graph.modelRunner({
  name: 'advisors',
  models: [
    graph.sharedModelProxy({ endpointName: 'finance', modelArtifact: prompt('finance', 'financial advisor') }),
    graph.sharedModelProxy({ endpointName: 'travel', modelArtifact: prompt('travel', 'travel agent') }),
  ],
  // The seed picks endpoints by body.models; the OpenAI front names one in body.model.
  selector: (event: ServingEvent) => {
    const body = event.body as { models?: string[]; model?: string };
    return body.models ?? (body.model ? [body.model] : []);
  },
});

let failed = false;
const check = (ok: boolean, what: string) => {
  if (!ok) {
    failed = true;
    console.error(`unexpected: ${what}`);
  }
};
try {
  // Through the invoker: partials as they come, then the result.
  const client = invoker(step, { graph });
  for (const [endpoint, question] of [
    ['finance', 'How should I start investing 1000 euros?'],
    ['travel', 'What is a good first trip to Japan?'],
  ] as const) {
    process.stdout.write(`\n[${endpoint}] `);
    let streamed = '';
    const messages = await lastValueFrom(
      client.stream({ question, models: [endpoint] }).pipe(
        tap((m) => {
          if (m.type === 'partial') {
            const { delta } = m.data as { delta: string };
            streamed += delta;
            process.stdout.write(delta);
          }
        }),
        toArray(),
      ),
    );
    const result = messages.at(-1);
    // Two endpoints in the step: the body is keyed by endpoint name (MLRun's merge).
    const answer = result?.type === 'result' ? (result.event.body as Record<string, { answer: string }>)[endpoint].answer : undefined;
    process.stdout.write(`\n  (${messages.length - 1} partials; the result's answer is the partials joined: ${answer === streamed})\n`);
    check(answer === streamed && messages.length > 2, `the streamed answer of ${endpoint}`);
  }

  // The same step over HTTP, with the OpenAI-compatible routes; the official client calls it.
  const http = await serve(step, { port: 0, graph, openai: { models: { 'finance-advisor': 'finance', 'travel-agent': 'travel' } } });
  try {
    const openai = new OpenAI({ apiKey: 'unused', baseURL: `${http.url}/v1` });
    const listed = [];
    for await (const model of openai.models.list()) listed.push(model.id);
    console.log(`\nGET /v1/models: ${listed.join(', ')}`);
    // The prompt's {question} comes from the request's metadata.
    const completion = await openai.chat.completions.create({
      model: 'travel-agent',
      messages: [],
      metadata: { question: 'Where should I go in October?' },
    });
    console.log(`[travel-agent] ${completion.choices[0].message.content}`);
    console.log(`  usage: ${completion.usage?.prompt_tokens} prompt + ${completion.usage?.completion_tokens} completion tokens`);
    check(Boolean(completion.choices[0].message.content?.includes('October')), 'the non-streaming completion');

    process.stdout.write('[finance-advisor, streamed] ');
    const stream = await openai.chat.completions.create({
      model: 'finance-advisor',
      messages: [],
      metadata: { question: 'Is gold a good hedge?' },
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = '';
    let usage: OpenAI.CompletionUsage | null | undefined;
    for await (const chunk of stream) {
      const delta = chunk.choices[0]?.delta.content ?? '';
      text += delta;
      process.stdout.write(delta);
      if (chunk.usage) usage = chunk.usage;
    }
    console.log(`\n  usage (last chunk): ${usage?.total_tokens} tokens`);
    check(text.includes('gold') && (usage?.total_tokens ?? 0) > 0, 'the streamed completion');
  } finally {
    await http.close(); // closes the graph too
  }
} finally {
  await graph.close();
  await loopback.close();
}
if (failed) process.exit(1);
