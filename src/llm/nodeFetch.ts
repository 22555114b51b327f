// A `fetch` over node:http / node:https with keep-alive agents, for the LLM clients (both accept a
// `fetch` option). Node 20's global fetch (undici) spends most of an LLM call's client-side CPU in
// its WHATWG machinery; with 64 calls in flight that CPU, not the server, caps throughput. This
// one buffers ordinary responses and streams only event streams, so a JSON answer never goes
// through a web ReadableStream.
import http from 'node:http';
import https from 'node:https';
import { Readable } from 'node:stream';
import zlib from 'node:zlib';

export interface NodeFetchOptions {
  /** Sockets per origin at most (keep-alive); default 256. */
  readonly maxSockets?: number;
}

/** Statuses whose Response must have a null body. */
const NULL_BODY = new Set([101, 103, 204, 205, 304]);
const REDIRECT = new Set([301, 302, 303, 307, 308]);
const MAX_REDIRECTS = 20;

/**
 * Makes a `fetch` for `providerOptions.transport: 'node-http'`: same inputs and outputs as the
 * global fetch for what the openai and Hugging Face clients send (string, bytes or any body the
 * Request constructor takes; abort signals; redirects; gzip/deflate/br bodies decoded), over
 * node's own HTTP client.
 */
export function createNodeFetch(options: NodeFetchOptions = {}): typeof fetch {
  const maxSockets = options.maxSockets ?? 256;
  const agents = {
    'http:': new http.Agent({ keepAlive: true, maxSockets }),
    'https:': new https.Agent({ keepAlive: true, maxSockets }),
  };
  const nodeFetch = async (input: string | URL | Request, init: RequestInit = {}, redirects = 0): Promise<Response> => {
    let url: URL;
    let method: string;
    let headers: Headers;
    let body: string | Uint8Array | undefined;
    const signal = init.signal ?? (input instanceof Request ? input.signal : undefined);
    if (input instanceof Request || !(init.body === undefined || init.body === null || typeof init.body === 'string' || init.body instanceof Uint8Array)) {
      // Anything else (a Request, a Blob, FormData, a stream...): let the Request constructor
      // normalize it, as fetch would, then send its bytes.
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
    const agent = agents[url.protocol as keyof typeof agents];
    if (agent === undefined) throw new TypeError(`node-http fetch: unsupported protocol '${url.protocol}' in ${url.href}`);
    signal?.throwIfAborted();
    const outgoing: Record<string, string> = {};
    headers.forEach((value, key) => (outgoing[key] = value));
    if (body !== undefined && outgoing['content-length'] === undefined) outgoing['content-length'] = String(Buffer.byteLength(body));

    const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
      const request = (url.protocol === 'https:' ? https : http).request(url, { method, headers: outgoing, agent, signal: signal ?? undefined }, resolve);
      request.once('error', reject);
      request.end(body);
    });
    const status = res.statusCode ?? 0;
    const location = res.headers.location;
    if (REDIRECT.has(status) && location !== undefined && init.redirect !== 'manual') {
      res.resume();
      if (init.redirect === 'error') throw new TypeError(`node-http fetch: redirected to ${location} with redirect: 'error'`);
      if (redirects >= MAX_REDIRECTS) throw new TypeError(`node-http fetch: more than ${MAX_REDIRECTS} redirects from ${url.href}`);
      const keepBody = status === 307 || status === 308;
      const next: RequestInit = {
        ...init,
        method: keepBody ? method : method === 'HEAD' ? 'HEAD' : 'GET',
        headers,
        body: keepBody ? body : undefined,
      };
      return nodeFetch(new URL(location, url), next, redirects + 1);
    }

    const responseHeaders = new Headers();
    for (let i = 0; i < res.rawHeaders.length; i += 2) responseHeaders.append(res.rawHeaders[i], res.rawHeaders[i + 1]);
    const init2 = { status, statusText: res.statusMessage ?? '', headers: responseHeaders };
    if (NULL_BODY.has(status) || method === 'HEAD') {
      res.resume();
      return new Response(null, init2);
    }
    const source = decoded(res);
    const type = res.headers['content-type'] ?? '';
    if (type.includes('event-stream') || type.includes('ndjson')) {
      return new Response(Readable.toWeb(source) as ReadableStream<Uint8Array>, init2);
    }
    const chunks: Buffer[] = [];
    for await (const chunk of source) chunks.push(chunk as Buffer);
    return new Response(Buffer.concat(chunks), init2);
  };
  return ((input: string | URL | Request, init?: RequestInit) => nodeFetch(input, init)) as typeof fetch;
}

/** The response body with its content-encoding undone, as fetch does. */
function decoded(res: http.IncomingMessage): Readable {
  const encoding = (res.headers['content-encoding'] ?? '').trim().toLowerCase();
  const decoder =
    encoding === 'gzip' || encoding === 'x-gzip'
      ? zlib.createGunzip()
      : encoding === 'deflate'
        ? zlib.createInflate()
        : encoding === 'br'
          ? zlib.createBrotliDecompress()
          : undefined;
  if (decoder === undefined) return res;
  res.once('error', (error) => decoder.destroy(error));
  return res.pipe(decoder);
}

let shared: typeof fetch | undefined;

/** One node-http fetch (one pair of keep-alive agents) for every provider in the process. */
export function sharedNodeFetch(): typeof fetch {
  return (shared ??= createNodeFetch());
}
