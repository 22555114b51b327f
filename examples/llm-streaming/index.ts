// An LLModel used on its own: streamed answers over the undici transport, usage reported once per
// call (also when the caller stops reading), and the rxserve/llm helpers for counting tokens.
// Runs offline against rxserve's loopback OpenAI-compatible server.
import { lastValueFrom, take, toArray } from 'rxjs';
import { LLModel, llmPromptArtifact, modelArtifact, type LLMUsageReport } from 'rxserve';
import { countTextTokens, estimateUsage } from 'rxserve/llm';
import { startLLMServer } from 'rxserve/testing';

const server = await startLLMServer({ latencyMs: 200 });
try {
  const advisor = new LLModel({
    name: 'advisor',
    artifact: llmPromptArtifact({
      key: 'advisor',
      model: modelArtifact({
        key: 'gpt-4o-mini',
        modelUrl: 'openai://gpt-4o-mini',
        providerOptions: { apiKey: 'loopback', baseURL: server.openaiBaseURL, transport: 'node-http' },
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
  await lastValueFrom(advisor.predictStream({ question: 'And bonds, in a long answer please?' }, { eventId: 'q2' }).pipe(take(2), toArray()));
  await new Promise((resolve) => setTimeout(resolve, 300));
  console.log('usage$ reports:', reports.map((r) => `${r.eventId} ${r.outcome} ${r.usage.total_tokens} tokens${r.usage.complete === false ? ' (partial, estimated)' : ''}`));
  if (reports.map((r) => r.outcome).join() !== 'success,unsubscribe') throw new Error(`expected one success and one unsubscribe, got ${reports.map((r) => r.outcome)}`);

  // rxserve/llm: the same tokenizer rxserve estimates with.
  const estimate = estimateUsage([{ role: 'user', content: 'Should I buy index funds?' }], final.answer);
  console.log(`countTextTokens(answer) = ${countTextTokens(final.answer)}; estimateUsage:`, estimate);
  if (estimate.total_tokens !== estimate.prompt_tokens + estimate.completion_tokens) throw new Error('total = prompt + completion');
  advisor.close();
} finally {
  await server.close();
}
