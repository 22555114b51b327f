// rxservePlugin: the §11 routes as a fastify plugin (serve() registers it on an app of its own).
// Over 300 lines: every §11 route with its status mapping and auth; the dashboard, SSE and OpenAI
// routes already live in files of their own.
import type {
  FastifyError,
  FastifyInstance,
  FastifyPluginAsync,
  FastifyReply,
  FastifyRequest,
  onRequestHookHandler,
  RouteOptions,
} from 'fastify';
import fp from 'fastify-plugin';
import * as t from 'io-ts';
import type { OperatorFunction } from 'rxjs';
import { DEFAULT_MAX_BODY_DEPTH, isDepthProblem, jsonTextProblem } from '../body.js';
import { decodeOrThrow, fn, NonEmptyString, NonNegativeMs, positiveInt, strict } from '../decode.js';
import { ConfigError, toError } from '../errors.js';
import type { ServingEvent } from '../event.js';
import type { Graph } from '../graph/graph.js';
import type { PrometheusExporter } from '../monitoring/prometheus.js';
import { apiKeyCheck, unauthorized } from './auth.js';
import { checkEndpointNames, loadMetrics } from './checks.js';
import { GraphCodec } from './graphCodec.js';
import { DashboardSessions, registerDashboard, sendDashboardUnauthorized, type DashboardRouteConfig } from './dashboard/plugin.js';
import { routeInvoker, type Invoker } from './invoker.js';
import { registerOpenAIRoutes, type OpenAIFrontOptions } from './openai.js';
import { lingerOnClose } from './linger.js';
import { ClientWatch, DEFAULT_STREAM_LIMITS, sendEventStream, wantsEventStream, type StreamLimits } from './sse.js';
import { errorBody, HttpError, refusalStatus, retryAfterOf, sendJson, statusOf } from './status.js';
import { closeIfUnread } from './unread.js';
import { listedModels, metadataPath, serverMetadata } from './v2.js';
import { newRequestId } from './requestId.js';
import { pathOf } from './urlPath.js';

/** Options of `rxservePlugin` (`app.register(rxservePlugin, options)`). */
export interface RxservePluginOptions {
  /** What answers `POST /*`: one step or a `pipe()` of steps. */
  readonly pipeline: OperatorFunction<ServingEvent, ServingEvent>;
  /** The pipeline's graph: readiness waits for `graph.ready()`, `/v2/models` lists its endpoints, closing the app closes it. */
  readonly graph?: Graph;
  /** How long a request waits for its answer before a 504 (its work is aborted); default 30,000 ms. */
  readonly timeoutMs?: number;
  /** How long closing waits for flows' background branches (docs/design.md §17) once every answer is sent; default 30,000 ms. */
  readonly closeTimeoutMs?: number;
  /** The names `/v2/models` lists; default the graph's endpoint names. */
  readonly models?: readonly string[];
  /** When set, every route but `/v2/health/*` needs `Authorization: Bearer <one of these>` (else 401). */
  readonly apiKeys?: readonly string[];
  /** Largest request body accepted (bytes); more → 413. Default 10 MiB. */
  readonly maxBodyBytes?: number;
  /** Deepest nesting of a JSON body accepted (`{"a":1}` is 1); deeper → 400 before the pipeline. Default 256. */
  readonly maxBodyDepth?: number;
  /** Serve the live page of the graph at `GET /dashboard` (needs `graph`; see docs/dashboard.md). */
  readonly dashboard?: boolean;
  /**
   * Serve the graph's Prometheus metrics at `GET /metrics` (needs `graph` and the optional peer
   * prom-client; behind `apiKeys` like every route; docs/monitoring.md).
   */
  readonly metrics?: boolean;
  /** Adds the OpenAI-compatible routes (`POST /v1/chat/completions`, `GET /v1/models`) over these endpoints (docs/design.md §15). */
  readonly openai?: OpenAIFrontOptions;
  /**
   * How long an answer may wait on a client that does not read it. An event stream (SSE, `/v1`
   * with `stream: true`): from a write the connection did not take at once until the client has
   * read all of it (or, once the answer ended, its last byte); past it the connection is closed
   * and a call still running is cancelled. A JSON answer the connection did not take at once: its
   * last byte must be read within it, else the connection is closed. Default 60,000 ms;
   * `Infinity` = never (docs/streaming.md, docs/serving.md).
   */
  readonly sendTimeoutMs?: number;
  /**
   * The most an event stream keeps unsent for a client reading slower than its answer comes:
   * more, and the call is cancelled and the connection closed. Default 1 MiB.
   */
  readonly maxStreamBufferBytes?: number;
}

export const OpenAIFrontCodec = strict('OpenAIFrontOptions', { models: t.record(NonEmptyString, NonEmptyString) }, {});

/** The plugin's optional fields; `serve()` takes the same ones beside `port` and `host`. */
export const pluginOptionProps = {
  graph: GraphCodec,
  timeoutMs: positiveInt(true),
  closeTimeoutMs: NonNegativeMs,
  models: t.array(NonEmptyString),
  apiKeys: t.array(NonEmptyString),
  maxBodyBytes: positiveInt(false),
  maxBodyDepth: positiveInt(false),
  dashboard: t.boolean,
  metrics: t.boolean,
  openai: OpenAIFrontCodec,
  sendTimeoutMs: positiveInt(true),
  maxStreamBufferBytes: positiveInt(true),
};

const PluginOptionsCodec = strict(
  'RxservePluginOptions',
  { pipeline: fn<OperatorFunction<ServingEvent, ServingEvent>>('an operator (event$) => event$') },
  pluginOptionProps,
);

/** The dashboard shows a graph: `dashboard: true` without one is a ConfigError at `<at>.dashboard`. */
export function checkDashboard(options: { dashboard?: boolean; graph?: unknown }, at: string): void {
  if (options.dashboard === true && options.graph === undefined) {
    throw new ConfigError([
      { path: `${at}.dashboard`, expected: 'a graph option too (the dashboard shows the graph)', actual: 'dashboard: true without graph' },
    ]);
  }
}

/** The OpenAI front finds each endpoint's answer where the graph says its step writes it: `openai` without a graph is a ConfigError. */
export function checkOpenAI(options: { openai?: unknown; graph?: unknown }, at: string): void {
  if (options.openai !== undefined && options.graph === undefined) {
    throw new ConfigError([
      {
        path: `${at}.openai`,
        expected: "a graph option too (the front finds each endpoint's answer through it)",
        actual: 'openai without graph',
      },
    ]);
  }
}

/** The options fastify's `register` adds for itself (they are not the plugin's). */
const REGISTER_OPTIONS = new Set(['prefix', 'logLevel', 'logSerializers']);

export const DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024;

/** The request id: `x-request-id` when the client sent a usable one (at most this long), else a new one. */
const MAX_REQUEST_ID = 200;

/** Refusals after which the client's connection is closed: it may still be sending a body nobody reads. */
const CLOSING_REFUSALS = new Set([401, 413, 415]);

/**
 * The rxserve routes as a fastify plugin, for an app you already have.
 *
 * Registers, in its own encapsulated context (its hooks, parsers and error handler do not touch
 * your other routes): `POST /*` (each JSON body becomes an event of `pipeline`, answered with the
 * output event's body or `{ "error": "<Name>: <message>" }` with the status of §11),
 * `GET /v2/health/live`, `GET /v2/health/ready`, `GET /v2` (server metadata), `GET /v2/models`,
 * `GET /v2/models/<name>` (asked of the pipeline when it is a modelRouter or votingEnsemble) and
 * `GET /v2/models/<name>/ready`, and with `dashboard: true` the live page `GET /dashboard`
 * (docs/dashboard.md). Only `application/json` bodies are accepted (else 415), with
 * a prototype-poisoning guard (400, as fastify's own parser) and a body limit (413). Closing the app answers the
 * requests in flight (new ones get 503), then closes the pipeline and the graph.
 *
 * ## Example
 * ```ts
 * import Fastify from 'fastify';
 * import { createGraph, rxservePlugin } from 'rxserve';
 * const app = Fastify();
 * app.get('/hello', async () => 'your own route');
 * await app.register(rxservePlugin, { pipeline, graph, prefix: '/ml', apiKeys: [process.env.KEY!] });
 * await app.listen({ port: 8080 });            // POST /ml/score, GET /ml/v2/health/ready, ...
 * ```
 * @see serve
 */
export const rxservePlugin: FastifyPluginAsync<RxservePluginOptions> = fp(
  async (app: FastifyInstance, opts: RxservePluginOptions) => {
    const own = Object.fromEntries(Object.entries(opts).filter(([key]) => !REGISTER_OPTIONS.has(key)));
    const options = decodeOrThrow(PluginOptionsCodec, own, 'rxservePlugin');
    checkDashboard(options, 'rxservePlugin');
    checkOpenAI(options, 'rxservePlugin');
    checkEndpointNames(options, 'rxservePlugin');
    await registerRoutes(app, options, { ownsApp: false, exporter: await loadMetrics(options, 'rxservePlugin') });
  },
  // Metadata only: the routes keep a context of their own (encapsulate), so their hooks, parsers
  // and error handler never reach the app's other routes.
  { name: 'rxserve', fastify: '5.x', encapsulate: true },
);

/** What `serve()` knows that the plugin's options do not say. */
export interface RouteSetup {
  /** serve() owns the app: its unknown routes are answered here too (503 while closing, 401 without a key, else 404). */
  readonly ownsApp: boolean;
  /** The metrics exporter, loaded by whoever checked the options (so the error names their option). */
  readonly exporter: PrometheusExporter | undefined;
}

/**
 * @internal rxserve's routes on `app` (a context of their own), for options already checked; the
 * invoker answering them is returned, so `serve()` needs no back channel through the options.
 */
export async function registerRoutes(app: FastifyInstance, options: RxservePluginOptions, setup: RouteSetup): Promise<Invoker> {
  const {
    pipeline,
    graph,
    timeoutMs,
    closeTimeoutMs,
    models,
    apiKeys,
    maxBodyBytes = DEFAULT_MAX_BODY_BYTES,
    maxBodyDepth = DEFAULT_MAX_BODY_DEPTH,
    dashboard,
    openai,
    sendTimeoutMs = DEFAULT_STREAM_LIMITS.sendTimeoutMs,
    maxStreamBufferBytes = DEFAULT_STREAM_LIMITS.maxBufferBytes,
  } = options;
  const streamLimits: StreamLimits = { sendTimeoutMs, maxBufferBytes: maxStreamBufferBytes };
  const { exporter } = setup;
  const { client, begin } = routeInvoker(pipeline, {
    ...(graph ? { graph } : {}),
    ...(timeoutMs !== undefined ? { timeoutMs } : {}),
    ...(closeTimeoutMs !== undefined ? { closeTimeoutMs } : {}),
  });
  // Request ids from the x-request-id header (validated) or new: fastify's own request.id, for this context's routes.
  app.setGenReqId(requestIdOf);

  let closing = false;
  let graphReady = graph === undefined;
  let loadError: Error | undefined;
  graph?.ready().then(
    () => void (graphReady = true),
    (error: unknown) => void (loadError = toError(error)),
  );
  const isReady = (): boolean => graphReady && app.server.listening && !closing;

  app.addHook('preClose', (done) => {
    closing = true;
    done();
  });
  // fastify runs this once the server has stopped and every request in flight was answered.
  app.addHook('onClose', async () => {
    exporter?.detach();
    await client.close();
  });

  const keyCheck = apiKeyCheck(apiKeys);
  const sessions = new DashboardSessions();
  // What runs before each route: closing → 503, and with API keys, a key check → 401 (the
  // dashboard's pages accept its sign-in cookie instead). Attached to each route as it is added,
  // picked by the route's config, rather than one hook reading `request.routeOptions` (rebuilt on
  // every read) per request. `POST /*` runs none without API keys: it checks `closing` itself,
  // saving fastify's hook runner per request.
  const refuseIfClosing = (reply: FastifyReply): boolean => {
    if (!closing) return false;
    sendError(reply, new HttpError('RxServeError', 'the server is closing; no new requests are taken', 503));
    return true;
  };
  const publicGuard: onRequestHookHandler = (request, reply, done) => {
    reply.header('x-request-id', request.id);
    if (!refuseIfClosing(reply)) done();
  };
  const keyGuard: onRequestHookHandler = (request, reply, done) => {
    reply.header('x-request-id', request.id);
    if (refuseIfClosing(reply)) return;
    if (keyCheck!(request.headers.authorization)) return done();
    reply.header('www-authenticate', 'Bearer realm="rxserve"');
    sendError(reply, unauthorized());
  };
  const dashboardGuard: onRequestHookHandler = (request, reply, done) => {
    reply.header('x-request-id', request.id);
    if (refuseIfClosing(reply)) return;
    // A browser presents its sign-in cookie (docs/dashboard.md).
    if (keyCheck!(request.headers.authorization) || sessions.has(request)) return done();
    sendDashboardUnauthorized(request, reply, app.prefix);
  };
  app.addHook('onRoute', (route: RouteOptions & { config?: RouteConfig }) => {
    const config = route.config ?? {};
    const guard =
      keyCheck === undefined || config.rxservePublic === true
        ? config.rxserveHot === true
          ? undefined
          : publicGuard
        : config.rxserveDashboard !== undefined
          ? dashboardGuard
          : keyGuard;
    if (guard === undefined) return;
    const own = route.onRequest === undefined ? [] : Array.isArray(route.onRequest) ? route.onRequest : [route.onRequest];
    route.onRequest = [guard, ...own];
  });

  // Only JSON. Neither JSON.parse nor the key check recurses, so a body nested thousands deep is
  // parsed, then refused here for its depth before any step (or JSON.stringify, or structured
  // clone, which do recurse) sees it (docs/design.md §11); so is a `__proto__` or
  // `constructor.prototype` key (prototype poisoning), as fastify's own parser refuses them. One
  // check for both, and none at all for a short text naming neither key (see jsonTextProblem):
  // fastify's parser would scan the text twice with its regexes and call back through a closure.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('application/json', { parseAs: 'string', bodyLimit: maxBodyBytes }, (_request, body, done) => {
    // parseAs: 'string'; a byte order mark is dropped, as fastify's parser does.
    const text = (body as string).charCodeAt(0) === 0xfeff ? (body as string).slice(1) : (body as string);
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (error) {
      return done(jsonError(text, error), undefined);
    }
    const problem = jsonTextProblem(text, value, maxBodyDepth);
    if (problem === undefined) return done(null, value);
    done(
      isDepthProblem(problem)
        ? new HttpError('TypeError', `${problem}; the limit is maxBodyDepth`, 400)
        : new HttpError('SyntaxError', `the request ${problem}; refused (prototype poisoning)`, 400),
      undefined,
    );
  });

  app.setErrorHandler((error: FastifyError, request, reply) => {
    sendError(reply, translate(error, request, maxBodyBytes));
  });

  if (dashboard === true) {
    // A context of its own: its sign-in form parser does not reach POST /*.
    const checkKey = keyCheck !== undefined ? { checkKey: (key: string) => keyCheck(`Bearer ${key}`) } : {};
    await app.register(async (context) => registerDashboard(context, { graph: graph!, ...checkKey }, sessions));
  }

  // Not async: answered from the invoker's callback, with no promise, await or fastify wait per request.
  app.post('/*', { bodyLimit: maxBodyBytes, config: { rxserveHot: true } }, (request, reply) => {
    if (keyCheck === undefined && refuseIfClosing(reply)) return;
    if (request.body === undefined) {
      sendError(
        reply,
        new HttpError('SyntaxError', "the request has no body; send a JSON value with 'Content-Type: application/json'", 400),
      );
      return;
    }
    const init = { id: request.id, path: pathOf(request.url), headers: headersOf(request, keyCheck !== undefined), method: request.method };
    if (wantsEventStream(request)) {
      sendEventStream(reply, (answer, partials) => begin(request.body, init, answer, partials), {
        closing,
        sendError: (error) => sendError(reply, error),
        limits: streamLimits,
      });
      return;
    }
    // Cancelled through the invoker, not with an AbortSignal of our own: one signal per request.
    const watched = new ClientWatch(reply);
    watched.watch(begin(request.body, init, (out, refused) => answerJson(reply, watched, out, refused)));
  });

  /** The JSON answer of a request begun with `begin` (called once, from the invoker: it must not throw). */
  function answerJson(reply: FastifyReply, watched: ClientWatch, out: ServingEvent | undefined, refused: unknown): void {
    watched.done();
    // The client is gone: nobody to answer.
    if (watched.gone) return;
    try {
      if (out === undefined) {
        const e = toError(refused);
        // The invoker refuses a request only after close() (503) or for an id already in flight (409).
        sendError(reply, new HttpError(e.name, e.message, refusalStatus(client.closed)));
      } else if (out.error !== undefined) sendError(reply, out.error);
      else {
        let json: string;
        try {
          json = JSON.stringify(out.body ?? null);
        } catch (error) {
          sendError(reply, new HttpError('TypeError', `the answer's body cannot be sent as JSON: ${toError(error).message}`, 500));
          return;
        }
        send(reply, 200, json);
        closeIfUnread(reply, sendTimeoutMs);
      }
    } catch (error) {
      // fastify reports its own send failures; this is a bug of ours, not the pipeline's to hear.
      reply.log.error({ err: error }, 'rxserve: sending the answer failed');
    }
  }

  if (openai !== undefined) {
    registerOpenAIRoutes(app, openai, {
      begin,
      closing: () => closing,
      place: (endpoint) => graph?.endpoint(endpoint),
      streamLimits,
    });
  }

  // Under a prefix, or when serve() owns the app, unknown routes are answered here, after the
  // hooks above (503 while closing, 401 without a key: no 404 tells which paths exist). Mounted at
  // the root of an app of yours, the 404 stays your app's.
  if (app.prefix !== '' || setup.ownsApp) {
    app.setNotFoundHandler((request, reply) => {
      // Not a route: the guards above are not attached to it, so it checks the same things itself.
      if (refuseIfClosing(reply)) return;
      if (keyCheck !== undefined && !keyCheck(request.headers.authorization)) {
        reply.header('www-authenticate', 'Bearer realm="rxserve"');
        sendError(reply, unauthorized());
        return;
      }
      sendError(reply, new HttpError('NotFoundError', `no route ${request.method} ${pathOf(request.url)}`, 404));
    });
  }

  if (exporter !== undefined) {
    app.get('/metrics', async (_request, reply) =>
      reply
        .code(200)
        .header('cache-control', 'no-store')
        .type(exporter.contentType)
        .send(await exporter.metrics()),
    );
  }

  const health = { config: { rxservePublic: true } };
  app.get('/v2/health/live', health, async (_request, reply) => send(reply, 200, '{"live":true}'));
  // Public, so what it says of a failed load (a file path, a module's message) is for key holders only.
  app.get('/v2/health/ready', health, async (request, reply) =>
    isReady()
      ? send(reply, 200, '{"ready":true}')
      : sendError(reply, notReady(keyCheck === undefined || keyCheck(request.headers.authorization))),
  );

  const modelNames = (): string[] => listedModels(pipeline, models, () => graph?.endpointNames().map((e) => e.endpointName) ?? []);
  app.get('/v2', async (_request, reply) => send(reply, 200, JSON.stringify(serverMetadata(pipeline))));
  app.get('/v2/models', async (_request, reply) => send(reply, 200, JSON.stringify({ models: modelNames() })));
  const metadata = async (request: FastifyRequest, reply: FastifyReply) => {
    const { name, version } = request.params as { name: string; version?: string };
    // A modelRouter / votingEnsemble answers its models' metadata itself (docs/design.md §18).
    const path = metadataPath(pipeline, name, version);
    if (path !== undefined) return forward(request, reply, path);
    if (!modelNames().includes(name)) return sendError(reply, unknownModel(name, modelNames()));
    const entry = graph?.endpoint(name);
    return send(reply, 200, JSON.stringify({ name, platform: 'rxserve', inputs: entry?.inputs ?? [], outputs: entry?.outputs ?? [] }));
  };
  const modelReady = async (request: FastifyRequest, reply: FastifyReply) => {
    const { name } = request.params as { name: string };
    if (!modelNames().includes(name)) return sendError(reply, unknownModel(name, modelNames()));
    return isReady() ? send(reply, 200, JSON.stringify({ name, ready: true })) : sendError(reply, notReady());
  };
  app.get('/v2/models/:name', metadata);
  app.get('/v2/models/:name/versions/:version', metadata);
  app.get('/v2/models/:name/ready', modelReady);
  app.get('/v2/models/:name/versions/:version/ready', modelReady);

  /** A GET answered by the pipeline: an event with `path` and an empty body, answered like a POST. */
  function forward(request: FastifyRequest, reply: FastifyReply, path: string): FastifyReply {
    const init = { id: request.id, path, headers: headersOf(request, keyCheck !== undefined) };
    const watched = new ClientWatch(reply);
    watched.watch(begin({}, init, (out, refused) => answerJson(reply, watched, out, refused)));
    return reply;
  }

  function notReady(details = true): HttpError {
    const why = closing
      ? 'the server is closing'
      : loadError !== undefined
        ? details
          ? `the graph failed to load (${loadError.name}: ${loadError.message})`
          : 'the graph failed to load (the reason is given to callers with an API key)'
        : graphReady
          ? 'the server is not listening yet'
          : `graph '${graph!.name}' is still loading its models`;
    return new HttpError('RxServeError', `not ready: ${why}`, 503);
  }

  function send(reply: FastifyReply, status: number, json: string): FastifyReply {
    return sendJson(reply, status, json, closing);
  }

  function sendError(reply: FastifyReply, error: Error): FastifyReply {
    const status = error instanceof HttpError ? error.statusCode : statusOf(error);
    if (CLOSING_REFUSALS.has(status)) {
      reply.header('connection', 'close');
      lingerOnClose(reply.raw.socket);
    }
    return sendJson(reply, status, JSON.stringify(errorBody(error)), closing, retryAfterOf(error, status));
  }

  return client;
}

/** The route config rxserve's routes carry (what runs before each: see the `onRoute` hook). */
interface RouteConfig extends DashboardRouteConfig {
  /** No API key needed (health, the dashboard's sign-in). */
  readonly rxservePublic?: boolean;
  /** `POST /*`: checks `closing` itself, so without API keys no hook runs before it. */
  readonly rxserveHot?: boolean;
}

function unknownModel(name: string, names: readonly string[]): HttpError {
  return new HttpError(
    'NotFoundError',
    `no model '${name}'; models: ${names.length ? names.map((n) => `'${n}'`).join(', ') : '(none)'}`,
    404,
  );
}

/** The request headers (lower-case names, repeated ones joined), without the API key when one was checked. */
function headersOf(request: FastifyRequest, dropAuthorization: boolean): Record<string, string> {
  // Node gives strings for every request header but set-cookie; toEvent copies them anyway.
  if (!('set-cookie' in request.headers) && !(dropAuthorization && 'authorization' in request.headers)) {
    return request.headers as Record<string, string>;
  }
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(request.headers)) {
    if (value === undefined || (dropAuthorization && name === 'authorization')) continue;
    headers[name] = Array.isArray(value) ? value.join(', ') : value;
  }
  return headers;
}

/**
 * The request's id (fastify's `genReqId`, so `request.id`): its `x-request-id` when usable (1 to
 * 200 characters), else a new one (`newRequestId`: UUID-shaped, unique, no random draw per request).
 */
export function requestIdOf(request: { readonly headers: FastifyRequest['headers'] }): string {
  const header = request.headers['x-request-id'];
  return typeof header === 'string' && header.length > 0 && header.length <= MAX_REQUEST_ID ? header : newRequestId();
}

/** Why a body is not JSON: empty, or its syntax (JSON.parse's message). */
function jsonError(body: string, error: unknown): Error {
  if (body.length === 0)
    return new HttpError('SyntaxError', "the request body is empty; send a JSON value with 'Content-Type: application/json'", 400);
  return new HttpError('SyntaxError', `the request body is not valid JSON (${toError(error).message})`, 400);
}

/** fastify's own errors (body limit, content type, ...) as error replies of the §11 shape. */
function translate(error: FastifyError, request: FastifyRequest, maxBodyBytes: number): Error {
  if (error instanceof HttpError) return error;
  switch (error.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new HttpError('PayloadTooLargeError', `the request body is larger than the limit of ${maxBodyBytes} bytes`, 413);
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new HttpError(
        'UnsupportedMediaTypeError',
        `content type '${request.headers['content-type'] ?? '(none)'}' is not JSON; send 'Content-Type: application/json'`,
        415,
      );
    default: {
      const status = error.statusCode !== undefined && error.statusCode >= 400 && error.statusCode < 600 ? error.statusCode : 500;
      return new HttpError(error.name === 'FastifyError' && error.code ? error.code : error.name, error.message, status);
    }
  }
}
