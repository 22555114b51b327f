// Partial results end to end (docs/design.md §15): ctx.emit in process, through shared models and worker
// pools; LLModel `stream: true` against the loopback LLM server.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { firstValueFrom, from, lastValueFrom, toArray } from 'rxjs';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  LLModel,
  Model,
  createGraph,
  invoker,
  serve,
  type PredictContext,
  llmPromptArtifact,
  modelArtifact,
  modelRunner,
  toEvent,
  type ModelEntry,
  type PartialResult,
  type ServingEvent,
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

describe("LLModel stream: true: the OpenAI provider's own event-stream parsing", () => {
  /** A hand-written upstream: `frames` written as `writes` (one write each, or all at once), CRLF line ends. */
  const startUpstream = async (frames: string[], together: boolean) => {
    const srv = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        const wire = frames.map((f) => f.replace(/\n/g, '\r\n'));
        if (together) res.end(wire.join(''));
        else {
          for (const f of wire) res.write(f);
          res.end();
        }
      });
    });
    await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
    return {
      baseURL: `http://127.0.0.1:${(srv.address() as AddressInfo).port}/v1`,
      close: () => new Promise((resolve) => srv.close(resolve)),
    };
  };
  const chunk = (delta: object, extra: object = {}) =>
    `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, delta, finish_reason: null }], ...extra })}\n\n`;
  const usage = { prompt_tokens: 3, completion_tokens: 4, total_tokens: 7 };
  const model = (baseURL: string, transport: 'dispatcher' | 'fetch' | 'node-http') =>
    new LLModel({
      name: 'p',
      artifact: modelArtifact({ key: 'g', modelUrl: 'openai://gpt-4o-mini', providerOptions: { apiKey: 'k', baseURL, transport } }),
      params: { stream: true },
    });

  for (const transport of ['dispatcher', 'fetch', 'node-http'] as const) {
    it(`${transport}: the streamed request carries the openai client's headers (auth, user agent), as a non-streamed one does`, async () => {
      const call = async (stream: boolean) => {
        const m = new LLModel({
          name: 'p',
          artifact: modelArtifact({
            key: 'g',
            modelUrl: 'openai://gpt-4o-mini',
            providerOptions: { apiKey: 'test-key', baseURL: server.openaiBaseURL, transport },
          }),
          stream,
        });
        await m.predict(
          { messages: [{ role: 'user', content: 'q' }] },
          { origin: 'p', eventId: 'e', signal: new AbortController().signal, emit: () => undefined },
        );
        return server.requests.at(-1)!;
      };
      const plain = await call(false);
      const streamed = await call(true);
      expect(streamed.path).toBe('/v1/chat/completions');
      expect(streamed.body).toMatchObject({ model: 'gpt-4o-mini', stream: true, stream_options: { include_usage: true } });
      expect(streamed.headers.authorization).toBe('Bearer test-key');
      for (const name of ['authorization', 'user-agent', 'content-type', 'x-stainless-lang', 'x-stainless-package-version']) {
        expect(streamed.headers[name], name).toBe(plain.headers[name]);
      }
    });

    for (const together of [false, true]) {
      it(`${transport}, ${together ? 'one write' : 'a write per chunk'}: deltas in order, comments skipped, usage kept, nothing after [DONE]`, async () => {
        const frames = [
          ': keep-alive\n\n',
          chunk({ role: 'assistant', content: '' }),
          chunk({ content: 'Put "it"' }),
          chunk({ content: ' in\nan ' }),
          chunk({ content: 'index fund 😀' }),
          `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [], usage })}\n\n`,
          'data: [DONE]\n\n',
          chunk({ content: 'after done' }),
        ];
        const upstream = await startUpstream(frames, together);
        try {
          const events = await lastValueFrom(
            model(upstream.baseURL, transport)
              .predictStream({ messages: [{ role: 'user', content: 'q' }] })
              .pipe(toArray()),
          );
          expect(events).toEqual([
            { type: 'chunk', text: 'Put "it"' },
            { type: 'chunk', text: ' in\nan ' },
            { type: 'chunk', text: 'index fund 😀' },
            { type: 'final', answer: 'Put "it" in\nan index fund 😀', usage },
          ]);
        } finally {
          await upstream.close();
        }
      });
    }
    it(`${transport}: an { error } event mid-stream fails the call with the server's message, after the deltas before it`, async () => {
      const upstream = await startUpstream(
        [chunk({ content: 'Hel' }), `data: ${JSON.stringify({ error: { message: 'the model overloaded', type: 'server_error' } })}\n\n`],
        false,
      );
      try {
        const seen: string[] = [];
        const error = await new Promise<unknown>((resolve) =>
          model(upstream.baseURL, transport)
            .predictStream({ messages: [{ role: 'user', content: 'q' }] })
            .subscribe({ next: (e) => e.type === 'chunk' && seen.push(e.text), error: resolve, complete: () => resolve('completed') }),
        );
        expect(seen).toEqual(['Hel']);
        expect(error).toMatchObject({ name: 'ProviderError', message: expect.stringContaining('the model overloaded') });
      } finally {
        await upstream.close();
      }
    });
  }
});

describe('LLModel stream: true: request failures are what the openai client gives without streaming', () => {
  const failing = (status: number, body: string, headers: Record<string, string> = {}) => {
    const srv = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        res.writeHead(status, { 'content-type': 'application/json', ...headers });
        res.end(body);
      });
    });
    return new Promise<{ baseURL: string; close(): Promise<unknown> }>((resolve) =>
      srv.listen(0, '127.0.0.1', () =>
        resolve({ baseURL: `http://127.0.0.1:${(srv.address() as AddressInfo).port}/v1`, close: () => new Promise((r) => srv.close(r)) }),
      ),
    );
  };
  const call = async (baseURL: string, transport: 'dispatcher' | 'fetch' | 'node-http', stream: boolean) => {
    const model = new LLModel({
      name: 'p',
      artifact: modelArtifact({ key: 'g', modelUrl: 'openai://gpt-4o-mini', providerOptions: { apiKey: 'k', baseURL, transport } }),
      stream,
      maxRetries: 0,
    });
    await model.load();
    const ctx = { origin: 'p', eventId: 'e', signal: new AbortController().signal, emit: () => undefined };
    const error = (await model.predict({ messages: [{ role: 'user', content: 'q' }] }, ctx).catch((e: unknown) => e)) as {
      name: string;
      message: string;
      status?: number;
      retryable?: boolean;
      retryAfterMs?: number;
    };
    return { name: error.name, message: error.message, status: error.status, retryable: error.retryable, retryAfterMs: error.retryAfterMs };
  };

  for (const transport of ['dispatcher', 'fetch', 'node-http'] as const) {
    it(`${transport}: an HTTP error status (JSON or not) and a refused connection`, async () => {
      const cases = [
        await failing(429, JSON.stringify({ error: { message: 'slow down', type: 'rate_limit_exceeded', code: '429' } }), {
          'retry-after': '2',
        }),
        await failing(500, 'upstream exploded'),
        await failing(400, JSON.stringify({ error: { message: "'messages' is bad", type: 'invalid_request_error' } })),
      ];
      try {
        for (const upstream of cases) {
          const streamed = await call(upstream.baseURL, transport, true);
          expect(streamed).toEqual(await call(upstream.baseURL, transport, false));
          expect(streamed.name).toBe('ProviderError');
        }
        expect((await call(cases[0].baseURL, transport, true)).retryAfterMs).toBe(2000);
      } finally {
        await Promise.all(cases.map((c) => c.close()));
      }
      const gone = await failing(200, '');
      await gone.close();
      const refused = await call(gone.baseURL, transport, true);
      expect(refused).toEqual(await call(gone.baseURL, transport, false));
      expect(refused).toMatchObject({ name: 'ProviderError', retryable: true, message: expect.stringMatching(/connection failed/) });
    });
  }
});

describe('LLModel stream: true with Hugging Face', () => {
  it('streams chat completions from the Hugging Face client as { delta } partials', async () => {
    const entry: ModelEntry = {
      endpointName: 'hf',
      modelClass: 'LLModel',
      executionMechanism: 'asyncio',
      modelArtifact: modelArtifact({
        key: 'hf',
        modelUrl: 'huggingface://meta-llama/Llama-3.1-8B-Instruct',
        providerOptions: { apiKey: 'hf_test', baseURL: server.huggingfaceURL },
      }),
      params: { stream: true },
    };
    const partials: PartialResult[] = [];
    const event = toEvent({ messages: [{ role: 'user', content: 'hf' }] }, { partials: (p) => partials.push(p) });
    const out = await firstValueFrom(from([event]).pipe(modelRunner({ models: [entry] })));
    const result = out.body as { answer: string; usage: { total_tokens: number } };
    expect(result.answer).toBe('answer to hf in several words');
    expect(result.usage.total_tokens).toBeGreaterThan(0);
    expect(partials.length).toBeGreaterThan(2);
    expect(partials.map((p) => (p.data as { delta: string }).delta).join('')).toBe(result.answer);
    expect(server.requests.at(-1)!.path).toMatch(/^\/hf\//);
    expect(server.requests.at(-1)!.body.stream).toBe(true);
  });
});

describe('shared models', () => {
  it("two proxies of one shared model called at once: each event gets only its own proxy's partials", async () => {
    const graph = createGraph({ name: 'g' });
    const base = gpt();
    graph.addSharedModel({
      name: 'llm',
      modelClass: 'LLModel',
      executionMechanism: 'asyncio',
      modelArtifact: base,
      params: { stream: true },
    });
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

/** Emits `{ n }` for n = 1..count, a macrotask apart, then returns `{ count }`; `wait: true` hangs until aborted. */
class Counter extends Model<{ count: number; wait?: boolean }, { count: number }> {
  static aborted: unknown[] = [];
  override async predict(body: { count: number; wait?: boolean }, ctx: PredictContext) {
    for (let n = 1; n <= body.count; n++) {
      await new Promise((resolve) => setTimeout(resolve, 1));
      ctx.emit?.({ n });
    }
    if (body.wait) {
      await new Promise((_resolve, reject) => {
        const stop = () => {
          Counter.aborted.push(ctx.signal.reason);
          reject(ctx.signal.reason);
        };
        if (ctx.signal.aborted) stop();
        else ctx.signal.addEventListener('abort', stop);
      });
    }
    return { count: body.count };
  }
}
const counter: ModelEntry = { endpointName: 'counter', modelClass: Counter, executionMechanism: 'asyncio' };

/** Reads a whole SSE response into its frames. */
async function sseFrames(response: Response): Promise<{ event: string; data: unknown }[]> {
  const text = await response.text();
  return text
    .split('\n\n')
    .filter((frame) => frame.includes('data: '))
    .map((frame) => {
      const lines = frame.split('\n');
      const event = lines.find((l) => l.startsWith('event: '))?.slice(7) ?? 'message';
      return { event, data: JSON.parse(lines.find((l) => l.startsWith('data: '))!.slice(6)) as unknown };
    });
}

describe('client.stream()', () => {
  it('gives the partials in order, then the result, then completes', async () => {
    const client = invoker(modelRunner({ models: [counter] }));
    const messages = await lastValueFrom(client.stream({ count: 3 }).pipe(toArray()));
    expect(messages).toEqual([
      { type: 'partial', endpoint: 'counter', data: { n: 1 } },
      { type: 'partial', endpoint: 'counter', data: { n: 2 } },
      { type: 'partial', endpoint: 'counter', data: { n: 3 } },
      { type: 'result', event: expect.objectContaining({ body: { count: 3 } }) },
    ]);
    await client.close();
  });

  it('unsubscribing before the result cancels the call', async () => {
    Counter.aborted = [];
    const client = invoker(modelRunner({ models: [counter] }));
    const first = await firstValueFrom(client.stream({ count: 1, wait: true }));
    expect(first).toEqual({ type: 'partial', endpoint: 'counter', data: { n: 1 } });
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(Counter.aborted).toHaveLength(1);
    expect((Counter.aborted[0] as Error).name).toBe('AbortError');
    expect(client.inFlight).toBe(0);
    await client.close();
  });

  it('errors as invoke rejects (after close)', async () => {
    const client = invoker(modelRunner({ models: [counter] }));
    await client.close();
    await expect(firstValueFrom(client.stream({ count: 1 }))).rejects.toThrow(/closed/);
  });
});

describe('serve(): Server-Sent Events', () => {
  it('Accept: text/event-stream gets one partial event per partial, in order, then the result', async () => {
    const http = await serve(modelRunner({ models: [counter] }), { port: 0 });
    try {
      const response = await fetch(`${http.url}/count`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'text/event-stream', 'x-request-id': 'r1' },
        body: JSON.stringify({ count: 4 }),
      });
      expect(response.status).toBe(200);
      expect(response.headers.get('content-type')).toMatch(/^text\/event-stream/);
      expect(response.headers.get('x-request-id')).toBe('r1');
      expect(await sseFrames(response)).toEqual([
        ...[1, 2, 3, 4].map((n) => ({ event: 'partial', data: { endpoint: 'counter', data: { n } } })),
        { event: 'result', data: { count: 4 } },
      ]);
      // The same route without the header still answers JSON.
      const plain = await fetch(`${http.url}/count`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{"count":2}',
      });
      expect(await plain.json()).toEqual({ count: 2 });
    } finally {
      await http.close();
    }
  });

  it('an errored event is a result with its error and status (a timeout: 504)', async () => {
    const http = await serve(modelRunner({ models: [counter] }), { port: 0, timeoutMs: 100 });
    try {
      const response = await fetch(`${http.url}/count`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
        body: JSON.stringify({ count: 1, wait: true }),
      });
      const frames = await sseFrames(response);
      expect(frames).toEqual([
        { event: 'partial', data: { endpoint: 'counter', data: { n: 1 } } },
        { event: 'result', data: { error: expect.stringMatching(/^ModelTimeoutError: /), status: 504 } },
      ]);
    } finally {
      await http.close();
    }
  });

  it('a request refused before the pipeline gets its ordinary JSON error, and the next stream is served', async () => {
    const http = await serve(modelRunner({ models: [counter] }), { port: 0 });
    try {
      const bad = await fetch(`${http.url}/count`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
        body: '{"count": ',
      });
      expect(bad.status).toBe(400);
      expect(bad.headers.get('content-type')).toMatch(/^application\/json/);
      expect(((await bad.json()) as { error: string }).error).toMatch(/^SyntaxError: the request body is not valid JSON/);
      const ok = await fetch(`${http.url}/count`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
        body: '{"count": 1}',
      });
      expect((await sseFrames(ok)).map((f) => f.event)).toEqual(['partial', 'result']);
    } finally {
      await http.close();
    }
  });

  it('a client that disconnects mid-stream cancels the call', async () => {
    Counter.aborted = [];
    const http = await serve(modelRunner({ models: [counter] }), { port: 0 });
    try {
      const controller = new AbortController();
      const response = await fetch(`${http.url}/count`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
        body: JSON.stringify({ count: 1, wait: true }),
        signal: controller.signal,
      });
      const reader = response.body!.getReader();
      let seen = '';
      while (!seen.includes('event: partial')) seen += new TextDecoder().decode((await reader.read()).value);
      controller.abort();
      await vi.waitFor(() => expect(Counter.aborted).toHaveLength(1));
      await vi.waitFor(() => expect(http.inFlight).toBe(0));
    } finally {
      await http.close();
    }
  });
});

describe('partials from workers (thread_pool, process_pool)', () => {
  const fixture = new URL('./fixtures/partialModels.mjs', import.meta.url).href;
  for (const mechanism of ['thread_pool', 'process_pool'] as const) {
    it(`${mechanism}: each event gets its own partials, in order, before its result`, async () => {
      const graph = createGraph({ name: `workers-${mechanism}` });
      const step = graph.modelRunner({
        models: [
          { endpointName: 'counting', modelClass: { module: fixture, export: 'Counting' }, executionMechanism: mechanism },
          { endpointName: 'sync', modelClass: { module: fixture, export: 'SyncCounting' }, executionMechanism: mechanism },
        ],
        selector: (event: ServingEvent) => [(event.body as { model: string }).model],
      });
      const client = invoker(step, { graph });
      await graph.ready();
      const run = (body: object) => lastValueFrom(client.stream(body).pipe(toArray()));
      const [a, b, c] = await Promise.all([
        run({ model: 'counting', count: 5, tag: 'a' }),
        run({ model: 'counting', count: 3, tag: 'b' }),
        run({ model: 'sync', count: 4 }),
      ]);
      expect(a.map((m) => (m.type === 'partial' ? m.data : 'result'))).toEqual([
        ...[1, 2, 3, 4, 5].map((n) => ({ n, tag: 'a' })),
        'result',
      ]);
      expect(b.map((m) => (m.type === 'partial' ? m.data : 'result'))).toEqual([...[1, 2, 3].map((n) => ({ n, tag: 'b' })), 'result']);
      expect(c.map((m) => (m.type === 'partial' ? m.data : 'result'))).toEqual([...[1, 2, 3, 4].map((n) => ({ n })), 'result']);
      expect(a.at(-1)).toMatchObject({ type: 'result', event: { body: { counting: { count: 5, tag: 'a' } } } });
      expect(a.filter((m) => m.type === 'partial').every((m) => m.type === 'partial' && m.endpoint === 'counting')).toBe(true);
      await client.close();
    });

    it(`${mechanism} with batching: the calls of one batch each get their own partials`, async () => {
      const graph = createGraph({ name: `batched-${mechanism}` });
      const step = graph.modelRunner({
        models: [
          {
            endpointName: 'counting',
            modelClass: { module: fixture, export: 'Counting' },
            executionMechanism: mechanism,
            batching: { maxBatchSize: 4, maxWaitMs: 50 },
          },
        ],
        ordered: false,
      });
      const client = invoker(step, { graph });
      await graph.ready();
      const run = (body: object) => lastValueFrom(client.stream(body).pipe(toArray()));
      // Three calls within maxWaitMs: one predictBatch in the worker.
      const all = await Promise.all(['a', 'b', 'c'].map((tag, i) => run({ count: i + 2, tag })));
      all.forEach((messages, i) => {
        const tag = ['a', 'b', 'c'][i];
        expect(messages.map((m) => (m.type === 'partial' ? m.data : 'result'))).toEqual([
          ...Array.from({ length: i + 2 }, (_, k) => ({ n: k + 1, tag })),
          'result',
        ]);
      });
      await client.close();
    });
  }
});
