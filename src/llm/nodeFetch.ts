// The `fetch`es the LLM providers' clients are given. Node 20's global fetch (undici) spends most
// of an LLM call's client-side CPU in its WHATWG machinery; with 64 calls in flight that CPU, not
// the server, caps throughput, and a streamed answer's first token comes later. undici's
// `request()` skips it: ordinary responses are read into one buffer, only event streams go
// through a web ReadableStream. Two senders under one fetch: the default transport's
// (`globalDispatcherFetch`) sends on the process's global dispatcher — what the global fetch sends
// on, so a user's `setGlobalDispatcher` proxy or TLS setup applies — and follows redirects itself
// (that dispatcher may be Node's bundled undici 6, which rejects undici 7's redirect handler);
// `createNodeFetch` (transport 'node-http') sends on a keep-alive `Agent` of its own, redirects by
// undici 7's interceptor. Both drop `authorization`, `cookie` and `proxy-authorization` when a
// redirect changes the origin.
import { Readable } from 'node:stream';
import zlib from 'node:zlib';
import type { Dispatcher } from 'undici';
import { fetchHeaders, headerRecord, loadUndici } from '../undici.js';

export interface NodeFetchOptions {
  /** Connections per origin at most (keep-alive); default 256. */
  readonly maxSockets?: number;
  /** How long an idle connection is kept open, ms; default 10 s (a server's shorter `keep-alive: timeout` wins). */
  readonly keepAliveTimeoutMs?: number;
}

/** Statuses whose Response must have a null body. */
const NULL_BODY = new Set([101, 103, 204, 205, 304]);
const REDIRECT = new Set([301, 302, 303, 307, 308]);
const MAX_REDIRECTS = 20;

/**
 * Makes a `fetch` for the openai and Hugging Face clients (both take a `fetch` option) over one
 * undici `Agent` with keep-alive.
 *
 * Same inputs and outputs as the global fetch for what those clients send: a string, bytes or any
 * body the Request constructor takes; abort signals; redirects (followed by undici, credentials
 * dropped across origins; `redirect: 'manual'` and `'error'` honoured); gzip/deflate/br bodies
 * decoded. Ordinary answers are buffered; `text/event-stream` and `ndjson` answers are streamed.
 *
 * ## Example
 * ```ts
 * import OpenAI from 'openai';
 * import { createNodeFetch } from 'rxserve/llm';
 * const client = new OpenAI({ fetch: createNodeFetch() });
 * ```
 * @param options `maxSockets` (default 256 per origin), `keepAliveTimeoutMs` (default 10 s).
 * @returns A `fetch`; its connections live as long as it does (idle ones do not keep the process alive).
 */
export function createNodeFetch(options: NodeFetchOptions = {}): typeof fetch {
  const maxSockets = options.maxSockets ?? 256;
  if (!Number.isInteger(maxSockets) || maxSockets < 1)
    throw new TypeError(`createNodeFetch: options.maxSockets must be a positive integer, got ${String(options.maxSockets)}`);
  const keepAliveTimeout = options.keepAliveTimeoutMs ?? 10_000;
  if (!Number.isFinite(keepAliveTimeout) || keepAliveTimeout < 0) {
    throw new TypeError(
      `createNodeFetch: options.keepAliveTimeoutMs must be a non-negative number, got ${String(options.keepAliveTimeoutMs)}`,
    );
  }
  const { Agent, interceptors } = loadUndici();
  const agent = new Agent({ connections: maxSockets, keepAliveTimeout });
  // One dispatcher that follows redirects, one that does not (redirect: 'manual' | 'error').
  const following = agent.compose(interceptors.redirect({ maxRedirections: MAX_REDIRECTS }));
  const send: Send = async (url, out) => {
    const follow = out.redirect === 'follow';
    try {
      return await (follow ? following : agent).request({
        origin: url.origin,
        path: `${url.pathname}${url.search}`,
        method: out.method,
        headers: out.headers,
        body: out.body,
        signal: out.signal,
        // A redirect loop or chain over the limit fails, as fetch does, instead of answering the 3xx.
        ...(follow ? { throwOnMaxRedirect: true } : {}),
      });
    } catch (error) {
      const e = error as Error;
      if (!out.signal?.aborted && (e.message === 'max redirects' || /Redirect loop/.test(e.message))) {
        throw new TypeError(`node-http fetch: more than ${MAX_REDIRECTS} redirects (or a loop) from ${url.href}`, { cause: error });
      }
      throw failure(error, out.signal);
    }
  };
  const fetchFn = fetchOver(() => send);
  senders.set(fetchFn, send);
  return fetchFn;
}

/** What a fetch sends, as undici's dispatcher API takes it (header names lower-case; a sender copies them before it changes any). */
interface Outgoing {
  method: string;
  headers: Readonly<Record<string, string>>;
  body: string | Uint8Array | undefined;
  signal: AbortSignal | undefined;
  redirect: 'follow' | 'manual' | 'error';
}

/**
 * Sends one request and answers it as undici's `request()` does (a Node stream body), redirects
 * followed when `redirect` is 'follow'; fails as fetch does: the signal's reason once aborted,
 * else a TypeError (a network failure is `TypeError('fetch failed')` with the cause).
 */
export type Send = (url: URL, out: Outgoing) => Promise<Dispatcher.ResponseData>;

/** A fetch over `pick()`'s sender; where `pick()` has none for this call, the global fetch. */
function fetchOver(pick: () => Send | undefined): typeof fetch {
  const nodeFetch = async (input: string | URL | Request, init: RequestInit = {}): Promise<Response> => {
    const send = pick();
    if (send === undefined) return globalThis.fetch(input, init);
    let url: URL;
    let method: string;
    let headers: Headers;
    let body: string | Uint8Array | undefined;
    const signal = init.signal ?? (input instanceof Request ? input.signal : undefined) ?? undefined;
    const redirect = init.redirect ?? (input instanceof Request ? input.redirect : 'follow');
    if (
      input instanceof Request ||
      !(init.body === undefined || init.body === null || typeof init.body === 'string' || init.body instanceof Uint8Array)
    ) {
      // Anything else (a Request, a Blob, FormData, a stream...): let the Request constructor
      // normalize it, as fetch would, then send its bytes (a byte body can be re-sent on a 307).
      const request = new Request(input, init);
      url = new URL(request.url);
      method = request.method;
      headers = request.headers;
      body = request.body === null ? undefined : new Uint8Array(await request.arrayBuffer());
    } else {
      url = new URL(input);
      method = (init.method ?? 'GET').toUpperCase();
      headers = new Headers(init.headers);
      body = init.body ?? undefined;
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw new TypeError(`node-http fetch: unsupported protocol '${url.protocol}' in ${url.href}`);
    }
    signal?.throwIfAborted();
    const res = await send(url, { method, headers: headerRecord(headers), body, signal, redirect });
    const status = res.statusCode;
    if (redirect === 'error' && REDIRECT.has(status)) {
      res.body.resume();
      throw new TypeError(`node-http fetch: redirected to ${String(res.headers.location)} with redirect: 'error'`);
    }

    const responseHeaders = fetchHeaders(res.headers);
    const responseInit = { status, statusText: res.statusText ?? '', headers: responseHeaders };
    if (NULL_BODY.has(status) || method === 'HEAD') {
      res.body.resume();
      return new Response(null, responseInit);
    }
    const encoding = String(res.headers['content-encoding'] ?? '')
      .trim()
      .toLowerCase();
    const type = String(res.headers['content-type'] ?? '');
    if (type.includes('event-stream') || type.includes('ndjson')) {
      return new Response(Readable.toWeb(decoded(res.body, encoding)) as ReadableStream<Uint8Array>, responseInit);
    }
    try {
      // Read as a Node stream, not with the body's own helpers: the global dispatcher may be any undici's.
      const chunks: Buffer[] = [];
      for await (const chunk of decoded(res.body, encoding)) chunks.push(chunk as Buffer);
      return new Response(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks), responseInit);
    } catch (error) {
      throw failure(error, signal);
    }
  };
  return (input: string | URL | Request, init?: RequestInit) => nodeFetch(input, init);
}

/** As fetch fails: the signal's reason once aborted, else `TypeError('fetch failed')` with the cause. */
function failure(error: unknown, signal: AbortSignal | undefined): unknown {
  if (signal?.aborted) return signal.reason;
  return new TypeError(`fetch failed`, { cause: error });
}

/** The sender behind each fetch made by `createNodeFetch` (its keep-alive pool, redirects as the fetch follows them). */
const senders = new WeakMap<typeof fetch, Send>();

/**
 * The sender of a fetch made by `createNodeFetch`, for callers that read a streamed answer as a
 * Node stream instead of a `Response`; undefined for any other fetch.
 */
export function nodeFetchSender(fetchFn: typeof fetch): Send | undefined {
  return senders.get(fetchFn);
}

/** The response body with its content-encoding undone, as fetch does. */
function decoded(body: Readable, encoding: string): Readable {
  const decoder =
    encoding === 'gzip' || encoding === 'x-gzip'
      ? zlib.createGunzip()
      : encoding === 'deflate'
        ? zlib.createInflate()
        : encoding === 'br'
          ? zlib.createBrotliDecompress()
          : undefined;
  if (decoder === undefined) return body;
  body.once('error', (error) => decoder.destroy(error));
  return body.pipe(decoder);
}

let shared: typeof fetch | undefined;

/** One node-http fetch (one undici Agent) for every provider in the process. */
export function sharedNodeFetch(): typeof fetch {
  return (shared ??= createNodeFetch());
}

/** Where every undici (Node's bundled one, undici 5–7 from npm) keeps the process's global dispatcher. */
const GLOBAL_DISPATCHER = Symbol.for('undici.globalDispatcher.1');
/** Request headers fetch drops when a redirect turns the request into a GET without a body. */
const BODY_HEADERS = ['content-type', 'content-length', 'content-encoding', 'content-language', 'content-location'];
/** Request headers that never follow a redirect to another origin. */
const CREDENTIALS = ['authorization', 'cookie', 'proxy-authorization', 'host'];

let checkedFetch: unknown;
let fetchIsNodes = false;

/**
 * Node's own global `fetch` (not one replaced or wrapped by a mocking or tracing library):
 * recognized by its source, the lazy loader of Node's bundled undici. Anything else is not
 * recognized, so the caller keeps the global fetch.
 */
function globalFetchIsNodes(): boolean {
  const current = globalThis.fetch;
  if (current !== checkedFetch) {
    checkedFetch = current;
    fetchIsNodes =
      typeof current === 'function' && Function.prototype.toString.call(current).includes("require('internal/deps/undici/undici')");
  }
  return fetchIsNodes;
}

/**
 * Sends on the process's global undici dispatcher — the one the global fetch sends on: Node's own
 * Agent, or whatever the user set with `setGlobalDispatcher` (a ProxyAgent, an Agent with custom
 * TLS...) — through that dispatcher's own `request()`, so whichever undici made it, its own
 * handler API is the one used. Redirects are followed here, as fetch follows them (at most 20; a
 * 303, or a 301/302 after a POST, becomes a GET without a body; `authorization`, `cookie` and
 * `proxy-authorization` are dropped when the origin changes), each hop again through the dispatcher.
 */
const sendGlobal: Send = async (first, out) => {
  const dispatcher = (globalThis as Record<symbol, Dispatcher | undefined>)[GLOBAL_DISPATCHER]!;
  let url = first;
  let { method, body } = out;
  let headers = out.headers;
  for (let hops = 0; ; hops++) {
    let res: Dispatcher.ResponseData;
    try {
      res = await dispatcher.request({
        origin: url.origin,
        path: `${url.pathname}${url.search}`,
        method,
        headers,
        body,
        signal: out.signal,
      });
    } catch (error) {
      throw failure(error, out.signal);
    }
    const location = res.headers.location;
    if (out.redirect !== 'follow' || !REDIRECT.has(res.statusCode) || typeof location !== 'string') return res;
    res.body.on('error', () => undefined).resume(); // drained, so the connection is kept
    if (hops === MAX_REDIRECTS) throw new TypeError(`node-http fetch: more than ${MAX_REDIRECTS} redirects (or a loop) from ${first.href}`);
    let next: URL;
    try {
      next = new URL(location, url);
    } catch (error) {
      throw new TypeError(`fetch failed`, { cause: error });
    }
    if (next.protocol !== 'http:' && next.protocol !== 'https:') {
      throw new TypeError(`node-http fetch: redirected to unsupported protocol '${next.protocol}' (${next.href})`);
    }
    const copy = { ...headers }; // the caller's are not changed (a provider reuses its own)
    const status = res.statusCode;
    if ((status === 303 && method !== 'GET' && method !== 'HEAD') || ((status === 301 || status === 302) && method === 'POST')) {
      method = 'GET';
      body = undefined;
      for (const name of BODY_HEADERS) delete copy[name];
    }
    if (next.origin !== url.origin) for (const name of CREDENTIALS) delete copy[name];
    headers = copy;
    url = next;
  }
};

/**
 * The sender on the global dispatcher when that is sound for this call — the global fetch is
 * Node's own and the global dispatcher has undici's `request()` — else undefined (use the global
 * fetch). Read per call: a dispatcher set later, or a fetch replaced later, is honoured.
 */
export function globalDispatcherSender(): Send | undefined {
  if (!globalFetchIsNodes()) return undefined;
  void globalThis.Headers; // Node's undici installs its Agent as the global dispatcher when none is set yet
  const dispatcher = (globalThis as Record<symbol, { request?: unknown } | undefined>)[GLOBAL_DISPATCHER];
  return typeof dispatcher?.request === 'function' ? sendGlobal : undefined;
}

/**
 * The default transport, `'dispatcher'`: a fetch that sends on the global dispatcher (what the
 * global fetch sends on) without fetch's WHATWG layer, and is the global fetch itself whenever
 * `globalDispatcherSender()` says that is not sound.
 */
export const globalDispatcherFetch: typeof fetch = fetchOver(globalDispatcherSender);
