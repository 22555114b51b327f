// Upstream LLM failures keep their meaning (docs/design.md §10, issue 22 item 5): a provider's 429 is a
// 429 with its Retry-After unchanged, 5xx or a failed connection after the retries a 502, a
// provider timeout a 504 — on plain POST, on /v1 in OpenAI's error shape, and for streamed
// requests before their first token. Real sockets: serve() in front, the loopback LLM server behind.
import OpenAI from 'openai';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  ModelRunnerError,
  ProviderError,
  createGraph,
  llmPromptArtifact,
  modelArtifact,
  serve,
  type ModelEntry,
  type ServingEvent,
} from '../src/index.js';
import type { Server } from '../src/serve/serve.js';
import { retryAfterOf, statusOf } from '../src/serve/status.js';
import { startLLMServer, type LLMServer } from '../src/testing/index.js';

let llm: LLMServer;
let http: Server;

const OPENAI = '/v1/chat/completions';
const HF = '/hf/v1/chat/completions';
const RETRY_AT = 'Wed, 21 Oct 2015 07:28:00 GMT';

const entry = (endpointName: string, params: Record<string, unknown>, hf = false): ModelEntry => ({
  endpointName,
  modelClass: 'LLModel',
  executionMechanism: 'asyncio',
  modelArtifact: llmPromptArtifact({
    key: endpointName,
    model: hf
      ? modelArtifact({
          key: 'hf',
          modelUrl: 'huggingface://org/model',
          providerOptions: { apiKey: 'hf-key', baseURL: llm.huggingfaceURL },
        })
      : modelArtifact({
          key: 'gpt',
          modelUrl: 'openai://gpt-4o-mini',
          providerOptions: { apiKey: 'upstream-key', baseURL: llm.openaiBaseURL },
        }),
    promptTemplate: [{ role: 'user', content: '{question}' }],
  }),
  resultPath: 'output',
  params: { retryBaseMs: 1, ...params },
});

beforeAll(async () => {
  llm = await startLLMServer({ answer: ({ messages }) => `answer to ${String(messages?.at(-1)?.content)} in several words` });
  const graph = createGraph({ name: 'upstream' });
  const step = graph.modelRunner({
    name: 'llms',
    models: [
      // no retries: a 429 goes back at once, with the provider's Retry-After
      entry('direct', { maxRetries: 0 }),
      entry('retrying', { maxRetries: 2 }),
      entry('slow', { maxRetries: 1, providerTimeoutMs: 150 }),
      entry('streamer', { maxRetries: 1, stream: true, providerTimeoutMs: 150 }),
      entry('hf', { maxRetries: 0 }, true),
    ],
    selector: (event: ServingEvent) => [event.path === OPENAI ? (event.body as { model: string }).model : (event.path ?? '/').slice(1)],
  });
  http = await serve(step, {
    port: 0,
    graph,
    openai: { models: { direct: 'direct', retrying: 'retrying', slow: 'slow', streamer: 'streamer' } },
  });
});
afterAll(async () => {
  await http?.close();
  await llm?.close();
});
beforeEach(() => llm.clearFaults());

async function post(path: string, body: unknown, headers: Record<string, string> = {}) {
  const response = await fetch(`${http.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
  const text = await response.text();
  let json: Record<string, unknown> | undefined;
  try {
    json = JSON.parse(text) as Record<string, unknown>;
  } catch {
    json = undefined;
  }
  return { status: response.status, headers: response.headers, text, json };
}

/** How many requests the loopback server received while `run` ran. */
async function upstreamCount(run: () => Promise<unknown>): Promise<number> {
  const since = llm.requests.length;
  await run();
  return llm.requests.length - since;
}

const SSE = { accept: 'text/event-stream' };

describe('plain POST', () => {
  // Both providers alike, one table: the upstream path each calls, the endpoint serving it, its error text.
  it.each([
    { provider: 'openai', path: OPENAI, endpoint: '/direct', error: /ProviderError: openai: HTTP 429: 429 injected fault 429/ },
    { provider: 'huggingface', path: HF, endpoint: '/hf', error: /ProviderError: huggingface.*HTTP 429/ },
  ])("$provider: a provider's 429 is a 429 with its Retry-After unchanged", async ({ path, endpoint, error }) => {
    for (const retryAfter of ['7', RETRY_AT]) {
      llm.fault({ path, status: 429, headers: { 'retry-after': retryAfter } });
      const reply = await post(endpoint, { question: 'q' });
      expect(reply.status).toBe(429);
      expect(reply.headers.get('retry-after')).toBe(retryAfter);
      expect(reply.json!.error).toMatch(error);
    }
    // no Retry-After from the provider: none made up
    llm.fault({ path, status: 429 });
    const bare = await post(endpoint, { question: 'q' });
    expect([bare.status, bare.headers.get('retry-after')]).toEqual([429, null]);
  });

  it('5xx on every attempt is a 502 after the retries (3 attempts); one 5xx is retried away', async () => {
    llm.fault({ path: OPENAI, status: 503, times: 3 });
    let reply!: Awaited<ReturnType<typeof post>>;
    expect(await upstreamCount(async () => (reply = await post('/retrying', { question: 'q' })))).toBe(3);
    expect(reply.status).toBe(502);
    expect(reply.json!.error).toMatch(/HTTP 503.*\(after 3 attempts\)/);
    llm.fault({ path: OPENAI, status: 500 });
    const healed = await post('/retrying', { question: 'q' });
    expect(healed.status).toBe(200);
  });

  it('a failed connection (the provider drops it) is a 502 after the retries', async () => {
    llm.fault({ path: OPENAI, dropAfterChunks: 0, times: 3 });
    let reply!: Awaited<ReturnType<typeof post>>;
    expect(await upstreamCount(async () => (reply = await post('/retrying', { question: 'q' })))).toBe(3);
    expect(reply.status).toBe(502);
    expect(reply.json!.error).toMatch(/ProviderError: openai: connection/);
  });

  it('a provider timeout is a 504: no answer within params.providerTimeoutMs (each attempt), or the provider’s own 504', async () => {
    llm.fault({ path: OPENAI, delayMs: 1_000, times: 2 });
    const t0 = Date.now();
    let reply!: Awaited<ReturnType<typeof post>>;
    expect(await upstreamCount(async () => (reply = await post('/slow', { question: 'q' })))).toBe(2);
    expect(reply.status).toBe(504);
    expect(reply.json!.error).toMatch(/no answer within 150 ms \(params\.providerTimeoutMs\) \(after 2 attempts\)/);
    expect(Date.now() - t0).toBeLessThan(900);
    llm.fault({ path: OPENAI, status: 504 });
    expect((await post('/direct', { question: 'q' })).status).toBe(504);
  });

  it('the provider refusing the request (400) stays a 400; refusing the server (401) is a 502', async () => {
    llm.fault({ path: OPENAI, status: 400 });
    expect((await post('/direct', { question: 'q' })).status).toBe(400);
    llm.fault({ path: OPENAI, status: 401 });
    expect((await post('/direct', { question: 'q' })).status).toBe(502);
  });
});

describe('Server-Sent Events (Accept: text/event-stream)', () => {
  it('a failure before the first token is an ordinary error reply with its status, not an opened stream', async () => {
    // (a date in the past: rxserve's own retry waits 0 ms, and the header is passed on as it was)
    llm.fault({ path: OPENAI, status: 429, headers: { 'retry-after': RETRY_AT }, times: 2 });
    const limited = await post('/streamer', { question: 'q' }, SSE);
    expect(limited.status).toBe(429);
    expect(limited.headers.get('content-type')).toMatch(/^application\/json/);
    expect(limited.headers.get('retry-after')).toBe(RETRY_AT);
    expect(limited.json!.error).toMatch(/^ModelRunnerError: .*ProviderError: openai: HTTP 429/);
    llm.fault({ path: OPENAI, delayMs: 1_000, times: 2 });
    const slow = await post('/streamer', { question: 'q' }, SSE);
    expect(slow.status).toBe(504);
    expect(slow.json!.error).toMatch(/no first token within 150 ms/);
  });

  it('a stream that fails after its first token stays a stream: the result event carries the status', async () => {
    llm.fault({ path: OPENAI, dropAfterChunks: 2 });
    const reply = await post('/streamer', { question: 'q' }, SSE);
    expect(reply.status).toBe(200);
    expect(reply.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const frames = reply.text.split('\n\n').filter((f) => f.startsWith('event: '));
    expect(frames.filter((f) => f.startsWith('event: partial'))).toHaveLength(2);
    const result = JSON.parse(frames.at(-1)!.split('data: ')[1]) as { error: string; status: number };
    expect(result).toMatchObject({ status: 502, error: expect.stringMatching(/after the first token: not retried/) });
  });

  it('a client that leaves before the first token cancels the call and its upstream request', async () => {
    llm.fault({ path: OPENAI, delayMs: 600 });
    const controller = new AbortController();
    const since = llm.requests.length;
    const pending = fetch(`${http.url}/retrying`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...SSE },
      body: '{"question":"q"}',
      signal: controller.signal,
    }).catch((e: unknown) => e);
    await vi.waitFor(() => expect(llm.requests.length).toBe(since + 1));
    controller.abort();
    expect(await pending).toMatchObject({ name: 'AbortError' });
    await vi.waitFor(() => expect(http.inFlight).toBe(0));
    await new Promise((resolve) => setTimeout(resolve, 700));
    expect(llm.requests.length).toBe(since + 1); // not retried after the abort
    expect((await post('/retrying', { question: 'still here' }, SSE)).status).toBe(200);
  });

  it('a stream that succeeds is unchanged: partials, then the result', async () => {
    const reply = await post('/streamer', { question: 'q' }, SSE);
    expect(reply.status).toBe(200);
    expect(reply.text).toMatch(/^: rxserve event stream\n\nevent: partial\n/);
    expect(reply.text).toMatch(/event: result\ndata: \{"streamer":\{"question":"q","output":\{"answer":"answer to q in several words"/);
  });
});

describe('/v1/chat/completions (the official openai client)', () => {
  const noRetries = () => new OpenAI({ apiKey: 'unused', baseURL: `${http.url}/v1`, maxRetries: 0 });
  const ask = { messages: [{ role: 'user' as const, content: 'hi' }], metadata: { question: 'q' } };

  it("429 → RateLimitError with the provider's Retry-After; 502 and 504 → InternalServerError; all in OpenAI's error shape", async () => {
    const client = noRetries();
    llm.fault({ path: OPENAI, status: 429, headers: { 'retry-after': '7' } });
    const limited = await client.chat.completions.create({ model: 'direct', ...ask }).catch((e: unknown) => e);
    expect(limited).toBeInstanceOf(OpenAI.RateLimitError);
    expect(limited).toMatchObject({ status: 429, type: 'requests', code: 'rate_limit_exceeded' });
    expect((limited as InstanceType<typeof OpenAI.APIError>).headers?.get('retry-after')).toBe('7');

    llm.fault({ path: OPENAI, status: 500, times: 3 });
    const failed = await client.chat.completions.create({ model: 'retrying', ...ask }).catch((e: unknown) => e);
    expect(failed).toBeInstanceOf(OpenAI.InternalServerError);
    expect(failed).toMatchObject({ status: 502, type: 'server_error', code: 'upstream_error' });

    llm.fault({ path: OPENAI, delayMs: 1_000, times: 2 });
    const slow = await client.chat.completions.create({ model: 'slow', ...ask }).catch((e: unknown) => e);
    expect(slow).toBeInstanceOf(OpenAI.InternalServerError);
    expect(slow).toMatchObject({ status: 504, type: 'server_error', code: 'timeout' });
  });

  it('so an OpenAI client retries them and gets its answer (it never retries a 400)', async () => {
    const client = new OpenAI({ apiKey: 'unused', baseURL: `${http.url}/v1`, maxRetries: 2 });
    llm.fault({ path: OPENAI, status: 429, headers: { 'retry-after': '0' } });
    const after429 = await client.chat.completions.create({ model: 'direct', ...ask });
    expect(after429.choices[0].message.content).toBe('answer to hi in several words');
    llm.fault({ path: OPENAI, status: 503 });
    const after503 = await client.chat.completions.create({ model: 'direct', ...ask });
    expect(after503.choices[0].message.content).toBe('answer to hi in several words');
  });

  it('stream: true failing before the first token gets the status and the error, not an opened stream', async () => {
    llm.fault({ path: OPENAI, status: 429, headers: { 'retry-after': RETRY_AT }, times: 2 });
    const raw = await post('/v1/chat/completions', { model: 'streamer', ...ask, stream: true });
    expect(raw.status).toBe(429);
    expect(raw.headers.get('content-type')).toMatch(/^application\/json/);
    expect(raw.headers.get('retry-after')).toBe(RETRY_AT);
    expect(raw.json).toMatchObject({
      error: { type: 'requests', code: 'rate_limit_exceeded', message: expect.stringMatching(/HTTP 429/) },
    });

    llm.fault({ path: OPENAI, status: 502, times: 2 });
    const failed = await noRetries()
      .chat.completions.create({ model: 'streamer', ...ask, stream: true })
      .catch((e: unknown) => e);
    expect(failed).toBeInstanceOf(OpenAI.InternalServerError);
    expect(failed).toMatchObject({ status: 502 });

    llm.fault({ path: OPENAI, delayMs: 1_000, times: 2 });
    const slow = await post('/v1/chat/completions', { model: 'streamer', ...ask, stream: true });
    expect(slow.status).toBe(504);
  });

  it('stream: true failing after the first token is an error event on the opened stream', async () => {
    llm.fault({ path: OPENAI, dropAfterChunks: 2 });
    const raw = await post('/v1/chat/completions', { model: 'streamer', ...ask, stream: true });
    expect(raw.status).toBe(200);
    const frames = raw.text.split('\n\n').filter((f) => f.startsWith('data: {'));
    const last = JSON.parse(frames.at(-1)!.slice(6)) as { error?: { code: string } };
    expect(last.error).toMatchObject({ code: 'upstream_error' });
    expect(frames.filter((f) => f.includes('"content"'))).toHaveLength(3); // the role chunk and two tokens
  });
});

describe('a worker thread', () => {
  it("the provider's 429 and its Retry-After cross the worker boundary", async () => {
    const graph = createGraph({ name: 'pooled' });
    const pooled = await serve(
      graph.modelRunner({ name: 'pool', models: [{ ...entry('direct', { maxRetries: 0 }), executionMechanism: 'thread_pool' }] }),
      {
        port: 0,
        graph,
      },
    );
    try {
      llm.fault({ path: OPENAI, status: 429, headers: { 'retry-after': '9' } });
      const reply = await fetch(`${pooled.url}/direct`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{"question":"q"}',
      });
      expect(reply.status).toBe(429);
      expect(reply.headers.get('retry-after')).toBe('9');
    } finally {
      await pooled.close();
    }
  });
});

describe('statusOf: a ModelRunnerError', () => {
  const p429 = new ProviderError('openai: HTTP 429', 429, true, { retryAfter: '4' });
  const runner = (errors: Record<string, Error | null>) =>
    new ModelRunnerError('llms', Object.fromEntries(Object.entries(errors).map(([k, e]) => [k, e && `${e.name}: ${e.message}`])), {
      cause: Object.values(errors).find((e) => e !== null),
    });

  it("takes its provider failure's status when every failed model failed upstream", () => {
    const both = runner({ a: p429, b: new ProviderError('openai: HTTP 500', 500, true), c: null });
    expect([statusOf(both), retryAfterOf(both, statusOf(both))]).toEqual([429, '4']);
  });

  it('stays 400 when another failure is beside it, or when none is upstream', () => {
    const mixed = runner({ a: p429, b: new TypeError('bad input') });
    expect([statusOf(mixed), retryAfterOf(mixed, statusOf(mixed))]).toEqual([400, undefined]);
    expect(statusOf(runner({ a: new TypeError('x') }))).toBe(400);
    expect(statusOf(new ModelRunnerError('s', { a: 'ModelTimeoutError: m' }))).toBe(400);
  });
});
