// The `fetch` behind `providerOptions.transport: 'node-http'`: undici's dispatcher API over one
// pooled keep-alive `Agent`. Node 20's global fetch (also undici) spends most of an LLM call's
// client-side CPU in its WHATWG machinery; with 64 calls in flight that CPU, not the server, caps
// throughput. `Agent.request()` skips it: ordinary responses are read into one buffer, only event
// streams go through a web ReadableStream. Redirects are undici's own (its redirect interceptor
// drops `authorization`, `cookie` and `proxy-authorization` when the origin changes).
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

  const nodeFetch = async (input: string | URL | Request, init: RequestInit = {}): Promise<Response> => {
    let url: URL;
    let method: string;
    let headers: Headers;
    let body: string | Uint8Array | undefined;
    const signal = init.signal ?? (input instanceof Request ? input.signal : undefined);
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
    const outgoing = headerRecord(headers);

    const dispatcher: Dispatcher = redirect === 'follow' ? following : agent;
    let res: Dispatcher.ResponseData;
    try {
      res = await dispatcher.request({
        origin: url.origin,
        path: `${url.pathname}${url.search}`,
        method,
        headers: outgoing,
        body,
        signal: signal ?? undefined,
        // A redirect loop or chain over the limit fails, as fetch does, instead of answering the 3xx.
        ...(redirect === 'follow' ? { throwOnMaxRedirect: true } : {}),
      });
    } catch (error) {
      if (signal?.aborted) throw signal.reason;
      const e = error as Error;
      if (e.message === 'max redirects' || /Redirect loop/.test(e.message)) {
        throw new TypeError(`node-http fetch: more than ${MAX_REDIRECTS} redirects (or a loop) from ${url.href}`, { cause: error });
      }
      // As fetch: a network failure is a TypeError('fetch failed') with the cause.
      throw new TypeError(`fetch failed`, { cause: error });
    }
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
      if (encoding === '' || encoding === 'identity') return new Response(await res.body.bytes(), responseInit);
      const chunks: Buffer[] = [];
      for await (const chunk of decoded(res.body, encoding)) chunks.push(chunk as Buffer);
      return new Response(Buffer.concat(chunks), responseInit);
    } catch (error) {
      if (signal?.aborted) throw signal.reason;
      throw new TypeError(`fetch failed`, { cause: error });
    }
  };
  const fetchFn = ((input: string | URL | Request, init?: RequestInit) => nodeFetch(input, init)) as typeof fetch;
  dispatchers.set(fetchFn, following);
  return fetchFn;
}

/** The dispatcher (redirects followed) behind each fetch made by `createNodeFetch`. */
const dispatchers = new WeakMap<typeof fetch, Dispatcher>();

/**
 * The undici dispatcher of a fetch made by `createNodeFetch` (its keep-alive pool, redirects
 * followed as the fetch follows them), for callers that read a streamed answer as a Node stream
 * instead of a `Response`; undefined for any other fetch.
 */
export function nodeFetchDispatcher(fetchFn: typeof fetch): Dispatcher | undefined {
  return dispatchers.get(fetchFn);
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
