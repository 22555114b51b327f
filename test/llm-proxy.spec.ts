// The default LLM transport ('dispatcher') keeps the user's global dispatcher: with
// `setGlobalDispatcher(new ProxyAgent(...))` every LLM call — openai and Hugging Face, plain and
// streamed, answers and errors — goes through a loopback proxy that counts what passes; without
// one it does not; a global Agent's TLS options (a CA of its own) apply; a replaced global fetch is
// called instead; 'node-http' (its own pool) is the transport that does bypass them, as documented.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { lastValueFrom, toArray } from 'rxjs';
import { Agent, ProxyAgent, setGlobalDispatcher, type Dispatcher } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { LLModel, llmPromptArtifact, modelArtifact, ProviderError } from '../src/index.js';
import { startLLMServer, type LLMServer } from '../src/testing/index.js';

const GLOBAL_DISPATCHER = Symbol.for('undici.globalDispatcher.1');

/** A loopback HTTP proxy (CONNECT tunnels and absolute-form requests) that counts what passes. */
interface Proxy {
  readonly url: string;
  /** `host:port` of each CONNECT tunnel opened. */
  readonly tunnels: string[];
  /** Absolute URLs of each forwarded (non-tunnelled) request. */
  readonly forwarded: string[];
  close(): Promise<void>;
}

async function startProxy(): Promise<Proxy> {
  const tunnels: string[] = [];
  const forwarded: string[] = [];
  const sockets = new Set<net.Socket>();
  const server = http.createServer((req, res) => {
    forwarded.push(req.url!);
    const target = new URL(req.url!);
    const upstream = http.request(
      { host: target.hostname, port: target.port, path: `${target.pathname}${target.search}`, method: req.method, headers: req.headers },
      (answer) => {
        res.writeHead(answer.statusCode!, answer.headers);
        answer.pipe(res);
      },
    );
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  server.on('connect', (req: http.IncomingMessage, client: net.Socket, head: Buffer) => {
    tunnels.push(req.url!);
    const [host, port] = req.url!.split(':');
    const upstream = net.connect(Number(port), host, () => {
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (head.length > 0) upstream.write(head);
      upstream.pipe(client);
      client.pipe(upstream);
    });
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
    }
    upstream.on('error', () => client.destroy());
    client.on('error', () => upstream.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    tunnels,
    forwarded,
    async close() {
      for (const s of sockets) s.destroy();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

let llm: LLMServer;
let proxy: Proxy;
let original: Dispatcher;
let proxyAgent: ProxyAgent | undefined;

beforeAll(async () => {
  void globalThis.Headers; // Node's own dispatcher is installed first, as in a user's process
  original = (globalThis as Record<symbol, Dispatcher>)[GLOBAL_DISPATCHER];
  llm = await startLLMServer();
  proxy = await startProxy();
});
afterEach(async () => {
  setGlobalDispatcher(original);
  await proxyAgent?.close();
  proxyAgent = undefined;
  llm.clearFaults();
});
afterAll(async () => {
  await proxy.close();
  await llm.close();
});

/** The user's proxy, as `setGlobalDispatcher` sets it. */
function useProxy(): void {
  proxyAgent = new ProxyAgent(proxy.url);
  setGlobalDispatcher(proxyAgent);
}

const TRANSPORTS = [undefined, 'dispatcher', 'fetch', 'node-http'] as const;
type Transport = (typeof TRANSPORTS)[number];

/** `origin` (e.g. a TLS front's) in place of the LLM server's own. */
function model(provider: 'openai' | 'huggingface', transport: Transport, retries = 0, origin?: string): LLModel {
  const at = (url: string) => (origin === undefined ? url : `${origin}${new URL(url).pathname}`);
  const artifact =
    provider === 'openai'
      ? modelArtifact({
          key: 'gpt',
          modelUrl: 'openai://gpt-4o-mini',
          providerOptions: { apiKey: 'k', baseURL: at(llm.openaiBaseURL), ...(transport ? { transport } : {}) },
        })
      : modelArtifact({
          key: 'hf',
          modelUrl: 'huggingface://meta-llama/Llama-3.1-8B-Instruct',
          providerOptions: { apiKey: 'hf_k', baseURL: at(llm.huggingfaceURL), ...(transport ? { transport } : {}) },
        });
  return new LLModel({
    name: `${provider}-${transport ?? 'default'}`,
    artifact: llmPromptArtifact({ key: 'p', model: artifact, promptTemplate: [{ role: 'user', content: '{q}' }] }),
    maxRetries: retries,
    retryBaseMs: 1,
  });
}

const ctx = () => ({ origin: 'proxy-spec', eventId: 'e', signal: new AbortController().signal });

/** One plain and one streamed call; what the LLM server saw and what passed through the proxy. */
async function callBoth(m: LLModel): Promise<{ answer: string; streamed: string; served: number; tunnels: number; viaFetch: boolean[] }> {
  await m.load();
  const [served, tunnels] = [llm.requests.length, proxy.tunnels.length];
  const { answer } = (await m.predict({ q: 'plain?' }, ctx())) as { answer: string };
  const events = await lastValueFrom(m.predictStream({ q: 'streamed?' }).pipe(toArray()));
  const streamed = events
    .filter((e) => e.type === 'chunk')
    .map((e) => (e as { text: string }).text)
    .join('');
  return {
    answer,
    streamed,
    served: llm.requests.length - served,
    tunnels: proxy.tunnels.length - tunnels,
    // Node's fetch sends `sec-fetch-mode`; undici's request() does not: which path each call took.
    viaFetch: llm.requests.slice(served).map((r) => 'sec-fetch-mode' in r.headers),
  };
}

describe.each(['openai', 'huggingface'] as const)('%s', (provider) => {
  it.each([undefined, 'dispatcher', 'fetch'] as const)(
    'transport %s: behind setGlobalDispatcher(new ProxyAgent(...)) every call goes through the proxy',
    async (transport) => {
      useProxy();
      const out = await callBoth(model(provider, transport));
      expect(out.answer).toContain('plain?');
      expect(out.streamed).toContain('streamed?');
      expect(out.served).toBe(2);
      expect(out.viaFetch).toEqual(transport === 'fetch' ? [true, true] : [false, false]);
      // One tunnel at least (the ProxyAgent keeps it alive between the two calls), to the LLM server.
      expect(out.tunnels).toBeGreaterThanOrEqual(1);
      expect(new Set(proxy.tunnels)).toEqual(new Set([new URL(llm.openaiBaseURL).host]));
    },
  );

  it("transport 'node-http' is its own pool: it bypasses the global dispatcher (documented)", async () => {
    useProxy();
    const out = await callBoth(model(provider, 'node-http'));
    expect(out.streamed).toContain('streamed?');
    expect(out.served).toBe(2);
    expect(out.tunnels).toBe(0);
  });

  it('with Node’s own dispatcher again (the proxy unset), the default sends directly', async () => {
    const out = await callBoth(model(provider, undefined));
    expect(out.served).toBe(2);
    expect(out.viaFetch).toEqual([false, false]);
    expect(out.tunnels).toBe(0);
    expect(proxy.forwarded).toEqual([]);
  });

  it('through the proxy, an HTTP error and a dropped stream fail as they do without it', async () => {
    useProxy();
    const m = model(provider, undefined);
    await m.load();
    llm.fault({ status: 400 });
    await expect(m.predict({ q: 'bad' }, ctx())).rejects.toSatisfy((e: unknown) => e instanceof ProviderError && e.status === 400);
    if (provider === 'openai') {
      llm.fault({ dropAfterChunks: 2 });
      await expect(lastValueFrom(m.predictStream({ q: 'a long enough question to stream' }).pipe(toArray()))).rejects.toSatisfy(
        (e: unknown) => e instanceof ProviderError && /connection dropped|terminated/i.test(e.message),
      );
    }
    expect(proxy.tunnels.length).toBeGreaterThan(0);
  });
});

describe('a replaced global fetch (a mocking or tracing library)', () => {
  it('the default transport calls it instead of the dispatcher, for plain and streamed calls', async () => {
    const node = globalThis.fetch;
    const seen: string[] = [];
    globalThis.fetch = ((input: string | URL | Request, init?: RequestInit) => {
      seen.push(String(input instanceof Request ? input.url : input));
      return node(input, init);
    }) as typeof fetch;
    try {
      for (const provider of ['openai', 'huggingface'] as const) {
        seen.length = 0;
        const out = await callBoth(model(provider, undefined));
        expect(out.served).toBe(2);
        expect(seen).toHaveLength(2);
        expect(out.viaFetch).toEqual([true, true]);
      }
    } finally {
      globalThis.fetch = node;
    }
  });
});

describe('a global Agent with TLS options of its own (a private CA)', () => {
  let dir: string;
  let front: tls.Server;
  let origin: string;
  let ca: Buffer;
  const sockets = new Set<net.Socket>();

  beforeAll(async () => {
    // A self-signed certificate for 127.0.0.1, trusted only by the Agent the user sets.
    dir = mkdtempSync(join(tmpdir(), 'rxserve-tls-'));
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-days',
        '1',
        '-subj',
        '/CN=127.0.0.1',
        '-addext',
        'subjectAltName=IP:127.0.0.1',
        '-keyout',
        join(dir, 'key.pem'),
        '-out',
        join(dir, 'cert.pem'),
      ],
      { stdio: 'ignore' },
    );
    ca = readFileSync(join(dir, 'cert.pem'));
    const upstream = new URL(llm.openaiBaseURL);
    // TLS in front of the loopback LLM server: decrypts and relays the bytes.
    front = tls.createServer({ key: readFileSync(join(dir, 'key.pem')), cert: ca }, (socket) => {
      const to = net.connect(Number(upstream.port), upstream.hostname);
      for (const s of [socket, to]) {
        sockets.add(s);
        s.on('close', () => sockets.delete(s));
        s.on('error', () => undefined);
      }
      socket.pipe(to).pipe(socket);
    });
    await new Promise<void>((resolve) => front.listen(0, '127.0.0.1', resolve));
    origin = `https://127.0.0.1:${(front.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    for (const s of sockets) s.destroy();
    await new Promise((resolve) => front.close(resolve));
    rmSync(dir, { recursive: true, force: true });
  });

  it.each(['openai', 'huggingface'] as const)(
    "%s: the default transport connects with the global Agent's CA; without it, and on node-http, the certificate is refused",
    async (provider) => {
      const agent = new Agent({ connect: { ca } });
      setGlobalDispatcher(agent);
      try {
        const out = await callBoth(model(provider, undefined, 0, origin));
        expect(out.answer).toContain('plain?');
        expect(out.streamed).toContain('streamed?');
        expect(out.viaFetch).toEqual([false, false]);
        const own = model(provider, 'node-http', 0, origin);
        await own.load();
        await expect(own.predict({ q: 'x' }, ctx())).rejects.toSatisfy(
          (e: unknown) => e instanceof ProviderError && e.retryable === true && /certificate|connection failed/i.test(e.message),
        );
      } finally {
        setGlobalDispatcher(original);
        await agent.close();
      }
      // Node's own Agent does not trust the private CA: the answer above came through the user's.
      const plain = model(provider, undefined, 0, origin);
      await plain.load();
      await expect(plain.predict({ q: 'x' }, ctx())).rejects.toSatisfy(
        (e: unknown) => e instanceof ProviderError && /certificate|connection failed/i.test(e.message),
      );
    },
  );
});
