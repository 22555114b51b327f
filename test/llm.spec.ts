// LLModel end to end: the real openai and @huggingface/inference clients against the loopback
// server that speaks their wire protocols, through modelRunner and on its own.
import { mkdtempSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { from, lastValueFrom, take, toArray } from 'rxjs';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  ConfigError,
  LLModel,
  ModelLoadError,
  ModelRunnerError,
  ModelSelector,
  ProviderError,
  asEvents,
  createGraph,
  llmPromptArtifact,
  prometheusExporter,
  traceGraph,
  type EndpointRecord,
  loadArtifact,
  modelArtifact,
  modelRunner,
  registerSelector,
  type LLMUsageReport,
  type ModelEntry,
  type ServingEvent,
} from '../src/index.js';
import { MOCK_ANSWER } from '../src/llm/providers/mock.js';
import { countTextTokens, type Usage } from '../src/llm/usage.js';
import { callUsage } from '../src/model/usage.js';
import { MAX_BACKOFF_MS, MAX_RETRY_AFTER_MS, retryDelayMs, withRetries } from '../src/llm/retry.js';
import { startLLMServer, type LLMServer } from '../src/testing/index.js';

// Every case runs over the three HTTP transports under the official clients: the global
// dispatcher without fetch's WHATWG layer (the default, 'dispatcher'), the global fetch, and
// rxserve's own undici pool (providerOptions.transport: 'node-http').
const TRANSPORTS = ['dispatcher', 'fetch', 'node-http'] as const;
let transport: (typeof TRANSPORTS)[number] = 'fetch';

let server: LLMServer;
beforeAll(async () => {
  server = await startLLMServer();
});
afterAll(async () => {
  await server.close();
});
beforeEach(() => server.clearFaults());

const gpt = () =>
  modelArtifact({
    key: 'gpt',
    modelUrl: 'openai://gpt-4o-mini',
    defaultConfig: { temperature: 0.2, max_tokens: 64 },
    providerOptions: { apiKey: 'test-key', baseURL: server.openaiBaseURL, transport },
  });
const prompt = (key: string, model = gpt(), extra: object = {}) =>
  llmPromptArtifact({
    key,
    model,
    promptTemplate: [
      { role: 'system', content: `You are a ${key} advisor.` },
      { role: 'user', content: '{question}' },
    ],
    ...extra,
  });
const llm = (endpointName: string, artifact: ReturnType<typeof prompt>, extra: Partial<ModelEntry> = {}): ModelEntry => ({
  endpointName,
  modelClass: 'LLModel',
  executionMechanism: 'asyncio',
  modelArtifact: artifact,
  resultPath: 'output',
  params: { retryBaseMs: 1 },
  ...extra,
});
const run = (bodies: unknown[], models: ModelEntry[], more: object = {}) =>
  lastValueFrom(from(bodies).pipe(asEvents(), modelRunner({ models, ...more }), toArray()));
const newRequests = (since: number) => server.requests.slice(since);

// The seed's selector, as in MLRun's example.
class MyClassifier extends ModelSelector {
  private readonly models: string[];
  constructor({ models }: { models: string[] }) {
    super();
    this.models = structuredClone(models);
  }
  override select(event: ServingEvent<{ models?: string[] }>) {
    const current = event.body.models;
    if (current && current.every((m) => this.models.includes(m))) return current;
    return [];
  }
}

describe.each(TRANSPORTS)('over %s', (t) => {
  beforeAll(() => {
    transport = t;
  });

  describe('the seed example: two LLM prompt endpoints and a selector', () => {
    it('routes by body.models and returns { answer, usage } per endpoint, with the full OpenAI usage', async () => {
      registerSelector('MyClassifier', MyClassifier, { override: true });
      const since = server.requests.length;
      const out = await run(
        [
          { question: 'Should I buy bonds?', models: ['finance'] },
          { question: 'Where to go in May?', models: ['travel'] },
          { question: 'Both?', models: ['finance', 'travel'] },
        ],
        [llm('finance', prompt('finance')), llm('travel', prompt('travel'))],
        { selector: 'MyClassifier', selectorParams: { models: ['finance', 'travel'] } },
      );
      const first = out[0].body as { finance: { output: { answer: string; usage: Record<string, unknown> } } };
      expect(Object.keys(out[0].body as object)).toEqual(['finance']);
      expect(first.finance.output.answer).toBe('gpt-4o-mini says: Should I buy bonds?');
      expect(first.finance.output.usage).toEqual({
        prompt_tokens: expect.any(Number),
        completion_tokens: expect.any(Number),
        total_tokens: expect.any(Number),
        prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0 },
        completion_tokens_details: { reasoning_tokens: 0, audio_tokens: 0, accepted_prediction_tokens: 0, rejected_prediction_tokens: 0 },
      });
      expect(Object.keys(out[1].body as object)).toEqual(['travel']);
      expect(Object.keys(out[2].body as object)).toEqual(['finance', 'travel']);
      // the prompt was filled and the prompt's config merged over the model's default
      const sent = newRequests(since)[0];
      expect(sent.path).toBe('/v1/chat/completions');
      expect(sent.authorization).toBe('Bearer test-key');
      expect(sent.body).toMatchObject({
        model: 'gpt-4o-mini',
        temperature: 0.2,
        max_tokens: 64,
        messages: [
          { role: 'system', content: 'You are a finance advisor.' },
          { role: 'user', content: 'Should I buy bonds?' },
        ],
      });
    });
  });

  describe('prompts', () => {
    it('invocationConfig overrides defaultConfig; the legend maps a placeholder to another field', async () => {
      const since = server.requests.length;
      const artifact = prompt('legend', gpt(), {
        promptTemplate: [{ role: 'user', content: 'Country: {country}. {{literal}}' }],
        promptLegend: { country: { field: 'destination', description: 'where to' } },
        invocationConfig: { temperature: 0.9 },
      });
      const out = await run([{ destination: 'Peru', country: 'ignored' }], [llm('t', artifact)]);
      expect((out[0].body as { output: { answer: string } }).output.answer).toBe('gpt-4o-mini says: Country: Peru. {literal}');
      expect(newRequests(since)[0].body).toMatchObject({ temperature: 0.9, max_tokens: 64 });
    });

    it('a missing placeholder fails that event with a clear error; other events are fine', async () => {
      const out = await run([{ question: 'ok' }, { wrong: 'field' }, { question: 'fine too' }], [llm('f', prompt('finance'))], {
        raiseException: false,
      });
      expect((out[0].body as { output: { answer: string } }).output.answer).toContain('ok');
      expect(out[1].body).toEqual({
        error: "TypeError: LLModel 'f': prompt 'finance' has placeholder {question}, but the input has no field 'question'",
      });
      expect((out[2].body as { output: { answer: string } }).output.answer).toContain('fine too');
    });

    it('without a template the input supplies messages', async () => {
      const out = await run([{ messages: [{ role: 'user', content: 'raw' }] }], [{ ...llm('raw', prompt('x')), modelArtifact: gpt() }]);
      expect((out[0].body as { output: { answer: string } }).output.answer).toBe('gpt-4o-mini says: raw');
    });
  });

  describe('Hugging Face', () => {
    const hf = (task?: 'chat' | 'text-generation') =>
      modelArtifact({
        key: `hf-${task ?? 'chat'}`,
        modelUrl: 'huggingface://meta-llama/Llama-3.1-8B-Instruct',
        providerOptions: { apiKey: 'hf_test', baseURL: server.huggingfaceURL, transport, ...(task ? { task } : {}) },
      });

    it('requests go over the chosen transport (the global fetch sends sec-fetch-mode; node:http does not)', async () => {
      const since = server.requests.length;
      await run([{ question: 'which transport?' }], [llm('hf', prompt('hf', hf('text-generation'))), llm('oa', prompt('oa'))]);
      const seen = newRequests(since);
      expect(seen.map((r) => r.path).sort()).toEqual(['/hf/v1/completions', '/v1/chat/completions']);
      for (const r of seen) expect('sec-fetch-mode' in r.headers).toBe(transport === 'fetch');
    });

    it('text generation returns usage estimated with a tokenizer: total = prompt + completion', async () => {
      const since = server.requests.length;
      const out = await run([{ question: 'Hello there' }], [llm('hf', prompt('hf', hf('text-generation')))]);
      const { usage, answer } = (out[0].body as { output: { answer: string; usage: Record<string, number | boolean> } }).output;
      expect(answer).toContain('Hello there');
      expect(usage.estimated).toBe(true);
      expect(usage.prompt_tokens).toBeGreaterThan(5);
      expect(usage.completion_tokens).toBeGreaterThan(5);
      expect(usage.total_tokens).toBe((usage.prompt_tokens as number) + (usage.completion_tokens as number));
      expect(newRequests(since)[0]).toMatchObject({ path: '/hf/v1/completions', authorization: 'Bearer hf_test' });
    });

    it('chat completion passes the reported usage through', async () => {
      const out = await run([{ question: 'Hi' }], [llm('hfc', prompt('hfc', hf()))]);
      const { usage } = (out[0].body as { output: { usage: Record<string, unknown> } }).output;
      expect(usage.estimated).toBeUndefined();
      expect(usage.total_tokens).toBe((usage.prompt_tokens as number) + (usage.completion_tokens as number));
    });
  });

  // What both providers do alike, one table: each row is a provider's model and the error text it gives.
  describe.each([
    { provider: 'openai', artifact: () => gpt(), status: 500, error: /^ProviderError: openai: HTTP 500: / },
    {
      provider: 'huggingface',
      artifact: () =>
        modelArtifact({
          key: 'hf',
          modelUrl: 'huggingface://meta-llama/Llama-3.1-8B-Instruct',
          providerOptions: { apiKey: 'hf_test', baseURL: server.huggingfaceURL, transport, task: 'text-generation' },
        }),
      status: 503,
      error: /^ProviderError: huggingface .*HTTP 503/,
    },
  ])('faults ($provider)', ({ artifact, status, error }) => {
    it('a 5xx forever: retried by rxserve alone (maxRetries + 1 requests, the client does not stack its own), then an error result with the status', async () => {
      for (const maxRetries of [1, 2]) {
        const since = server.requests.length;
        server.fault({ status, times: Infinity });
        const out = await run([{ question: 'x' }], [llm('f', prompt('f', artifact()), { params: { retryBaseMs: 1, maxRetries } })]);
        expect(out[0].error).toBeInstanceOf(ModelRunnerError);
        const message = (out[0].error as ModelRunnerError).modelsErrors.f;
        expect(message).toMatch(error);
        expect(message).toMatch(new RegExp(`\\(after ${maxRetries + 1} attempts\\)$`));
        expect(newRequests(since)).toHaveLength(maxRetries + 1);
        server.clearFaults();
      }
    });
  });

  describe('faults (OpenAI)', () => {
    it('429 with retry-after, then success: retried once, usage of the success', async () => {
      const since = server.requests.length;
      server.fault({ status: 429, headers: { 'retry-after': '0' } });
      const out = await run([{ question: 'retry me' }], [llm('f', prompt('finance'))]);
      expect(out[0].error).toBeUndefined();
      expect((out[0].body as { output: { usage: { total_tokens: number } } }).output.usage.total_tokens).toBeGreaterThan(0);
      expect(newRequests(since)).toHaveLength(2);
    });

    it('malformed JSON is a clear, non-retried ProviderError', async () => {
      const since = server.requests.length;
      server.fault({ malformed: true });
      const out = await run([{ question: 'x' }], [llm('f', prompt('finance'))], { raiseException: false });
      expect(String((out[0].body as { error: string }).error)).toMatch(/^ProviderError: openai: malformed response/);
      expect(newRequests(since)).toHaveLength(1);
    });

    it('a timeout aborts the HTTP request and reports partial usage as a timeout', async () => {
      server.fault({ delayMs: 2_000 });
      const model = new LLModel({ name: 'slow', artifact: prompt('finance') });
      await model.load();
      const reports: LLMUsageReport[] = [];
      model.usage$.subscribe((r) => reports.push(r));
      const controller = new AbortController();
      const call = model.predict({ question: 'slow' }, { signal: controller.signal, origin: 'slow', eventId: 'e1' });
      setTimeout(() => {
        const reason = new Error('timed out');
        reason.name = 'ModelTimeoutError';
        controller.abort(reason);
      }, 50);
      await expect(call).rejects.toMatchObject({ name: 'ModelTimeoutError' });
      expect(reports).toEqual([
        {
          endpointName: 'slow',
          eventId: 'e1',
          outcome: 'timeout',
          usage: expect.objectContaining({ complete: false, completion_tokens: 0 }),
        },
      ]);
      expect(reports[0].usage.prompt_tokens).toBeGreaterThan(0);
    });
  });

  describe('streaming', () => {
    it('emits chunks then { answer, usage }; asks for usage in the stream', async () => {
      const since = server.requests.length;
      const model = new LLModel({ name: 's', artifact: prompt('finance') });
      await model.load();
      const events = await lastValueFrom(model.predictStream({ question: 'tell me more' }).pipe(toArray()));
      const chunks = events.filter((e) => e.type === 'chunk').map((e) => (e as { text: string }).text);
      const final = events.at(-1) as { type: string; answer: string; usage: { total_tokens: number } };
      expect(chunks.length).toBeGreaterThan(2);
      expect(final.type).toBe('final');
      expect(final.answer).toBe(chunks.join(''));
      expect(final.usage.total_tokens).toBeGreaterThan(0);
      expect(newRequests(since)[0].body).toMatchObject({ stream: true, stream_options: { include_usage: true } });
    });

    it("every streamed call sends the client's own request and its own body, and a redirect to another origin does not take the next call's credentials", async () => {
      // The provider builds a streamed request's URL and headers once and reuses them: a sender
      // that dropped `authorization` for a cross-origin hop in place would strip it from every
      // later call. A redirector on another port (another origin) 307s to the LLM server.
      const seen: (string | undefined)[] = [];
      const redirector = http.createServer((req, res) => {
        seen.push(req.headers.authorization);
        req.resume();
        req.on('end', () => res.writeHead(307, { location: `${server.openaiBaseURL}/chat/completions` }).end());
      });
      await new Promise<void>((resolve) => redirector.listen(0, '127.0.0.1', resolve));
      try {
        const via = modelArtifact({
          key: 'gpt',
          modelUrl: 'openai://gpt-4o-mini',
          providerOptions: { apiKey: 'test-key', baseURL: `http://127.0.0.1:${(redirector.address() as AddressInfo).port}/v1`, transport },
        });
        const model = new LLModel({ name: 's', artifact: prompt('finance', via) });
        await model.load();
        const since = server.requests.length;
        for (const question of ['first question', 'second question']) {
          const events = await lastValueFrom(model.predictStream({ question }).pipe(toArray()));
          expect(events.at(-1)).toMatchObject({ type: 'final', answer: `gpt-4o-mini says: ${question}` });
        }
        expect(seen).toEqual(['Bearer test-key', 'Bearer test-key']);
        const sent = newRequests(since);
        expect(sent.map((r) => [r.path, r.authorization, (r.body as { messages: { content: string }[] }).messages[1].content])).toEqual([
          ['/v1/chat/completions', undefined, 'first question'],
          ['/v1/chat/completions', undefined, 'second question'],
        ]);
        for (const r of sent) {
          expect(r.headers).toMatchObject({ 'content-type': 'application/json', 'x-stainless-retry-count': '0' });
          expect(r.headers['user-agent']).toMatch(/^OpenAI\/JS /);
        }
      } finally {
        await new Promise((resolve) => redirector.close(resolve));
      }
    });

    it('retries a failure before the first token, not after; a dropped stream reports partial usage', async () => {
      const model = new LLModel({ name: 's', artifact: prompt('finance'), retryBaseMs: 1 });
      await model.load();
      const reports: LLMUsageReport[] = [];
      model.usage$.subscribe((r) => reports.push(r));
      server.fault({ status: 500 });
      const ok = await lastValueFrom(model.predictStream({ question: 'once more please' }).pipe(toArray()));
      expect(ok.at(-1)?.type).toBe('final');

      server.fault({ dropAfterChunks: 2 });
      const seen: unknown[] = [];
      const error = await new Promise<unknown>((resolve) =>
        model
          .predictStream({ question: 'this answer is long enough to drop' })
          .subscribe({ next: (e) => seen.push(e), error: resolve, complete: () => resolve('completed instead of failing') }),
      );
      expect(seen.length).toBe(2);
      expect(error).toBeInstanceOf(ProviderError);
      expect((error as ProviderError).usage).toMatchObject({ complete: false, estimated: true });
      expect((error as ProviderError).usage!.completion_tokens).toBeGreaterThan(0);
      expect(reports.map((r) => r.outcome)).toEqual(['success', 'error']);
    });

    it('unsubscribing aborts the request and reports partial usage', async () => {
      const slow = await startLLMServer({ latencyMs: 400 });
      try {
        const model = new LLModel({
          name: 's',
          artifact: prompt(
            'finance',
            modelArtifact({
              key: 'g',
              modelUrl: 'openai://gpt-4o-mini',
              providerOptions: { apiKey: 'k', baseURL: slow.openaiBaseURL, transport },
            }),
          ),
        });
        await model.load();
        const reports: LLMUsageReport[] = [];
        model.usage$.subscribe((r) => reports.push(r));
        const first = await lastValueFrom(model.predictStream({ question: 'a b c d e f g h' }).pipe(take(2), toArray()));
        expect(first).toHaveLength(2);
        expect(reports).toEqual([expect.objectContaining({ outcome: 'unsubscribe', usage: expect.objectContaining({ complete: false }) })]);
        expect(reports[0].usage.completion_tokens).toBeGreaterThan(0);
      } finally {
        await slow.close();
      }
    });
  });

  describe('shared LLModel behind proxies', () => {
    it('answers each proxy with its own prompt (ctx.origin), loaded once', async () => {
      const graph = createGraph();
      const base = gpt();
      graph.addSharedModel({
        name: 'llm',
        modelClass: 'LLModel',
        executionMechanism: 'asyncio',
        modelArtifact: base,
        resultPath: 'output',
        params: { retryBaseMs: 1 },
      });
      const finance = graph.sharedModelProxy({ endpointName: 'finance', modelArtifact: prompt('finance', base) });
      const travel = graph.sharedModelProxy({ endpointName: 'travel', modelArtifact: prompt('travel', base) });
      const since = server.requests.length;
      const out = await lastValueFrom(
        from([{ question: 'q' }]).pipe(asEvents(), graph.modelRunner({ models: [finance, travel] }), toArray()),
      );
      expect(Object.keys(out[0].body as object)).toEqual(['finance', 'travel']);
      const systemPrompts = newRequests(since)
        .map((r) => (r.body.messages as { content: string }[])[0].content)
        .sort();
      expect(systemPrompts).toEqual(['You are a finance advisor.', 'You are a travel advisor.']);
      await graph.close();
    });
  });

  describe('artifacts and configuration', () => {
    it('validates artifacts, defaults their URIs, loads them from JSON files', async () => {
      expect(() => modelArtifact({ key: 'x' } as never)).toThrow(/modelArtifact\.modelUrl: expected a non-empty string/);
      expect(() => llmPromptArtifact({ key: 'p', model: gpt(), promptTemplate: [{ role: 'user' }] } as never)).toThrow(
        /llmPromptArtifact\.promptTemplate\[0\]\.content: expected string/,
      );
      expect(gpt().uri).toBe('store://models/gpt');
      const dir = mkdtempSync(join(tmpdir(), 'rxserve-'));
      writeFileSync(
        join(dir, 'p.json'),
        JSON.stringify({ key: 'p', model: { key: 'm', modelUrl: 'mock://' }, promptTemplate: [{ role: 'user', content: '{q}' }] }),
      );
      const loaded = await loadArtifact(join(dir, 'p.json'));
      expect(loaded).toMatchObject({ key: 'p', uri: 'store://prompts/p', model: { uri: 'store://models/m' } });
    });

    it('mock:// answers without a network: a fixed answer and zero usage', async () => {
      const mock = modelArtifact({ key: 'mock', modelUrl: 'mock://' });
      const out = await run([{ question: 'q' }], [llm('m', prompt('m', mock))]);
      expect((out[0].body as { output: unknown }).output).toEqual({
        answer: MOCK_ANSWER,
        usage: { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 },
      });
    });

    it('an LLModel without a model artifact, or with an unknown provider, cannot load', async () => {
      await expect(run([{}], [{ endpointName: 'x', modelClass: 'LLModel', executionMechanism: 'asyncio' }])).rejects.toSatisfy(
        (e: unknown) => e instanceof ModelLoadError && /model provider could not be determined/.test((e as Error).message),
      );
      const odd = modelArtifact({ key: 'odd', modelUrl: 'ftp://nope' });
      await expect(run([{}], [llm('x', prompt('x', odd))])).rejects.toSatisfy(
        (e: unknown) =>
          e instanceof ModelLoadError &&
          (e as Error).cause instanceof ConfigError &&
          /modelUrl: expected a URL with a known provider: 'openai:\/\/<model>'.*got "ftp:\/\/nope"/.test((e as Error).message),
      );
    });

    it('an OpenAI model without any API key fails to load with a clear error', async () => {
      const saved = process.env.OPENAI_API_KEY;
      delete process.env.OPENAI_API_KEY;
      try {
        const keyless = modelArtifact({
          key: 'k',
          modelUrl: 'openai://gpt-4o-mini',
          providerOptions: { baseURL: server.openaiBaseURL, transport },
        });
        await expect(run([{}], [llm('x', prompt('x', keyless))])).rejects.toThrow(/OPENAI_API_KEY/);
      } finally {
        if (saved !== undefined) process.env.OPENAI_API_KEY = saved;
      }
    });

    it('runs in a worker thread too (LLModel is built in there)', async () => {
      const out = await run([{ question: 'from a thread' }], [llm('w', prompt('finance'), { executionMechanism: 'thread_pool' })]);
      expect((out[0].body as { output: { answer: string } }).output.answer).toBe('gpt-4o-mini says: from a thread');
    });
  });
});

describe('retries (backoff, jitter, retry-after cap)', () => {
  const retryable = (retryAfterMs?: number) => new ProviderError('busy', 503, true, retryAfterMs === undefined ? {} : { retryAfterMs });
  /** Runs withRetries against a provider failing `failures` times, recording the waits instead of waiting. */
  const waitsFor = async (failures: ProviderError[], options: { baseDelayMs: number; random: () => number; maxRetries?: number }) => {
    const waits: number[] = [];
    let n = 0;
    const result = await withRetries(
      async () => {
        if (n < failures.length) throw failures[n++];
        return 'ok';
      },
      {
        maxRetries: options.maxRetries ?? failures.length,
        baseDelayMs: options.baseDelayMs,
        random: options.random,
        sleep: async (ms) => void waits.push(ms),
      },
    );
    expect(result).toBe('ok');
    return waits;
  };

  it('backs off exponentially, capped at 10 s, with no jitter when the random source says 0', async () => {
    const waits = await waitsFor(
      Array.from({ length: 7 }, () => retryable()),
      { baseDelayMs: 250, random: () => 0 },
    );
    expect(waits).toEqual([250, 500, 1_000, 2_000, 4_000, 8_000, MAX_BACKOFF_MS]);
  });

  it('takes up to 25% off each backoff as jitter, never adds to it', async () => {
    const high = await waitsFor([retryable(), retryable(), retryable()], { baseDelayMs: 1_000, random: () => 0.999_999 });
    high.forEach((ms, n) => expect(ms).toBeCloseTo(1_000 * 2 ** n * 0.75, 0));
    const half = await waitsFor([retryable(), retryable()], { baseDelayMs: 1_000, random: () => 0.5 });
    expect(half).toEqual([875, 1_750]);
    // Over many draws of the real random source: always within [75%, 100%] of the backoff.
    for (let i = 0; i < 1_000; i++) {
      const ms = retryDelayMs(2, undefined, 100);
      expect(ms).toBeGreaterThan(300);
      expect(ms).toBeLessThanOrEqual(400);
    }
  });

  it('honours retry-after (no jitter) up to 60 s and caps a longer one at 60 s', async () => {
    const waits = await waitsFor([retryable(1_500), retryable(0), retryable(120_000), retryable(MAX_RETRY_AFTER_MS)], {
      baseDelayMs: 250,
      random: () => 0.5,
    });
    expect(waits).toEqual([1_500, 0, 60_000, 60_000]);
    expect(MAX_RETRY_AFTER_MS).toBe(60_000);
  });

  it('an abort during the wait rejects with the reason and makes no further attempt', async () => {
    const controller = new AbortController();
    let attempts = 0;
    const reason = new Error('stop');
    const call = withRetries(
      async () => {
        attempts++;
        throw retryable(60_000);
      },
      { maxRetries: 5, baseDelayMs: 1, signal: controller.signal },
    );
    setTimeout(() => controller.abort(reason), 20);
    await expect(call).rejects.toBe(reason);
    expect(attempts).toBe(1);
  });
});

describe('usage: one reading for monitoring records, Prometheus and spans', () => {
  it('callUsage takes a result usage or a failed call error usage, nothing else', () => {
    const usage = { prompt_tokens: 3, completion_tokens: 4, total_tokens: 7 };
    expect(callUsage({ answer: 'a', usage })).toBe(usage);
    expect(callUsage(undefined, Object.assign(new Error('x'), { usage }))).toBe(usage);
    expect(callUsage({ usage }, new Error('failed, no usage'))).toBeUndefined();
    for (const value of [undefined, null, 5, 'text', { usage: 'n/a' }, { usage: null }, { usage: { tokens: 3 } }])
      expect(callUsage(value)).toBeUndefined();
  });

  it('a success and a failed call: the record, the token counter and the span agree', async () => {
    const exporter = new InMemorySpanExporter();
    const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
    const graph = createGraph({ monitoring: {} });
    const metrics = await prometheusExporter(graph);
    const stopTracing = await traceGraph(graph, { tracer: provider.getTracer('test') });
    const records: EndpointRecord[] = [];
    graph.monitoring$.subscribe((r) => records.push(r));
    const artifact = llmPromptArtifact({
      key: 'p',
      model: modelArtifact({ key: 'g', modelUrl: 'openai://gpt-4o-mini', providerOptions: { apiKey: 'k', baseURL: server.openaiBaseURL } }),
      promptTemplate: [{ role: 'user', content: '{question}' }],
    });
    const step = graph.modelRunner({
      name: 'ask',
      models: [
        {
          endpointName: 'ask',
          modelClass: 'LLModel',
          executionMechanism: 'asyncio',
          modelArtifact: artifact,
          resultPath: 'output',
          params: { maxRetries: 0 },
        },
      ],
      raiseException: false,
    });
    await lastValueFrom(from([{ question: 'how are you today?' }]).pipe(asEvents(), step, toArray()));
    server.fault({ status: 500 });
    await lastValueFrom(from([{ question: 'and tomorrow?' }]).pipe(asEvents(), step, toArray()));
    stopTracing();
    expect(records).toHaveLength(2);
    const [ok, failed] = records;
    expect(ok.usage).toMatchObject({
      prompt_tokens: expect.any(Number),
      completion_tokens: expect.any(Number),
      total_tokens: expect.any(Number),
    });
    expect(ok.usage).not.toHaveProperty('estimated');
    expect(failed.error).toMatch(/HTTP 500/);
    expect(failed.usage).toMatchObject({ completion_tokens: 0, complete: false, estimated: true });
    const spans = exporter.getFinishedSpans().filter((s) => s.name === 'rxserve.model ask');
    expect(spans.map((s) => [s.attributes['gen_ai.usage.input_tokens'], s.attributes['gen_ai.usage.output_tokens']])).toEqual(
      records.map((r) => [r.usage!.prompt_tokens, r.usage!.completion_tokens]),
    );
    const text = await metrics.metrics();
    const counted = (kind: string) =>
      Number(new RegExp(`rxserve_llm_tokens_total\\{endpoint="ask",step="ask",kind="${kind}"\\} (\\d+)`).exec(text)?.[1]);
    expect(counted('prompt')).toBe((ok.usage!.prompt_tokens as number) + (failed.usage!.prompt_tokens as number));
    expect(counted('completion')).toBe(ok.usage!.completion_tokens);
    metrics.detach();
    await graph.close();
  });
});

describe('predictStream: usage reported once, estimated totals, loading on first use (issue 12)', () => {
  /** An OpenAI-compatible loopback server that streams an answer and never sends a usage chunk. */
  const startNoUsageServer = async () => {
    const srv = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        const chunk = (delta: object, finish: string | null = null) =>
          `data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
        res.write(chunk({ role: 'assistant', content: '' }));
        for (const piece of ['Put ', 'it ', 'in ', 'an ', 'index ', 'fund.']) res.write(chunk({ content: piece }));
        res.write(chunk({}, 'stop'));
        res.end('data: [DONE]\n\n');
      });
    });
    await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
    return {
      baseURL: `http://127.0.0.1:${(srv.address() as AddressInfo).port}/v1`,
      close: () => new Promise((resolve) => srv.close(resolve)),
    };
  };
  const streamingPrompt = (baseURL: string) =>
    prompt(
      'finance',
      modelArtifact({ key: 'g', modelUrl: 'openai://gpt-4o-mini', providerOptions: { apiKey: 'k', baseURL, transport: 'node-http' } }),
    );

  it('unsubscribing mid-stream reports usage once, as unsubscribe (never a later success)', async () => {
    const slow = await startLLMServer({ latencyMs: 300 });
    try {
      const model = new LLModel({ name: 's', artifact: streamingPrompt(slow.openaiBaseURL) });
      await model.load();
      await model.load();
      const reports: LLMUsageReport[] = [];
      model.usage$.subscribe((r) => reports.push(r));
      const first = await lastValueFrom(model.predictStream({ question: 'a b c d e f g h' }, { eventId: 'e1' }).pipe(take(2), toArray()));
      expect(first).toHaveLength(2);
      // Let the aborted request wind down: the client ends its stream on abort.
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(reports).toEqual([
        { endpointName: 's', eventId: 'e1', outcome: 'unsubscribe', usage: expect.objectContaining({ complete: false, estimated: true }) },
      ]);
    } finally {
      await slow.close();
    }
  });

  it('an outer abort (a timeout) mid-stream reports once, as timeout, and errors the stream', async () => {
    const slow = await startLLMServer({ latencyMs: 300 });
    try {
      const model = new LLModel({ name: 's', artifact: streamingPrompt(slow.openaiBaseURL) });
      await model.load();
      const reports: LLMUsageReport[] = [];
      model.usage$.subscribe((r) => reports.push(r));
      const controller = new AbortController();
      const error = new Promise<unknown>((resolve) =>
        model.predictStream({ question: 'a b c d e f g h' }, { signal: controller.signal }).subscribe({
          next: (e) => {
            if (e.type === 'chunk' && e.text.length > 0)
              controller.abort(Object.assign(new Error('timed out'), { name: 'ModelTimeoutError' }));
          },
          error: resolve,
          complete: () => resolve('completed'),
        }),
      );
      expect(await error).toMatchObject({ name: 'ModelTimeoutError' });
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(reports.map((r) => [r.outcome, r.usage.complete])).toEqual([['timeout', false]]);
    } finally {
      await slow.close();
    }
  });

  it('without a usage chunk, the estimate has total_tokens = prompt_tokens + completion_tokens', async () => {
    const srv = await startNoUsageServer();
    try {
      const model = new LLModel({ name: 's', artifact: streamingPrompt(srv.baseURL) });
      await model.load();
      const reports: LLMUsageReport[] = [];
      model.usage$.subscribe((r) => reports.push(r));
      const events = await lastValueFrom(model.predictStream({ question: 'where do I put savings?' }).pipe(toArray()));
      const final = events.at(-1) as { type: 'final'; answer: string; usage: Usage };
      expect(final.answer).toBe('Put it in an index fund.');
      expect(final.usage).toEqual({
        prompt_tokens: expect.any(Number),
        completion_tokens: countTextTokens('Put it in an index fund.'),
        total_tokens: final.usage.prompt_tokens + final.usage.completion_tokens,
        estimated: true,
      });
      expect(final.usage.prompt_tokens).toBeGreaterThan(0);
      expect(reports).toEqual([expect.objectContaining({ outcome: 'success', usage: final.usage })]);
    } finally {
      await srv.close();
    }
  });

  it('before load(): predictStream and predict load the model on first use (one load for concurrent calls)', async () => {
    const mock = modelArtifact({ key: 'mock', modelUrl: 'mock://' });
    const streaming = new LLModel({ name: 'fresh', artifact: prompt('finance', mock) });
    const [a, b] = await Promise.all([
      lastValueFrom(streaming.predictStream({ question: 'q' }).pipe(toArray())),
      lastValueFrom(streaming.predictStream({ question: 'q' }).pipe(toArray())),
    ]);
    expect(a.at(-1)).toMatchObject({ type: 'final', answer: MOCK_ANSWER });
    expect(b.at(-1)).toMatchObject({ type: 'final', answer: MOCK_ANSWER });
    const direct = new LLModel({ name: 'fresh2', artifact: prompt('finance', mock) });
    expect(await direct.predict({ question: 'q' }, { origin: 'fresh2', eventId: 'e', signal: new AbortController().signal })).toMatchObject(
      { answer: MOCK_ANSWER },
    );
  });

  it('before load(), a model that cannot load fails the stream with a ModelLoadError naming the reason', async () => {
    const odd = new LLModel({ name: 'odd', artifact: prompt('x', modelArtifact({ key: 'odd', modelUrl: 'ftp://nope' })) });
    const error = await lastValueFrom(odd.predictStream({ question: 'q' })).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ModelLoadError);
    expect((error as Error).message).toMatch(/^model 'odd' could not be loaded: .*modelUrl: expected a URL with a known provider/);
    const bare = new LLModel({ name: 'bare' });
    await expect(lastValueFrom(bare.predictStream({ messages: [] }))).rejects.toThrow(
      /model 'bare' could not be loaded: the model provider could not be determined/,
    );
  });
});

describe('monitoring an LLModel endpoint (MLRun forces outputs to answer, usage)', () => {
  it('records { answer, usage } as the outputs whatever outputs were given, warning once per endpoint', async () => {
    const warnings: Error[] = [];
    const onWarning = (w: Error) => warnings.push(w);
    process.on('warning', onWarning);
    try {
      const graph = createGraph({ monitoring: {} });
      const records: EndpointRecord[] = [];
      graph.monitoring$.subscribe((r) => records.push(r));
      const mock = modelArtifact({ key: 'mock', modelUrl: 'mock://' });
      const step = graph.modelRunner({
        models: [
          { endpointName: 'given', modelClass: 'LLModel', executionMechanism: 'asyncio', modelArtifact: prompt('a', mock), outputs: ['x'] },
          { endpointName: 'none', modelClass: 'LLModel', executionMechanism: 'asyncio', modelArtifact: prompt('b', mock) },
          {
            endpointName: 'same',
            modelClass: LLModel,
            executionMechanism: 'asyncio',
            modelArtifact: prompt('c', mock),
            outputs: ['answer', 'usage'],
          },
        ],
      });
      await lastValueFrom(from([{ question: 'q1' }, { question: 'q2' }]).pipe(asEvents(), step, toArray()));
      await new Promise((resolve) => setImmediate(resolve)); // warnings are emitted on the next tick
      const zero = { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 };
      expect(records).toHaveLength(6);
      for (const record of records) expect(record.response?.outputs).toEqual([[MOCK_ANSWER, zero]]);
      const ours = warnings.filter((w) => (w as { code?: string }).code === 'RXSERVE_LLM_OUTPUTS');
      expect(ours.map((w) => w.message)).toEqual([
        `LLModel endpoint 'given': monitoring outputs ["x"] replaced by ["answer","usage"] (an LLModel returns { answer, usage }, as in MLRun)`,
      ]);
      await graph.close();
    } finally {
      process.off('warning', onWarning);
    }
  });
});
