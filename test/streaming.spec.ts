// Partial results end to end (DESIGN §15): ctx.emit in process, through shared models and worker
// pools; LLModel `stream: true` against the loopback LLM server.
import { firstValueFrom, from, lastValueFrom, toArray } from 'rxjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createGraph,
  llmPromptArtifact,
  modelArtifact,
  modelRunner,
  toEvent,
  type ModelEntry,
  type PartialResult,
} from '../src/index.js';
import { startLLMServer, type LLMServer } from '../src/testing/index.js';

let server: LLMServer;
beforeAll(async () => {
  server = await startLLMServer({ answer: ({ messages }) => `answer to ${String(messages?.at(-1)?.content)} in several words` });
});
afterAll(async () => {
  await server.close();
});

const gpt = () =>
  modelArtifact({
    key: 'gpt',
    uri: 'store://models/gpt',
    modelUrl: 'openai://gpt-4o-mini',
    providerOptions: { apiKey: 'test-key', baseURL: server.openaiBaseURL },
  });

describe('LLModel stream: true in modelRunner', () => {
  it('emits { delta } per chunk to the event partials; the result is still { answer, usage }', async () => {
    const entry: ModelEntry = {
      endpointName: 'chat',
      modelClass: 'LLModel',
      executionMechanism: 'asyncio',
      modelArtifact: gpt(),
      params: { stream: true },
    };
    const partials: PartialResult[] = [];
    const event = toEvent({ messages: [{ role: 'user', content: 'hello' }] }, { partials: (p) => partials.push(p) });
    const out = await firstValueFrom(from([event]).pipe(modelRunner({ models: [entry] })));
    const result = out.body as { answer: string; usage: { completion_tokens: number } };
    expect(result.answer).toBe('answer to hello in several words');
    expect(result.usage.completion_tokens).toBeGreaterThan(0);
    expect(partials.length).toBeGreaterThan(2);
    expect(partials.every((p) => p.endpoint === 'chat')).toBe(true);
    expect(partials.map((p) => (p.data as { delta: string }).delta).join('')).toBe(result.answer);
    // The server was asked to stream, and the output event still left once.
    expect(server.requests.at(-1)!.body.stream).toBe(true);
  });

  it("the prompt's invocationConfig can ask for streaming; without a sink the partials are dropped", async () => {
    const prompt = llmPromptArtifact({
      key: 'p',
      model: gpt(),
      promptTemplate: [{ role: 'user', content: '{q}' }],
      invocationConfig: { stream: true },
    });
    const entry: ModelEntry = { endpointName: 'p', modelClass: 'LLModel', executionMechanism: 'asyncio', modelArtifact: prompt };
    const out = await firstValueFrom(from([toEvent({ q: 'x' })]).pipe(modelRunner({ models: [entry] })));
    expect((out.body as { answer: string }).answer).toBe('answer to x in several words');
    expect(server.requests.at(-1)!.body.stream).toBe(true);
    expect(server.requests.at(-1)!.body).not.toHaveProperty('stream', false);
  });
});

describe('shared models', () => {
  it("two proxies of one shared model called at once: each event gets only its own proxy's partials", async () => {
    const graph = createGraph({ name: 'g' });
    const base = gpt();
    graph.addSharedModel({ name: 'llm', modelClass: 'LLModel', executionMechanism: 'asyncio', modelArtifact: base, params: { stream: true } });
    const proxy = (key: string) =>
      graph.sharedModelProxy({
        endpointName: key,
        modelArtifact: llmPromptArtifact({ key, model: base, promptTemplate: [{ role: 'user', content: `${key}: {q}` }] }),
      });
    const a = graph.modelRunner({ models: [proxy('alpha')] });
    const b = graph.modelRunner({ models: [proxy('beta')] });
    await graph.ready();
    const seen: Record<string, PartialResult[]> = { one: [], two: [] };
    const run = (step: typeof a, id: string) =>
      lastValueFrom(from([toEvent({ q: id }, { id, partials: (p) => seen[id].push(p) })]).pipe(step, toArray()));
    const [outA, outB] = await Promise.all([run(a, 'one'), run(b, 'two')]);
    expect((outA[0].body as { answer: string }).answer).toBe('answer to alpha: one in several words');
    expect((outB[0].body as { answer: string }).answer).toBe('answer to beta: two in several words');
    expect(seen.one.every((p) => p.endpoint === 'alpha')).toBe(true);
    expect(seen.two.every((p) => p.endpoint === 'beta')).toBe(true);
    expect(seen.one.map((p) => (p.data as { delta: string }).delta).join('')).toBe('answer to alpha: one in several words');
    expect(seen.two.map((p) => (p.data as { delta: string }).delta).join('')).toBe('answer to beta: two in several words');
    await graph.close();
  });
});
