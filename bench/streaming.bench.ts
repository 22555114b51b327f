// Token streaming through serve(): time to first token and tokens/s of (a) the raw openai client
// streaming from the loopback LLM server, (b) the same client through serve()'s OpenAI-compatible
// /v1 (an LLModel endpoint with stream: true in front of the same server), (c) fetch with
// `Accept: text/event-stream` on serve()'s POST route (rxserve's own SSE). Same run, interleaved.
import { fork } from 'node:child_process';
import OpenAI from 'openai';
import { createGraph, modelArtifact, serve } from 'rxserve';
import { percentile } from './driver.js';

const WORDS = 200;

export interface StreamingRow {
  readonly name: string;
  readonly ttftP50Ms: number;
  readonly ttftP99Ms: number;
  /** Content chunks per second, first to last chunk, median over the requests. */
  readonly tokensPerSecond: number;
}

export interface StreamingFigures {
  readonly rows: readonly StreamingRow[];
  readonly requests: number;
  readonly words: number;
}

async function startUpstream(): Promise<{ baseURL: string; stop(): void }> {
  const child = fork(new URL('./fixtures/streamingLLMServer.mjs', import.meta.url), [String(WORDS)], { stdio: 'inherit' });
  const baseURL = await new Promise<string>((resolve, reject) => {
    child.once('message', (m: { baseURL: string }) => resolve(m.baseURL));
    child.once('exit', (code) => reject(new Error(`the loopback LLM server exited (${code}) before it listened`)));
  });
  return { baseURL, stop: () => child.disconnect() };
}

interface Sample {
  readonly ttft: number;
  readonly tokensPerSecond: number;
}

/** One streamed request: `next` yields once per content chunk. */
async function measure(stream: () => AsyncIterable<unknown>): Promise<Sample> {
  const t0 = performance.now();
  let first = 0;
  let last = 0;
  let chunks = 0;
  for await (const _ of stream()) {
    last = performance.now();
    if (chunks++ === 0) first = last;
  }
  if (chunks < 2) throw new Error(`expected a streamed answer, got ${chunks} chunks`);
  return { ttft: first - t0, tokensPerSecond: ((chunks - 1) * 1000) / (last - first) };
}

async function* openaiChunks(client: OpenAI, model: string): AsyncIterable<unknown> {
  const stream = await client.chat.completions.create({ model, messages: [{ role: 'user', content: 'go' }], stream: true });
  for await (const chunk of stream) if (chunk.choices[0]?.delta.content) yield chunk;
}

async function* sseChunks(url: string): AsyncIterable<unknown> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
    body: JSON.stringify({ messages: [{ role: 'user', content: 'go' }] }),
  });
  const decoder = new TextDecoder();
  let buffer = '';
  for await (const bytes of response.body as unknown as AsyncIterable<Uint8Array>) {
    buffer += decoder.decode(bytes, { stream: true });
    let end: number;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const frame = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      if (frame.startsWith('event: partial')) yield frame;
    }
  }
}

export async function runStreaming(quick: boolean): Promise<StreamingFigures> {
  const requests = quick ? 40 : 200;
  const upstream = await startUpstream();
  const graph = createGraph({ name: 'streaming-bench' });
  const step = graph.modelRunner({
    models: [
      {
        endpointName: 'chat',
        modelClass: 'LLModel',
        executionMechanism: 'asyncio',
        modelArtifact: modelArtifact({ key: 'gpt', modelUrl: 'openai://gpt-4o-mini', providerOptions: { apiKey: 'bench', baseURL: upstream.baseURL } }),
        params: { stream: true },
      },
    ],
  });
  const server = await serve(step, { port: 0, graph, openai: { models: { chat: 'chat' } } });
  try {
    const raw = new OpenAI({ apiKey: 'bench', baseURL: upstream.baseURL, maxRetries: 0 });
    const front = new OpenAI({ apiKey: 'bench', baseURL: `${server.url}/v1`, maxRetries: 0 });
    const kinds: [string, () => AsyncIterable<unknown>][] = [
      ['(a) openai client → loopback server (raw)', () => openaiChunks(raw, 'gpt-4o-mini')],
      ['(b) openai client → serve() /v1 → LLModel → loopback', () => openaiChunks(front, 'chat')],
      ['(c) fetch SSE → serve() POST → LLModel → loopback', () => sseChunks(`${server.url}/chat`)],
    ];
    const samples: Sample[][] = kinds.map(() => []);
    for (let i = 0; i < 10; i++) for (const [, stream] of kinds) await measure(stream); // warm-up
    for (let i = 0; i < requests; i++) {
      // interleaved, so drift on a shared machine hits every row alike
      for (let k = 0; k < kinds.length; k++) samples[k].push(await measure(kinds[k][1]));
    }
    const rows = kinds.map(([name], k) => {
      const ttft = samples[k].map((s) => s.ttft).sort((a, b) => a - b);
      const rates = samples[k].map((s) => s.tokensPerSecond).sort((a, b) => a - b);
      return { name, ttftP50Ms: percentile(ttft, 50), ttftP99Ms: percentile(ttft, 99), tokensPerSecond: percentile(rates, 50) };
    });
    return { rows, requests, words: WORDS };
  } finally {
    await server.close();
    upstream.stop();
  }
}

export function streamingMarkdown(f: StreamingFigures): string {
  const base = f.rows[0];
  const lines = [
    `${f.requests} streamed completions per row, one at a time, interleaved; each answer ${f.words} chunks:`,
    '',
    '| path | first token p50 ms | − (a) | p99 ms | tokens/s (median) | vs (a) |',
    '|---|---:|---:|---:|---:|---:|',
    ...f.rows.map(
      (r) =>
        `| ${r.name} | ${r.ttftP50Ms.toFixed(2)} | ${(r.ttftP50Ms - base.ttftP50Ms).toFixed(2)} | ${r.ttftP99Ms.toFixed(2)} | ${Math.round(r.tokensPerSecond).toLocaleString('en-US')} | ${(r.tokensPerSecond / base.tokensPerSecond).toFixed(2)}× |`,
    ),
  ];
  return lines.join('\n');
}
