// serve(): a fastify server of its own, listening, with rxservePlugin's routes.
import { maxHeaderSize, STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { OperatorFunction } from 'rxjs';
import { decodeOrThrow, NonEmptyString, Port, positiveInt, strict } from '../decode.js';
import type { ServingEvent } from '../event.js';
import type { Invoker } from './invoker.js';
import { apiKeyCheck, unauthorized } from './auth.js';
import { checkEndpointNames, loadMetrics } from './checks.js';
import {
  checkDashboard,
  checkOpenAI,
  DEFAULT_MAX_BODY_BYTES,
  pluginOptionProps,
  registerRoutes,
  requestIdOf,
  type RxservePluginOptions,
} from './plugin.js';
import { errorBody, HttpError } from './status.js';
import { pathOf } from './urlPath.js';

/** Options of `serve()`: the plugin's (but the pipeline, given apart), and where to listen. */
export interface ServeOptions extends Omit<RxservePluginOptions, 'pipeline'> {
  /** Default 8080; 0 picks a free port (read it from `server.url`). */
  readonly port?: number;
  /** Default `'127.0.0.1'` (loopback only); `'0.0.0.0'` to serve other machines. */
  readonly host?: string;
  /**
   * How long a request may take to arrive, headers and body, in ms; default 60,000. Past it the
   * client gets 408 and its connection is closed, so slow clients cannot hold sockets. It does not
   * bound the pipeline's work (that is `timeoutMs`) nor an answer being sent (that is `sendTimeoutMs`).
   */
  readonly requestTimeoutMs?: number;
}

/** A running server (see `serve`). */
export interface Server {
  /** `'http://127.0.0.1:PORT'` */
  readonly url: string;
  /** The fastify app, for what rxserve does not cover (its own routes cannot be added once listening). */
  readonly app: FastifyInstance;
  /**
   * Graceful: new requests get 503 (new connections are refused), requests in flight are
   * answered, then the pipeline's subscription ends and the graph closes.
   */
  close(): Promise<void>;
  /** Requests awaiting their answer from the pipeline. */
  readonly inFlight: number;
}

export const ServeOptionsCodec = strict(
  'ServeOptions',
  {},
  { port: Port, host: NonEmptyString, requestTimeoutMs: positiveInt(false), ...pluginOptionProps },
);

export const DEFAULT_REQUEST_TIMEOUT_MS = 60_000;

/**
 * Serves a pipeline over HTTP and resolves once listening.
 *
 * A fastify server with the routes of `rxservePlugin`: `POST /*` runs the JSON body through the
 * pipeline as one event (`path` the URL path, `id` the `x-request-id` header or a new one, echoed)
 * and answers 200 with the output body, or `{ "error": "<Name>: <message>" }` with the status of
 * its error (`RouteNotFoundError` 404, `QueueFullError` 503 + `Retry-After: 1`, `ModelTimeoutError`
 * or no answer within `timeoutMs` 504, `ConfigError` 500, anything else 400); the health and
 * `/v2/models` routes of the Open Inference Protocol; Bearer `apiKeys`, checked before routing;
 * `/metrics` and `/dashboard` when asked. A client that disconnects cancels its event's work; one
 * whose request does not arrive within `requestTimeoutMs` gets 408; every refusal closes its
 * connection; `close()` drains kept-alive connections rather than resetting them. fastify is loaded on the first call, so importing rxserve does not load it.
 *
 * ## Example
 * ```ts
 * import { createGraph, serve } from 'rxserve';
 * const graph = createGraph();
 * const server = await serve(graph.modelRunner({ models }), { graph, port: 0 });
 * await fetch(`${server.url}/score`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"x":1}' });
 * await server.close(); // answers what is in flight, then closes the graph
 * ```
 * @see rxservePlugin
 * @see invoker
 * @param pipeline One step, or a `pipe()` of steps, from serving events to serving events.
 * @param options Port, host, graph, limits and timeouts, listed models (endpoint names of the graph), API keys,
 *   dashboard, metrics; validated now (rejects with `ConfigError`).
 * @returns The listening server. If it cannot listen, the rejection comes after the pipeline and graph were closed.
 */
export async function serve(pipeline: OperatorFunction<ServingEvent, ServingEvent>, options: ServeOptions = {}): Promise<Server> {
  const {
    port = 8080,
    host = '127.0.0.1',
    maxBodyBytes = DEFAULT_MAX_BODY_BYTES,
    requestTimeoutMs = DEFAULT_REQUEST_TIMEOUT_MS,
    ...rest
  } = decodeOrThrow(ServeOptionsCodec, options, 'serve');
  checkDashboard(rest, 'serve');
  checkOpenAI(rest, 'serve');
  checkEndpointNames(rest, 'serve');
  const exporter = await loadMetrics(rest, 'serve');
  const { default: Fastify } = await import('fastify');
  let client: Invoker | undefined;
  const keyCheck = apiKeyCheck(rest.apiKeys);
  const app = Fastify({
    logger: false,
    bodyLimit: maxBodyBytes,
    // request.id: the x-request-id header when usable, else a new id (fastify's own requestIdHeader
    // would take any header as it is: off, the check is requestIdOf's).
    genReqId: requestIdOf,
    requestIdHeader: false,
    // The plugin answers requests arriving while it closes with its own 503 (error shape, Retry-After).
    return503OnClosing: false,
    // Node cuts a request whose headers or body take longer (408): headersTimeout must not be
    // longer, and its connection check must run often enough, or slow bodies are never cut.
    requestTimeout: requestTimeoutMs,
    http: {
      requestTimeout: requestTimeoutMs,
      headersTimeout: requestTimeoutMs,
      connectionsCheckingInterval: checkingInterval(requestTimeoutMs),
    },
    clientErrorHandler: (error, socket) => answerClientError(error, socket, requestTimeoutMs),
    frameworkErrors: (error, request, reply) => {
      const status = error.statusCode ?? 500;
      const refused =
        keyCheck !== undefined && !keyCheck(request.headers.authorization)
          ? unauthorized()
          : new HttpError(FRAMEWORK_ERRORS[error.code] ?? 'RxServeError', frameworkMessage(error, request.url), status);
      sendFrameworkError(request, reply, refused);
    },
  });
  drainOnClose(app, () => client?.inFlight ?? 0);
  try {
    // The routes in a context of their own, as rxservePlugin registers them; their invoker comes back as the result.
    const options: RxservePluginOptions = { pipeline, maxBodyBytes, ...rest };
    await app.register(async (context) => void (client = await registerRoutes(context, options, { ownsApp: true, exporter })));
    await app.listen({ port, host });
  } catch (error) {
    exporter?.detach();
    await app.close();
    throw error;
  }
  const address = app.server.address();
  const bound = typeof address === 'object' && address !== null ? address : { address: host, port, family: 'IPv4' };
  const url = `http://${bound.family === 'IPv6' ? `[${bound.address}]` : bound.address}:${bound.port}`;
  let closing: Promise<void> | undefined;
  return {
    url,
    app,
    close: () => (closing ??= app.close()),
    get inFlight() {
      return client?.inFlight ?? 0;
    },
  };
}

/**
 * While closing, how long kept-alive connections stay open after the last answer in flight was
 * sent: a request a client already sent on one gets its 503, not a reset.
 */
export const CLOSE_GRACE_MS = 100;

/**
 * Closing without resetting kept-alive clients. fastify's close calls Node's `server.close()`
 * after the `preClose` hooks: it stops accepting connections (first, as it should) but also
 * destroys every idle kept-alive connection at once, so a request a client is sending on one at
 * that moment was lost with ECONNRESET (6 to 11 of 64 looping clients saw one). Here those
 * connections stay open until the answers in flight are sent and `CLOSE_GRACE_MS` more: a request
 * arriving on one meanwhile gets the plugin's 503 with `Connection: close`, and every answer sent
 * while closing ends its connection. Then what is left — connections idle since closing began,
 * never used (Node's close leaves those open), or still sending a request (Node stops cutting slow
 * requests once closing) — is ended, and the close waits only for answers being written.
 *
 * Tracked per connection, not per request: a socket's response in progress is its
 * `_httpMessage` (set by node:http from the request's arrival until its response finished; the
 * field http-terminator and others read too). A listener per request cost ~1.5 µs of CPU.
 */
function drainOnClose(app: FastifyInstance, inFlight: () => number): void {
  const sockets = new Set<Socket>();
  app.server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  app.addHook('preClose', (done) => {
    // An own property shadows node:http's method during the drain; removed after.
    const server = app.server as unknown as { closeIdleConnections?: () => void };
    server.closeIdleConnections = () => undefined;
    void quiet(inFlight, CLOSE_GRACE_MS).then(() => {
      delete server.closeIdleConnections;
      for (const socket of sockets) {
        const answer = (socket as Socket & { _httpMessage?: { headersSent: boolean } | null })._httpMessage;
        // An answer being written ends its connection when sent (Connection: close).
        if (answer == null || !answer.headersSent) socket.destroySoon();
      }
    });
    done();
  });
}

/** Resolves once `count()` has stayed 0 for `graceMs` (polled every 10 ms: while closing only). */
function quiet(count: () => number, graceMs: number): Promise<void> {
  return new Promise((resolve) => {
    let since: number | undefined;
    const timer = setInterval(() => {
      if (count() > 0) since = undefined;
      else if (Date.now() - (since ??= Date.now()) >= graceMs) {
        clearInterval(timer);
        resolve();
      }
    }, 10);
  });
}

/** How often Node looks for requests past their time: a tenth of it, between 50 ms and 5 s. */
function checkingInterval(requestTimeoutMs: number): number {
  return Math.min(5_000, Math.max(50, Math.round(requestTimeoutMs / 10)));
}

/**
 * Node's errors of a connection before any route runs (a request too slow, headers too large,
 * bytes that are not HTTP), answered in rxserve's error shape instead of fastify's, and the
 * connection closed. As Node does, nothing is written once an answer has begun on the socket.
 */
function answerClientError(error: Error & { code?: string }, socket: Socket, requestTimeoutMs: number): void {
  if (error.code === 'ECONNRESET' || socket.destroyed) return;
  const refusal =
    error.code === 'ERR_HTTP_REQUEST_TIMEOUT'
      ? new HttpError(
          'RequestTimeoutError',
          `the request's headers and body did not arrive within ${requestTimeoutMs} ms (requestTimeoutMs); the connection is closed`,
          408,
        )
      : error.code === 'HPE_HEADER_OVERFLOW'
        ? new HttpError('RequestHeaderFieldsTooLargeError', `the request line and headers are larger than ${maxHeaderSize} bytes`, 431)
        : new HttpError('BadRequestError', `the request is not valid HTTP/1.1 (${error.code ?? error.message})`, 400);
  const answer = (socket as Socket & { _httpMessage?: { headersSent?: boolean } | null })._httpMessage;
  if (socket.writable && answer?.headersSent !== true) {
    const body = JSON.stringify(errorBody(refusal));
    socket.write(
      `HTTP/1.1 ${refusal.statusCode} ${STATUS_CODES[refusal.statusCode]}\r\ncontent-type: application/json; charset=utf-8\r\n` +
        `content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
    );
  }
  // Flushed, then closed both ways: a client still sending its body is not read any further.
  socket.destroySoon();
}

/** fastify's own errors before routing, by code: the names rxserve gives them. */
const FRAMEWORK_ERRORS: Record<string, string> = {
  FST_ERR_BAD_URL: 'BadRequestError',
  FST_ERR_MAX_PARAM_LENGTH: 'URITooLongError',
};

function frameworkMessage(error: FastifyError, url: string): string {
  const path = pathOf(url);
  const shown = path.length > 200 ? `${path.slice(0, 200)}...` : path;
  switch (error.code) {
    case 'FST_ERR_BAD_URL':
      return `the URL path '${shown}' is not valid (a bad percent-encoding)`;
    case 'FST_ERR_MAX_PARAM_LENGTH':
      return `a segment of the URL path '${shown}' is longer than 100 characters`;
    default:
      return error.message;
  }
}

/** An answer to fastify's own error, in rxserve's shape (no hooks ran: the request id is set here). */
function sendFrameworkError(request: FastifyRequest, reply: FastifyReply, error: HttpError): void {
  if (error.statusCode === 401) reply.header('www-authenticate', 'Bearer realm="rxserve"');
  void reply
    .code(error.statusCode)
    .header('x-request-id', request.id)
    .header('connection', 'close')
    .type('application/json; charset=utf-8')
    .send(JSON.stringify(errorBody(error)));
}
