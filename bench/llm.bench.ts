// I/O-bound LLM serving: one LLModel endpoint over the loopback OpenAI-compatible server (in a
// child process, `latencyMs` per answer) with 64 calls in flight, against the ideal
// (64 / latency), the raw openai client keeping 64 requests out, and LangChain's
// RunnableLambda.batch(..., { maxConcurrency: 64 }) over the same client call; then the same
// client and step over rxserve's undici fetch (providerOptions.transport: 'node-http').
import { fork } from 'node:child_process';
import { RunnableLambda } from '@langchain/core/runnables';
import OpenAI from 'openai';
import { llmPromptArtifact, modelArtifact, modelRunner, type ServingEvent } from 'rxserve';
import { createNodeFetch } from 'rxserve/llm';
import { drive, percentile } from './driver.js';

const LATENCY_MS = 20;
const IN_FLIGHT = 64;
const MODEL = 'gpt-4o-mini';

export interface LLMRow {
  readonly name: string;
  readonly perSecond: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
}

export interface LLMResult {
  readonly latencyMs: number;
  readonly inFlight: number;
  readonly events: number;
  readonly rows: readonly LLMRow[];
}

const question = (i: number) => ({ question: `Question number ${i}: what should I do next?` });

async function startServer(): Promise<{ baseURL: string; stop: () => void }> {
  const child = fork(new URL('./fixtures/llmServer.mjs', import.meta.url), [String(LATENCY_MS)], { stdio: 'inherit' });
  const baseURL = await new Promise<string>((resolve, reject) => {
    child.once('message', (m: { baseURL: string }) => resolve(m.baseURL));
    child.once('exit', (code) => reject(new Error(`the loopback LLM server exited (${code}) before it listened`)));
  });
  return { baseURL, stop: () => child.disconnect() };
}

/** `total` calls of `call`, `IN_FLIGHT` at a time, each timed. */
async function concurrently(total: number, call: (i: number) => Promise<unknown>): Promise<Omit<LLMRow, 'name'>> {
  const latencies: number[] = [];
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: IN_FLIGHT }, async () => {
      while (next < total) {
        const i = next++;
        const s = performance.now();
        await call(i);
        latencies.push(performance.now() - s);
      }
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  latencies.sort((a, b) => a - b);
  return { perSecond: total / seconds, p50Ms: percentile(latencies, 50), p99Ms: percentile(latencies, 99) };
}

export async function runLLM(quick: boolean): Promise<LLMResult> {
  const total = quick ? 1_000 : 8_000;
  // The client code takes a few thousand calls to reach its steady speed (JIT); each case warms up.
  const WARM_UP = quick ? 1_000 : 4_000;
  const server = await startServer();
  try {
    const client = new OpenAI({ apiKey: 'loopback', baseURL: server.baseURL, maxRetries: 0 });
    const ask = (i: number) =>
      client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: question(i).question }] });
    await concurrently(WARM_UP, ask); // warm-up: connections, JIT
    const raw = await concurrently(total, ask);
    const nodeClient = new OpenAI({ apiKey: 'loopback', baseURL: server.baseURL, maxRetries: 0, fetch: createNodeFetch() });
    const askNode = (i: number) =>
      nodeClient.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: question(i).question }] });
    await concurrently(WARM_UP, askNode);
    const rawNode = await concurrently(total, askNode);

    // LangChain: batch() queues every input and runs at most maxConcurrency at once; each item timed
    // inside the lambda (its service time, as for the other rows).
    const latencies: number[] = [];
    const lambda = RunnableLambda.from(async (i: number) => {
      const s = performance.now();
      const out = await ask(i);
      latencies.push(performance.now() - s);
      return out;
    });
    await lambda.batch(
      Array.from({ length: WARM_UP }, (_, i) => i),
      { maxConcurrency: IN_FLIGHT },
    );
    latencies.length = 0;
    const t0 = performance.now();
    await lambda.batch(
      Array.from({ length: total }, (_, i) => i),
      { maxConcurrency: IN_FLIGHT },
    );
    const lcSeconds = (performance.now() - t0) / 1000;
    latencies.sort((a, b) => a - b);
    const langchain = { perSecond: total / lcSeconds, p50Ms: percentile(latencies, 50), p99Ms: percentile(latencies, 99) };

    const gpt = (transport: 'fetch' | 'node-http') =>
      modelArtifact({
        key: MODEL,
        modelUrl: `openai://${MODEL}`,
        providerOptions: { apiKey: 'loopback', baseURL: server.baseURL, transport },
      });
    const prompt = (transport: 'fetch' | 'node-http') =>
      llmPromptArtifact({ key: 'ask', model: gpt(transport), promptTemplate: [{ role: 'user', content: '{question}' }] });
    const step = (transport: 'fetch' | 'node-http') =>
      modelRunner({
        models: [
          {
            endpointName: 'ask',
            modelClass: 'LLModel',
            executionMechanism: 'asyncio',
            modelArtifact: prompt(transport),
            resultPath: 'output',
            maxInFlight: IN_FLIGHT,
          },
        ],
        maxInFlight: IN_FLIGHT,
      });
    const failed = (e: ServingEvent) => e.error !== undefined || (e.body as { error?: unknown }).error !== undefined;
    const serve = async (transport: 'fetch' | 'node-http') => {
      await drive(step(transport), WARM_UP, IN_FLIGHT, question, { isRejected: failed });
      const figures = await drive(step(transport), total, IN_FLIGHT, question, { isRejected: failed, idOf: (e) => e.id });
      if (figures.rejected > 0) throw new Error(`LLM bench: ${figures.rejected} events failed`);
      return { perSecond: figures.perSecond, p50Ms: figures.p50Ms!, p99Ms: figures.p99Ms! };
    };
    const ours = await serve('fetch');
    const oursNode = await serve('node-http');

    return {
      latencyMs: LATENCY_MS,
      inFlight: IN_FLIGHT,
      events: total,
      rows: [
        { ...raw, name: 'raw openai client (global fetch), 64 requests out' },
        { ...ours, name: 'rxserve modelRunner + LLModel (asyncio), maxInFlight 64, global fetch' },
        { ...langchain, name: 'LangChain RunnableLambda.batch, maxConcurrency 64, global fetch' },
        { ...rawNode, name: 'raw openai client with createNodeFetch() (undici Agent), 64 requests out' },
        { ...oursNode, name: "rxserve modelRunner + LLModel, transport: 'node-http'" },
      ],
    };
  } finally {
    server.stop();
  }
}

export function llmMarkdown(result: LLMResult): string {
  const ideal = (result.inFlight * 1000) / result.latencyMs;
  const raw = result.rows[0];
  return [
    `${result.events.toLocaleString('en-US')} requests, server latency ${result.latencyMs} ms, ${result.inFlight} in flight; ideal ${ideal.toLocaleString('en-US')} requests/s.`,
    '',
    '| case | requests/s | of ideal | vs raw client (global fetch) | p50 ms | p99 ms |',
    '|---|---|---|---|---|---|',
    ...result.rows.map(
      (r) =>
        `| ${r.name} | ${Math.round(r.perSecond).toLocaleString('en-US')} | ${((100 * r.perSecond) / ideal).toFixed(0)}% | ${(r.perSecond / raw.perSecond).toFixed(2)}× | ${r.p50Ms.toFixed(1)} | ${r.p99Ms.toFixed(1)} |`,
    ),
  ].join('\n');
}
