// serve({ openai }): the official openai client against serve()'s /v1 routes, with LLModel
// endpoints calling the loopback LLM server behind them (docs/design.md §15).
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  LLModel,
  createGraph,
  llmPromptArtifact,
  modelArtifact,
  serve,
  type LLMUsageReport,
  type ModelInit,
  type ServingEvent,
} from '../src/index.js';
import { startLLMServer, type LLMServer } from '../src/testing/index.js';
import type { Server } from '../src/serve/serve.js';

const reports: LLMUsageReport[] = [];
/** An LLModel whose usage reports the test can read. */
class WatchedLLM extends LLModel {
  constructor(init: ModelInit) {
    super(init);
    this.usage$.subscribe((r) => reports.push(r));
  }
}

const LONG = Array.from({ length: 40 }, (_, i) => `word${i}`).join(' ');
let llm: LLMServer;
let http: Server;
let client: OpenAI;
let serverStartedAt = 0;

beforeAll(async () => {
  serverStartedAt = Date.now();
  llm = await startLLMServer({
    // spread over the chunks of a stream: a long answer takes a while
    latencyMs: 400,
    answer: ({ model, messages }) => {
      const last = String(messages?.at(-1)?.content);
      return last === 'long' ? LONG : `${model} says: ${last}`;
    },
  });
  const gpt = modelArtifact({
    key: 'gpt',
    modelUrl: 'openai://gpt-4o-mini',
    defaultConfig: { temperature: 0.2 },
    providerOptions: { apiKey: 'upstream-key', baseURL: llm.openaiBaseURL },
  });
  const graph = createGraph({ name: 'front' });
  const finance = llmPromptArtifact({
    key: 'finance',
    model: gpt,
    promptTemplate: [{ role: 'system', content: 'You advise {client} on finance.' }],
    invocationConfig: { max_tokens: 50 },
  });
  const step = graph.modelRunner({
    name: 'llms',
    models: [
      { endpointName: 'finance', modelClass: WatchedLLM, executionMechanism: 'asyncio', modelArtifact: finance, resultPath: 'output' },
      { endpointName: 'plain', modelClass: WatchedLLM, executionMechanism: 'asyncio', modelArtifact: gpt },
    ],
    // the OpenAI front names the endpoint in body.model
    selector: (event: ServingEvent) => [(event.body as { model: string }).model],
  });
  http = await serve(step, { port: 0, graph, openai: { models: { 'finance-bot': 'finance', 'gpt-plain': 'plain' } } });
  client = new OpenAI({ apiKey: 'unused', baseURL: `${http.url}/v1`, maxRetries: 0 });
});
afterAll(async () => {
  await http?.close();
  await llm?.close();
});

describe('POST /v1/chat/completions', () => {
  it('answers a non-streaming completion through the pipeline, with usage; sampling fields override the config', async () => {
    const since = llm.requests.length;
    const completion = await client.chat.completions.create({
      model: 'gpt-plain',
      messages: [{ role: 'user', content: 'hello' }],
      temperature: 0.9,
    });
    expect(completion.object).toBe('chat.completion');
    expect(completion.model).toBe('gpt-plain');
    expect(completion.choices[0].message).toMatchObject({ role: 'assistant', content: 'gpt-4o-mini says: hello' });
    expect(completion.choices[0].finish_reason).toBe('stop');
    expect(completion.usage!.prompt_tokens).toBeGreaterThan(0);
    expect(completion.usage!.total_tokens).toBe(completion.usage!.prompt_tokens + completion.usage!.completion_tokens);
    const upstream = llm.requests.slice(since);
    expect(upstream).toHaveLength(1);
    expect(upstream[0].body.temperature).toBe(0.9);
  });

  it("sends the prompt template's messages first, filled from the request's metadata, then the request's", async () => {
    const since = llm.requests.length;
    const completion = await client.chat.completions.create({
      model: 'finance-bot',
      messages: [{ role: 'user', content: 'bonds?' }],
      metadata: { client: 'Ada' },
    });
    expect(completion.choices[0].message.content).toBe('gpt-4o-mini says: bonds?');
    const upstream = llm.requests.slice(since)[0].body;
    expect(upstream.messages).toEqual([
      { role: 'system', content: 'You advise Ada on finance.' },
      { role: 'user', content: 'bonds?' },
    ]);
    expect(upstream.max_tokens).toBe(50);
  });

  it('streams chunks as the tokens come, with usage in the last chunk', async () => {
    const stream = await client.chat.completions.create({
      model: 'gpt-plain',
      messages: [{ role: 'user', content: 'stream me please' }],
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks: OpenAI.Chat.Completions.ChatCompletionChunk[] = [];
    for await (const chunk of stream) chunks.push(chunk);
    const text = chunks.map((c) => c.choices[0]?.delta.content ?? '').join('');
    expect(text).toBe('gpt-4o-mini says: stream me please');
    // role chunk, several content chunks, finish chunk, usage chunk
    expect(chunks.filter((c) => c.choices[0]?.delta.content).length).toBeGreaterThan(2);
    expect(chunks.find((c) => c.choices[0]?.finish_reason)?.choices[0].finish_reason).toBe('stop');
    const last = chunks.at(-1)!;
    expect(last.choices).toEqual([]);
    expect(last.usage!.completion_tokens).toBeGreaterThan(0);
    expect(chunks.slice(0, -1).every((c) => c.usage == null)).toBe(true);
  });

  it('each content chunk is a whole chat.completion.chunk; any text survives (quotes, backslashes, newlines, emoji)', async () => {
    const said = 'a "quoted"\\ back\nslash ünï 😀';
    // A second after the server started, so the server's start time and the request's differ.
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, serverStartedAt + 1_100 - Date.now())));
    const sent = Math.floor(Date.now() / 1000);
    const response = await fetch(`${http.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: 'Bearer unused' },
      body: JSON.stringify({ model: 'gpt-plain', messages: [{ role: 'user', content: said }], stream: true }),
    });
    const frames = (await response.text()).split('\n\n').filter((f) => f.startsWith('data: {'));
    const chunks = frames.map((f) => JSON.parse(f.slice(6)) as { id: string; created: number; choices: { delta: { content?: string } }[] });
    const content = chunks.filter((c) => c.choices[0]?.delta.content);
    expect(content.length).toBeGreaterThan(2);
    // The request's own time (not the server's start): the server started well before this test.
    expect(chunks[0].created).toBeGreaterThanOrEqual(sent);
    for (const c of content) {
      expect(c).toEqual({
        id: chunks[0].id,
        object: 'chat.completion.chunk',
        created: chunks[0].created,
        model: 'gpt-plain',
        choices: [{ index: 0, delta: { content: c.choices[0].delta.content }, logprobs: null, finish_reason: null }],
      });
    }
    expect(content.map((c) => c.choices[0].delta.content).join('')).toBe(`gpt-4o-mini says: ${said}`);
  });

  it('an abort mid-stream cancels the upstream call and reports partial usage once', async () => {
    reports.length = 0;
    const stream = await client.chat.completions.create({
      model: 'gpt-plain',
      messages: [{ role: 'user', content: 'long' }],
      stream: true,
    });
    let content = 0;
    for await (const chunk of stream) {
      if (chunk.choices[0]?.delta.content) content++;
      if (content === 2) stream.controller.abort();
    }
    await vi.waitFor(() => expect(reports).toHaveLength(1));
    expect(reports[0]).toMatchObject({ endpointName: 'plain', outcome: 'unsubscribe', usage: { complete: false } });
    expect(reports[0].usage.completion_tokens).toBeGreaterThan(0);
    expect(reports[0].usage.completion_tokens).toBeLessThan(40);
    await vi.waitFor(() => expect(http.inFlight).toBe(0));
    await new Promise((resolve) => setTimeout(resolve, 500)); // the whole answer would be done by now
    expect(reports).toHaveLength(1);
  });

  it("an unknown model is a 404 in OpenAI's error shape", async () => {
    const error = await client.chat.completions
      .create({ model: 'nope', messages: [{ role: 'user', content: 'x' }] })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OpenAI.NotFoundError);
    expect(error).toMatchObject({ status: 404, code: 'model_not_found', type: 'invalid_request_error', param: 'model' });
    expect((error as Error).message).toMatch(/'nope' does not exist; models: 'finance-bot', 'gpt-plain'/);
  });

  it('bad input is a 400 naming the field, and a missing placeholder is a 400 from the model', async () => {
    const noMessages = await client.chat.completions.create({ model: 'gpt-plain', messages: 'hi' as never }).catch((e: unknown) => e);
    expect(noMessages).toBeInstanceOf(OpenAI.BadRequestError);
    expect(noMessages).toMatchObject({ status: 400, param: 'messages' });
    const noMetadata = await client.chat.completions
      .create({ model: 'finance-bot', messages: [{ role: 'user', content: 'x' }] })
      .catch((e: unknown) => e);
    expect(noMetadata).toBeInstanceOf(OpenAI.BadRequestError);
    expect((noMetadata as Error).message).toMatch(/placeholder \{client\}/);
    // the server still answers
    const ok = await client.chat.completions.create({ model: 'gpt-plain', messages: [{ role: 'user', content: 'still there' }] });
    expect(ok.choices[0].message.content).toBe('gpt-4o-mini says: still there');
  });
});

describe('GET /v1/models', () => {
  it('lists the public names', async () => {
    const ids: string[] = [];
    for await (const model of client.models.list()) ids.push(model.id);
    expect(ids).toEqual(['finance-bot', 'gpt-plain']);
    expect((await client.models.retrieve('finance-bot')).id).toBe('finance-bot');
  });

  it('serve() refuses a bad openai option with a ConfigError naming it', async () => {
    await expect(serve((e) => e, { port: 0, openai: { models: { x: 1 } } as never })).rejects.toThrow(/openai/);
    // The front finds answers through the graph: without one it is refused, naming both.
    await expect(serve((e) => e, { port: 0, openai: { models: { x: 'y' } } })).rejects.toThrow(/serve\.openai.*a graph option too/s);
  });

  it("the answer is the endpoint's own output: a request's metadata cannot pose as it", async () => {
    // finance has resultPath 'output'; the request's metadata lands in the same body.
    const completion = await client.chat.completions.create({
      model: 'finance-bot',
      messages: [{ role: 'user', content: 'bonds?' }],
      metadata: { client: 'Ada', answer: 'forged at the root', deep: { answer: 'forged below' } } as never,
    });
    expect(completion.choices[0].message.content).toBe('gpt-4o-mini says: bonds?');
  });
});
