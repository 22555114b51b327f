// Token streaming through serve(): time to first token and tokens/s of (a) the raw openai client
// streaming from the loopback LLM server, (b) the same client through serve()'s OpenAI-compatible
// /v1 (an LLModel endpoint with stream: true in front of the same server), (c) fetch with
// `Accept: text/event-stream` on serve()'s POST route (rxserve's own SSE). Same run, interleaved.
// The loopback server and each serve() run in processes of their own (bench/fixtures/), so this
// process, the measuring client, does the same work in every row; each row has its own serve()
// process, so its CPU time per answer is that row's alone. Extra rows (b, fetch) and (b, node-http)
// are (b) with the LLModel's provider on `providerOptions.transport: 'fetch'` (the global fetch)
// and `'node-http'` (rxserve's own undici pool); (b) and (c) use the default transport, undici's
// request() on the global dispatcher; (r) is the floor of a
// second HTTP hop: a bare node:http relay (bench/fixtures/streamingRelay.mjs) piping the bytes.
import OpenAI from 'openai';
import { startChild as startBenchChild, type Child } from './child.js';
import { loadavg } from 'node:os';
import { percentile } from './driver.js';
import { formatRatio, ratioSummary } from './paired.js';

const WORDS = 200;

export interface StreamingRow {
  readonly name: string;
  readonly ttftP50Ms: number;
  readonly ttftP99Ms: number;
  /** Content chunks per second, first to last chunk, median over the requests. */
  readonly tokensPerSecond: number;
  /** CPU time (user + system) of the row's serve() process per streamed answer; undefined for (a). */
  readonly serverCpuUs?: number;
  /** CPU time of the measuring client (this process) per streamed answer. */
  readonly clientCpuUs: number;
}

export interface StreamingFigures {
  readonly rows: readonly StreamingRow[];
  readonly requests: number;
  readonly words: number;
  readonly rounds: number;
  /** Per (b) row: its first-token overhead over (a) as a multiple of (r)'s, paired per round. */
  readonly goal: readonly { readonly row: string; readonly ratio: number; readonly low: number; readonly high: number }[];
  /** The 1-minute load average when the run ended. */
  readonly load: number;
}

const median = (xs: readonly number[]): number => {
  const sorted = [...xs].sort((x, y) => x - y);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
};

/** A fixture in a process of its own (STREAMING_CPU_PROF=<dir> profiles every one but the upstream). */
function startChild(fixture: string, args: string[]): Promise<Child> {
  const prof = process.env.STREAMING_CPU_PROF;
  return startBenchChild(fixture, args, prof && fixture !== 'streamingLLMServer.mjs' ? ['--cpu-prof', '--cpu-prof-dir', prof] : []);
}

interface Sample {
  readonly ttft: number;
  readonly tokensPerSecond: number;
  /** This process's CPU time (user + system) during the request, µs. */
  readonly cpuUs: number;
}

/** One streamed request: `next` yields once per content chunk. */
async function measure(stream: () => AsyncIterable<unknown>): Promise<Sample> {
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let first = 0;
  let last = 0;
  let chunks = 0;
  for await (const _ of stream()) {
    last = performance.now();
    if (chunks++ === 0) first = last;
  }
  if (chunks < 2) throw new Error(`expected a streamed answer, got ${chunks} chunks`);
  const cpu = process.cpuUsage(cpu0);
  return { ttft: first - t0, tokensPerSecond: ((chunks - 1) * 1000) / (last - first), cpuUs: cpu.user + cpu.system };
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
  // 16 rounds of 30: one run's verdict moves by ~±0.1 on this shared machine at 240 requests per
  // row (the samples' own noise); twice as many halve its variance and keep the section near 30 s.
  const perRound = quick ? 10 : 30;
  const requests = perRound * (quick ? 4 : 16);
  const upstream = await startChild('streamingLLMServer.mjs', [String(WORDS)]);
  const servers: Child[] = [];
  try {
    // One serve() process per row, so each row's server CPU is its own.
    for (const transport of ['default', 'default', 'node-http', 'fetch'])
      servers.push(await startChild('streamingServeTarget.mjs', [upstream.url, transport]));
    servers.push(await startChild('streamingRelay.mjs', [upstream.url]));
    const [b, c, bNode, bFetch, relay] = servers;
    const client = (baseURL: string) => new OpenAI({ apiKey: 'bench', baseURL, maxRetries: 0 });
    const raw = client(upstream.url);
    const [front, sideNode, sideFetch, relayed] = [b, bNode, bFetch, relay].map((server) => client(`${server.url}/v1`));
    const kinds: [string, Child | undefined, () => AsyncIterable<unknown>][] = [
      ['(a) openai client → loopback server (raw)', undefined, () => openaiChunks(raw, 'gpt-4o-mini')],
      ['(b) openai client → serve() /v1 → LLModel → loopback', b, () => openaiChunks(front, 'chat')],
      ['(c) fetch SSE → serve() POST → LLModel → loopback', c, () => sseChunks(`${c.url}/chat`)],
      ["(b, node-http) as (b), the LLModel on transport: 'node-http'", bNode, () => openaiChunks(sideNode, 'chat')],
      ["(b, fetch) as (b), the LLModel on transport: 'fetch' (the global fetch)", bFetch, () => openaiChunks(sideFetch, 'chat')],
      ['(r) openai client → a bare node:http relay piping the bytes → loopback', relay, () => openaiChunks(relayed, 'gpt-4o-mini')],
    ];
    const samples: Sample[][] = kinds.map(() => []);
    for (let i = 0; i < 10; i++) for (const [, , stream] of kinds) await measure(stream); // warm-up
    const cpu0 = await Promise.all(kinds.map(([, server]) => server?.cpu() ?? 0));
    for (let i = 0; i < requests; i++) {
      // Interleaved, so drift on a shared machine hits every row alike; the row that goes first
      // rotates, so none always follows the same one (and its garbage).
      for (let j = 0; j < kinds.length; j++) {
        const k = (i + j) % kinds.length;
        samples[k].push(await measure(kinds[k][2]));
      }
    }
    const cpu1 = await Promise.all(kinds.map(([, server]) => server?.cpu() ?? 0));
    const rows = kinds.map(([name, server], k) => {
      const ttft = samples[k].map((s) => s.ttft).sort((x, y) => x - y);
      const rates = samples[k].map((s) => s.tokensPerSecond).sort((x, y) => x - y);
      return {
        name,
        ttftP50Ms: percentile(ttft, 50),
        ttftP99Ms: percentile(ttft, 99),
        tokensPerSecond: percentile(rates, 50),
        ...(server ? { serverCpuUs: (cpu1[k] - cpu0[k]) / requests } : {}),
        clientCpuUs: samples[k].reduce((sum, s) => sum + s.cpuUs, 0) / requests,
      };
    });
    // The goal's ratio, paired per round: in each round of `perRound` cycles, a row's first-token
    // overhead is the median of its requests' differences with the (a) request of the same cycle,
    // and the round's ratio is (b)'s overhead over (r)'s; the verdict is the median of the rounds'
    // ratios, with their quartiles (bench/paired.ts).
    const relayRow = kinds.length - 1;
    const overhead = (k: number, from: number): number =>
      median(samples[k].slice(from, from + perRound).map((s, i) => s.ttft - samples[0][from + i].ttft));
    const goal = kinds.flatMap(([name], k) => {
      if (!name.startsWith('(b')) return [];
      const ratios: number[] = [];
      for (let from = 0; from + perRound <= requests; from += perRound) ratios.push(overhead(k, from) / overhead(relayRow, from));
      return [{ row: name.slice(0, name.indexOf(')') + 1), ...ratioSummary(ratios) }];
    });
    return { rows, requests, words: WORDS, rounds: requests / perRound, goal, load: loadavg()[0] };
  } finally {
    await Promise.all(servers.map((s) => s.stop()));
    await upstream.stop();
  }
}

export function streamingMarkdown(f: StreamingFigures): string {
  const base = f.rows[0];
  const lines = [
    `${f.requests} streamed completions per row, one at a time, interleaved; each answer ${f.words} chunks:`,
    '',
    '| path | first token p50 ms | − (a) | p99 ms | tokens/s (median) | vs (a) | serve() CPU µs/answer | client CPU µs/answer |',
    '|---|---:|---:|---:|---:|---:|---:|---:|',
    ...f.rows.map(
      (r) =>
        `| ${r.name} | ${r.ttftP50Ms.toFixed(2)} | ${(r.ttftP50Ms - base.ttftP50Ms).toFixed(2)} | ${r.ttftP99Ms.toFixed(2)} | ${Math.round(r.tokensPerSecond).toLocaleString('en-US')} | ${(r.tokensPerSecond / base.tokensPerSecond).toFixed(2)}× | ${r.serverCpuUs === undefined ? '—' : Math.round(r.serverCpuUs).toLocaleString('en-US')} | ${Math.round(r.clientCpuUs).toLocaleString('en-US')} |`,
    ),
  ];
  // Goal (issue 26): a serve() row's first-token overhead over (a) ≤ 1.5× the bare relay's.
  const relay = f.rows.find((r) => r.name.startsWith('(r)'));
  if (relay !== undefined) {
    const ratios = f.goal.map((g) => `${g.row} ${formatRatio(g)}`);
    lines.push(
      '',
      `First-token overhead over (a) as a multiple of (r)'s, the median of ${f.rounds} rounds' ratios (quartiles), each round's overhead the median of its requests' differences with the (a) request beside them: ${ratios.join(', ')}. Load average ${f.load.toFixed(2)}.`,
    );
  }
  return lines.join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  console.log(streamingMarkdown(await runStreaming(process.argv.includes('--quick'))));
}
