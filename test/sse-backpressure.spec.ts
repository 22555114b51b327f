// A hostile client on serve()'s event streams (docs/streaming.md, "A client that does not read"):
// it sends a streamed request and never reads. Real sockets on loopback: a raw `net` client that
// never reads, serve() in front of an LLModel streaming from a loopback upstream, and an answer
// large enough (8 MiB of tokens) to fill the kernel's socket buffers on both sides, so the rest
// stays in the server's memory. The server must close such a connection within its bounds
// (`sendTimeoutMs`, `maxStreamBufferBytes`), cancel the call and its upstream request, and leave
// nothing held: no connection, no request in flight, the step's one slot free for the next
// request — while a client that reads gets every byte of the same answer. The same for an 8 MiB
// JSON answer nobody reads (`sendTimeoutMs` alone: the call is over by then).
import { connect, type Socket } from 'node:net';
import type { Observable } from 'rxjs';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  ConfigError,
  LLModel,
  createGraph,
  modelArtifact,
  serve,
  type LLMUsageReport,
  type ModelInit,
  type ServeOptions,
  type ServingEvent,
} from '../src/index.js';
import type { Server } from '../src/serve/serve.js';
import { serversPerTest } from './support/httpServer.js';

const upstreamServer = serversPerTest();

const reports: LLMUsageReport[] = [];
/** An LLModel whose usage reports (the record of a call cut short: `outcome: 'unsubscribe'`) the test reads. */
class WatchedLLM extends LLModel {
  constructor(init: ModelInit) {
    super(init);
    this.usage$.subscribe((r) => reports.push(r));
  }
}

/** 128 tokens of 64 KiB: 8 MiB, more than loopback's socket buffers take (~4 MiB here). */
const TOKENS = 128;
const TOKEN_BYTES = 64 * 1024;
/** Token `n`: words, so the LLModel's usage estimate on an abort tokenizes ordinary text. */
const token = (n: number): string => `w${n % 10} `.repeat(TOKEN_BYTES / 3);
const WHOLE = Array.from({ length: TOKENS }, (_, n) => token(n)).join('');

const chunk = (delta: object, extra: object = {}): string =>
  `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, delta, finish_reason: null }], ...extra })}\n\n`;

/**
 * A streaming OpenAI-compatible upstream. The last message says what it answers: `big` the 8 MiB
 * answer as fast as it is taken, then the end of the stream; `paced` the same with a timer turn
 * before each token (a model's pace, not a burst: a reader in this process gets its turns);
 * `forever` the `big` tokens, then a small one every 10 ms until its request is aborted (at most 30 s).
 */
async function startUpstream() {
  return upstreamServer(async (request, res) => {
    const { messages } = JSON.parse(request.body) as { messages: { content: string }[] };
    const what = messages.at(-1)!.content;
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    let closed = false;
    res.once('close', () => (closed = true));
    const send = async (frame: string): Promise<void> => {
      if (res.write(frame) || closed) return;
      // Until the LLModel took it (or went away): one listener of each, removed after.
      await new Promise<void>((resolve) => {
        const done = (): void => {
          res.off('drain', done).off('close', done);
          resolve();
        };
        res.on('drain', done).on('close', done);
      });
    };
    await send(chunk({ role: 'assistant', content: '' }));
    for (let n = 0; n < TOKENS && !closed; n++) {
      if (what === 'paced') await new Promise((resolve) => setTimeout(resolve, 1));
      await send(chunk({ content: token(n) }));
    }
    if (what === 'forever') {
      for (let n = 0; n < 3_000 && !closed; n++) {
        await new Promise((resolve) => setTimeout(resolve, 10));
        await send(chunk({ content: '.' }));
      }
    }
    if (closed) return;
    await send(chunk({}, { choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] }));
    await send(chunk({}, { choices: [], usage: { prompt_tokens: 3, completion_tokens: TOKENS, total_tokens: TOKENS + 3 } }));
    res.end('data: [DONE]\n\n');
  });
}

let servers: Server[] = [];
let clients: Socket[] = [];
afterEach(async () => {
  reports.length = 0;
  for (const c of clients) c.destroy();
  clients = [];
  await Promise.all(servers.map((s) => s.close()));
  servers = [];
});

/** serve() over one streaming LLModel endpoint `chat` (one event at a time in the step), on /v2-style POST and /v1. */
async function start(baseURL: string, options: ServeOptions): Promise<{ server: Server; closedAt: number[] }> {
  const graph = createGraph({ name: 'sse-backpressure' });
  const gpt = modelArtifact({ key: 'gpt', modelUrl: 'openai://gpt-4o-mini', providerOptions: { apiKey: 'k', baseURL } });
  // One slot: a call still held by a gone client would make the next request wait for it (and 504).
  const step = graph.modelRunner({
    name: 'llm',
    maxInFlight: 1,
    models: [{ endpointName: 'chat', modelClass: WatchedLLM, executionMechanism: 'asyncio', modelArtifact: gpt, params: { stream: true } }],
  });
  const server = await serve(step, { port: 0, graph, timeoutMs: 20_000, openai: { models: { bot: 'chat' } }, ...options });
  servers.push(server);
  // When each of the server's connections closed (its own side, whatever the client does).
  const closedAt: number[] = [];
  server.app.server.on('connection', (socket: Socket) => socket.once('close', () => closedAt.push(Date.now())));
  return { server, closedAt };
}

const connections = (server: Server): Promise<number> =>
  new Promise((resolve, reject) => server.app.server.getConnections((error, count) => (error ? reject(error) : resolve(count))));

/** The two streamed routes: the request a client sends for `what`, and how to read its answer's text. */
const routes = [
  {
    name: 'POST /chat with Accept: text/event-stream',
    path: '/chat',
    body: (what: string) => ({ messages: [{ role: 'user', content: what }] }),
    /** The deltas of the `partial` events, and the `result` answer. */
    read(text: string): { deltas: string; final: string } {
      let deltas = '';
      let final = '';
      for (const frame of text.split('\n\n')) {
        const data = frame.split('\n').find((l) => l.startsWith('data: '));
        if (data === undefined) continue;
        const value = JSON.parse(data.slice(6)) as { data?: { delta: string }; answer?: string };
        if (frame.startsWith('event: partial')) deltas += value.data!.delta;
        else if (frame.startsWith('event: result')) final = value.answer!;
      }
      return { deltas, final };
    },
  },
  {
    name: 'POST /v1/chat/completions with stream: true',
    path: '/v1/chat/completions',
    body: (what: string) => ({ model: 'bot', stream: true, messages: [{ role: 'user', content: what }] }),
    /** The content deltas of the chunks, and `[DONE]` when the stream ended with it. */
    read(text: string): { deltas: string; final: string } {
      let deltas = '';
      let final = '';
      for (const frame of text.split('\n\n')) {
        if (!frame.startsWith('data: ')) continue;
        if (frame === 'data: [DONE]') final = '[DONE]';
        else deltas += (JSON.parse(frame.slice(6)) as { choices: { delta: { content?: string } }[] }).choices[0]?.delta.content ?? '';
      }
      return { deltas, final };
    },
  },
] as const;

/** A raw client that sends one streamed request and never reads a byte of the answer. */
function silentClient(url: string, path: string, body: unknown, accept = 'text/event-stream'): { socket: Socket; sentAt: number } {
  const { port } = new URL(url);
  const socket = connect(Number(port), '127.0.0.1');
  socket.pause(); // never read: the kernel's buffers fill, then the server's
  socket.on('error', () => undefined); // the server's reset, if it is ever seen
  clients.push(socket);
  const json = JSON.stringify(body);
  socket.write(
    `POST ${path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\naccept: ${accept}\r\n` +
      `content-length: ${Buffer.byteLength(json)}\r\n\r\n${json}`,
  );
  return { socket, sentAt: Date.now() };
}

/** A client that reads: the whole answer, as text. */
async function readAll(url: string, path: string, body: unknown): Promise<{ status: number; text: string }> {
  const response = await fetch(`${url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
    body: JSON.stringify(body),
  });
  return { status: response.status, text: await response.text() };
}

/**
 * Nothing left held: no connection, no request in flight; then a reading client gets all of the
 * 8 MiB answer. Its tokens come paced: the server does not wait for its reader (a model's tokens
 * come at the model's pace), so an 8 MiB burst read by a client in this same process, on a loaded
 * machine, could leave more than maxStreamBufferBytes unread between two of its reads and be cut —
 * the bound doing its job, not a reader being wronged (seen once in CI per ~10 runs).
 */
async function expectNothingHeld(server: Server, route: (typeof routes)[number]): Promise<void> {
  await vi.waitFor(async () => expect(await connections(server)).toBe(0), { timeout: 5_000 });
  await vi.waitFor(() => expect(server.inFlight).toBe(0), { timeout: 5_000 });
  const { status, text } = await readAll(server.url, route.path, route.body('paced'));
  expect(status).toBe(200);
  const { deltas, final } = route.read(text);
  expect(deltas.length).toBe(WHOLE.length);
  expect(deltas === WHOLE).toBe(true); // every byte, in order (not printed: 8 MiB)
  if (route.path === '/chat') expect(final === WHOLE).toBe(true);
  else expect(final).toBe('[DONE]');
}

describe('serve(): a client that never reads its event stream does not keep its socket or its call', () => {
  for (const route of routes) {
    describe(route.name, () => {
      it('the answer ended with its tail unsent: the connection is closed after sendTimeoutMs', async () => {
        const upstream = await startUpstream();
        // Long enough for the whole answer to arrive once the client stopped taking it, on a busy machine.
        const { server, closedAt } = await start(`${upstream.url}/v1`, { sendTimeoutMs: 3_000, maxStreamBufferBytes: 64 * 1024 * 1024 });
        const { sentAt } = silentClient(server.url, route.path, route.body('big'));
        // The whole answer came from upstream (nothing was cut before its end)...
        await upstream.waitForRequests(1);
        await vi.waitFor(() => expect(upstream.inFlight).toBe(0), { timeout: 10_000 });
        expect(upstream.aborted).toBe(0);
        // ...and its unread tail does not keep the connection: closed by the server, within the bound.
        await vi.waitFor(() => expect(closedAt).toHaveLength(1), { timeout: 8_000 });
        expect(closedAt[0] - sentAt).toBeLessThan(10_000);
        await expectNothingHeld(server, route);
      });

      it('still streaming, nothing read for sendTimeoutMs: the call and its upstream request are cancelled, the connection closed', async () => {
        const upstream = await startUpstream();
        const { server, closedAt } = await start(`${upstream.url}/v1`, { sendTimeoutMs: 500, maxStreamBufferBytes: 64 * 1024 * 1024 });
        const { sentAt } = silentClient(server.url, route.path, route.body('forever'));
        // The upstream would go on for 30 s: its request is aborted, and the connection closed, long before.
        await upstream.waitForAborted(1, 8_000);
        await vi.waitFor(() => expect(closedAt).toHaveLength(1), { timeout: 5_000 });
        expect(closedAt[0] - sentAt).toBeLessThan(8_000);
        // The call is recorded as cut short, as when a client leaves.
        await vi.waitFor(() => expect(reports).toHaveLength(1), { timeout: 5_000 });
        expect(reports[0]).toMatchObject({ endpointName: 'chat', outcome: 'unsubscribe', usage: { complete: false } });
        await expectNothingHeld(server, route);
      });

      it('still streaming, more than maxStreamBufferBytes unsent: cut at once, long before sendTimeoutMs', async () => {
        const upstream = await startUpstream();
        const { server, closedAt } = await start(`${upstream.url}/v1`, { sendTimeoutMs: 60_000, maxStreamBufferBytes: 1024 * 1024 });
        const { sentAt } = silentClient(server.url, route.path, route.body('forever'));
        await upstream.waitForAborted(1, 8_000);
        await vi.waitFor(() => expect(closedAt).toHaveLength(1), { timeout: 5_000 });
        expect(closedAt[0] - sentAt).toBeLessThan(8_000);
        await vi.waitFor(() => expect(reports[0]).toMatchObject({ outcome: 'unsubscribe', usage: { complete: false } }), {
          timeout: 5_000,
        });
        // A reading client's answer of the same size is not cut by the bound.
        await expectNothingHeld(server, route);
      });
    });
  }

  it('server.close() is held by a stream nobody reads for at most sendTimeoutMs, not forever', async () => {
    const upstream = await startUpstream();
    const { server, closedAt } = await start(`${upstream.url}/v1`, { sendTimeoutMs: 1_000, maxStreamBufferBytes: 64 * 1024 * 1024 });
    silentClient(server.url, routes[0].path, routes[0].body('big'));
    // The answer ended (all of it came from upstream), its tail unsent: close now.
    await upstream.waitForRequests(1);
    await vi.waitFor(() => expect(upstream.inFlight).toBe(0), { timeout: 10_000 });
    const closing = Date.now();
    await server.close();
    expect(Date.now() - closing).toBeLessThan(6_000);
    await vi.waitFor(() => expect(closedAt).toHaveLength(1), { timeout: 1_000 });
  });

  for (const [name, path, body, answerOf] of [
    [
      'POST /chat (JSON)',
      '/chat',
      { messages: [{ role: 'user', content: 'big' }] },
      (json: unknown) => (json as { answer: string }).answer,
    ],
    [
      'POST /v1/chat/completions (not streamed)',
      '/v1/chat/completions',
      { model: 'bot', messages: [{ role: 'user', content: 'big' }] },
      (json: unknown) => (json as { choices: { message: { content: string } }[] }).choices[0].message.content,
    ],
  ] as const) {
    it(`${name}: an 8 MiB JSON answer nobody reads does not keep its connection past sendTimeoutMs`, async () => {
      const upstream = await startUpstream();
      const { server, closedAt } = await start(`${upstream.url}/v1`, { sendTimeoutMs: 1_000 });
      const { sentAt } = silentClient(server.url, path, body, 'application/json');
      await upstream.waitForRequests(1);
      await vi.waitFor(() => expect(upstream.inFlight).toBe(0), { timeout: 10_000 });
      await vi.waitFor(() => expect(closedAt).toHaveLength(1), { timeout: 8_000 });
      expect(closedAt[0] - sentAt).toBeLessThan(10_000);
      await vi.waitFor(async () => expect(await connections(server)).toBe(0), { timeout: 5_000 });
      expect(server.inFlight).toBe(0);
      // A client that reads gets all of it.
      const response = await fetch(`${server.url}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      expect(response.status).toBe(200);
      expect(answerOf(await response.json()) === WHOLE).toBe(true);
    });
  }

  it('the options are checked: a ConfigError names the field', async () => {
    const step = (events: Observable<ServingEvent>): Observable<ServingEvent> => events;
    await expect(serve(step, { port: 0, sendTimeoutMs: 0 })).rejects.toThrow(ConfigError);
    await expect(serve(step, { port: 0, sendTimeoutMs: 0 })).rejects.toThrow(/serve\.sendTimeoutMs/);
    await expect(serve(step, { port: 0, maxStreamBufferBytes: -1 })).rejects.toThrow(/serve\.maxStreamBufferBytes/);
  });
});
