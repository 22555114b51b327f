// serve(): a fastify server of its own, listening, with rxservePlugin's routes.
import type { Socket } from 'node:net';
import type { FastifyInstance } from 'fastify';
import type { OperatorFunction } from 'rxjs';
import { decodeOrThrow, NonEmptyString, Port, strict } from '../config.js';
import type { ServingEvent } from '../event.js';
import type { Invoker } from './invoker.js';
import { checkDashboard, checkEndpointNames, checkOpenAI, DEFAULT_MAX_BODY_BYTES, kInvoker, pluginOptionProps, rxservePlugin, type RxservePluginOptions } from './plugin.js';
import { errorBody, HttpError } from './status.js';

/** Options of `serve()`: the plugin's (but the pipeline, given apart), and where to listen. */
export interface ServeOptions extends Omit<RxservePluginOptions, 'pipeline'> {
  /** Default 8080; 0 picks a free port (read it from `server.url`). */
  readonly port?: number;
  /** Default `'127.0.0.1'` (loopback only); `'0.0.0.0'` to serve other machines. */
  readonly host?: string;
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

export const ServeOptionsCodec = strict('ServeOptions', {}, { port: Port, host: NonEmptyString, ...pluginOptionProps });

/**
 * Serves a pipeline over HTTP and resolves once listening.
 *
 * A fastify server with the routes of `rxservePlugin`: `POST /*` runs the JSON body through the
 * pipeline as one event (`path` the URL path, `id` the `x-request-id` header or a new one, echoed)
 * and answers 200 with the output body, or `{ "error": "<Name>: <message>" }` with the status of
 * its error (`RouteNotFoundError` 404, `QueueFullError` 503 + `Retry-After: 1`, `ModelTimeoutError`
 * or no answer within `timeoutMs` 504, `ConfigError` 500, anything else 400); the health and
 * `/v2/models` routes of the Open Inference Protocol; Bearer `apiKeys`. A client that disconnects
 * cancels its event's work. fastify is loaded on the first call, so importing rxserve does not load it.
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
 * @param options Port, host, graph, limits, listed models and API keys; validated now (rejects with `ConfigError`).
 * @returns The listening server. If it cannot listen, the rejection comes after the pipeline and graph were closed.
 */
export async function serve(pipeline: OperatorFunction<ServingEvent, ServingEvent>, options: ServeOptions = {}): Promise<Server> {
  const { port = 8080, host = '127.0.0.1', maxBodyBytes = DEFAULT_MAX_BODY_BYTES, ...rest } = decodeOrThrow(ServeOptionsCodec, options, 'serve');
  checkDashboard(rest, 'serve');
  checkOpenAI(rest, 'serve');
  checkEndpointNames(rest, 'serve');
  const { default: Fastify } = await import('fastify');
  let client: Invoker | undefined;
  const app = Fastify({
    logger: false,
    bodyLimit: maxBodyBytes,
    // The plugin answers requests arriving while it closes with its own 503 (error shape, Retry-After).
    return503OnClosing: false,
  });
  endIdleConnectionsOnClose(app);
  app.setNotFoundHandler((request, reply) => {
    void reply.code(404).send(errorBody(new HttpError('NotFoundError', `no route ${request.method} ${request.url.split('?')[0]}`, 404)));
  });
  try {
    await app.register(rxservePlugin, { pipeline, maxBodyBytes, ...rest, [kInvoker]: (c: Invoker) => (client = c) } as RxservePluginOptions);
    await app.listen({ port, host });
  } catch (error) {
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
 * When the app starts closing, ends the connections with no request in progress. Node's own
 * `server.close()` ends idle keep-alive connections, but not one that was opened and has not sent
 * a request yet (clients and proxies open those ahead of time), and the close would wait for it.
 * Connections busy at that moment end with their answer (the plugin sends `Connection: close`).
 *
 * Tracked per connection, not per request: a socket's response in progress is its
 * `_httpMessage` (set by node:http from the request's arrival until its response finished; the
 * field http-terminator and others read too). A listener per request cost ~1.5 µs of CPU.
 */
function endIdleConnectionsOnClose(app: FastifyInstance): void {
  const sockets = new Set<Socket>();
  app.server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  app.addHook('preClose', (done) => {
    for (const socket of sockets) if ((socket as Socket & { _httpMessage?: unknown })._httpMessage == null) socket.end();
    done();
  });
}
