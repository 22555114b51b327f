// The dashboard (docs/design.md §16): one static page, its assets, and a Server-Sent Events stream of the
// graph's aggregates about once a second. Registered by rxservePlugin inside its own context, so
// its onRequest hook (closing, API keys) guards these routes like every other.
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { ServerResponse } from 'node:http';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { acquireAggregates, type AggregatesSnapshot } from '../../monitoring/aggregates.js';
import { MONITORING, type Monitored } from '../../monitoring/monitor.js';
import { pathOf } from '../urlPath.js';
import { lingerOnClose } from '../linger.js';

/** How often the events stream sends the aggregates. */
export const DASHBOARD_INTERVAL_MS = 1000;
/** The rolling window of rates and quantiles. */
export const DASHBOARD_WINDOW_SECONDS = 10;
/** The cookie a signed-in browser presents (a session token, never the API key itself). */
export const DASHBOARD_COOKIE = 'rxserve_dashboard';
/** What an events client may leave unread before its stream is ended. */
const MAX_BUFFERED_BYTES = 1024 * 1024;
const SESSION_MS = 12 * 60 * 60 * 1000;
const MAX_SESSIONS = 1000;
/** Failed sign-ins a client address may make per window; past them every sign-in is 429 until the window ends. */
export const LOGIN_MAX_FAILURES = 10;
export const LOGIN_WINDOW_MS = 60_000;
/** Addresses tracked at once (a bound on the limiter's memory); the oldest is forgotten first. */
const MAX_LOGIN_ADDRESSES = 10_000;

/**
 * Failed sign-ins per client address, in a fixed window opened by the first failure. Once an
 * address has failed `LOGIN_MAX_FAILURES` times, its sign-ins are refused (right key or not) until
 * the window ends: otherwise the 429 would only slow the guessing down.
 */
export class LoginLimiter {
  readonly #failures = new Map<string, { count: number; until: number }>();

  constructor(
    readonly maxFailures = LOGIN_MAX_FAILURES,
    readonly windowMs = LOGIN_WINDOW_MS,
    readonly maxAddresses = MAX_LOGIN_ADDRESSES,
  ) {}

  /** Ms until `address` may sign in again; 0 when it may now. */
  blockedFor(address: string, now = Date.now()): number {
    const entry = this.#failures.get(address);
    if (entry === undefined) return 0;
    if (entry.until <= now) {
      this.#failures.delete(address);
      return 0;
    }
    return entry.count >= this.maxFailures ? entry.until - now : 0;
  }

  /** Counts a failed sign-in. */
  fail(address: string, now = Date.now()): void {
    let entry = this.#failures.get(address);
    if (entry === undefined || entry.until <= now) {
      this.#failures.delete(address);
      if (this.#failures.size >= this.maxAddresses) this.#prune(now);
      this.#failures.set(address, (entry = { count: 0, until: now + this.windowMs }));
    }
    entry.count++;
  }

  /** A successful sign-in forgets the address's failures. */
  succeed(address: string): void {
    this.#failures.delete(address);
  }

  /** Addresses tracked now. */
  get size(): number {
    return this.#failures.size;
  }

  #prune(now: number): void {
    for (const [address, entry] of this.#failures) if (entry.until <= now) this.#failures.delete(address);
    // Still full: the oldest window goes (insertion order is window order).
    if (this.#failures.size >= this.maxAddresses) this.#failures.delete(this.#failures.keys().next().value!);
  }
}

/** Route config marking the dashboard's routes (the API-key hook also accepts its session cookie there). */
export interface DashboardRouteConfig {
  readonly rxserveDashboard?: 'page' | 'data';
}

/** What the plugin needs from rxservePlugin. */
export interface DashboardOptions {
  readonly graph: Monitored;
  /** Checks an API key (undefined: the server has no API keys). */
  readonly checkKey?: (key: string) => boolean;
}

/** Signed-in browsers: session token → expiry (epoch ms). */
export class DashboardSessions {
  readonly #tokens = new Map<string, number>();

  create(): string {
    const token = randomBytes(32).toString('base64url');
    if (this.#tokens.size >= MAX_SESSIONS) this.#tokens.delete(this.#tokens.keys().next().value!);
    this.#tokens.set(token, Date.now() + SESSION_MS);
    return token;
  }

  /** True when the request carries a live session cookie. */
  has(request: FastifyRequest): boolean {
    const token = cookie(request.headers.cookie, DASHBOARD_COOKIE);
    if (token === undefined) return false;
    const expires = this.#tokens.get(token);
    if (expires === undefined) return false;
    if (expires < Date.now()) {
      this.#tokens.delete(token);
      return false;
    }
    return true;
  }
}

/** The page and asset files, by the name the page asks for. */
const ASSETS: Record<string, string> = {
  'dashboard.js': 'text/javascript; charset=utf-8',
  'dashboard.css': 'text/css; charset=utf-8',
  'uPlot.esm.js': 'text/javascript; charset=utf-8',
  'uPlot.min.css': 'text/css; charset=utf-8',
};

const CSP =
  "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/**
 * Where the page's files are: beside the built chunk (`dist/dashboard/`, copied there by the
 * build with uPlot), or, running from the sources, `static/` beside this file and uPlot from
 * node_modules.
 */
function assetPath(name: string): string {
  const here = import.meta.url;
  const built = fileURLToPath(new URL(`./dashboard/${name}`, here));
  if (existsSync(built)) return built;
  if (name.startsWith('uPlot')) return createRequire(here).resolve(`uplot/dist/${name}`);
  return fileURLToPath(new URL(`./static/${name}`, here));
}

const cache = new Map<string, Buffer>();
function readAsset(name: string): Buffer {
  let body = cache.get(name);
  if (body === undefined) cache.set(name, (body = readFileSync(assetPath(name))));
  return body;
}

/** Registers the dashboard routes on `app` (a context of rxservePlugin). */
// eslint-disable-next-line @typescript-eslint/require-await -- an async plugin body: fastify's register() gets a rejection, not a throw
export async function registerDashboard(app: FastifyInstance, options: DashboardOptions, sessions: DashboardSessions): Promise<void> {
  const { graph, checkKey } = options;
  const held = acquireAggregates(graph);
  const base = `${app.prefix}/dashboard`;
  const clients = new Set<ServerResponse>();
  let timer: ReturnType<typeof setInterval> | undefined;

  // The last whole second every connected page has the per-second points of: a tick sends the
  // seconds after it (the current one again, as it fills), not the last minutes each time.
  let sentThrough = -Infinity;
  /**
   * One SSE message: the snapshot, the graph's shape (read once for both), and the per-second
   * points after second `since` (all the history holds for -Infinity). Returns it with its second.
   */
  const message = (since: number): { text: string; second: number } => {
    const shape = graph[MONITORING].describe();
    const snapshot: AggregatesSnapshot = held.aggregates.snapshot(DASHBOARD_WINDOW_SECONDS, shape);
    const second = Math.floor(snapshot.at / 1000);
    // One second more than needed: a second turning over between the two reads is still sent.
    const seconds = since === -Infinity ? Infinity : second - since + 1;
    const payload = { snapshot, shape, series: held.aggregates.series(seconds), intervalMs: DASHBOARD_INTERVAL_MS };
    return { text: `data: ${JSON.stringify(payload)}\n\n`, second };
  };
  const tick = (): void => {
    if (clients.size === 0) return;
    const { text, second } = message(sentThrough);
    sentThrough = second - 1;
    for (const client of clients) {
      // A browser that stopped reading is let go rather than buffered for without bound (it reconnects).
      if (client.writableLength > MAX_BUFFERED_BYTES) client.end();
      else client.write(text);
    }
  };

  app.addHook('preClose', (done) => {
    if (timer !== undefined) clearInterval(timer);
    timer = undefined;
    for (const client of clients) client.end();
    clients.clear();
    done();
  });
  // eslint-disable-next-line @typescript-eslint/require-await -- an async onClose hook is promise-style to fastify (else it waits for done())
  app.addHook('onClose', async () => held.release());

  const page = { config: { rxserveDashboard: 'page' } satisfies DashboardRouteConfig };
  const data = { config: { rxserveDashboard: 'data' } satisfies DashboardRouteConfig };

  app.get('/dashboard', page, async (_request, reply) =>
    reply
      .code(200)
      .header('content-security-policy', CSP)
      .header('cache-control', 'no-store')
      .type('text/html; charset=utf-8')
      .send(readAsset('index.html')),
  );
  // The page's asset URLs are relative to /dashboard: with a trailing slash they would miss.
  app.get('/dashboard/', page, async (_request, reply) => reply.code(308).header('location', base).send());

  app.get('/dashboard/assets/:file', page, async (request, reply) => {
    const { file } = request.params as { file: string };
    const type = Object.hasOwn(ASSETS, file) ? ASSETS[file] : undefined;
    if (type === undefined) {
      return reply
        .code(404)
        .type('application/json; charset=utf-8')
        .send(JSON.stringify({ error: `NotFoundError: no dashboard asset '${file}'` }));
    }
    return reply.code(200).header('cache-control', 'no-cache').type(type).send(readAsset(file));
  });

  app.get('/dashboard/events', data, (request, reply) => {
    reply.hijack();
    const raw = reply.raw;
    raw.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      'x-accel-buffering': 'no',
      'x-request-id': String(reply.getHeader('x-request-id') ?? ''),
    });
    // A new page gets every point the history holds; the ticks after it, what is new since the
    // last tick (or, for the only page, since this message).
    const first = message(-Infinity);
    raw.write(`retry: 2000\n${first.text}`);
    if (clients.size === 0) sentThrough = first.second - 1;
    clients.add(raw);
    timer ??= setInterval(tick, DASHBOARD_INTERVAL_MS);
    timer.unref?.();
    request.raw.once('close', () => {
      clients.delete(raw);
      if (clients.size === 0 && timer !== undefined) {
        clearInterval(timer);
        timer = undefined;
      }
    });
  });

  if (checkKey === undefined) return;
  // Sign-in: a browser cannot put an Authorization header on a page load or an EventSource, so
  // the form posts the key once and gets an HttpOnly cookie holding a session token.
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string', bodyLimit: 4096 }, (_request, body, done) => {
    done(null, Object.fromEntries(new URLSearchParams(body as string)));
  });
  const limiter = new LoginLimiter();
  app.post('/dashboard/login', { config: { rxservePublic: true } }, async (request, reply) => {
    const waitMs = limiter.blockedFor(request.ip);
    if (waitMs > 0) {
      const seconds = Math.ceil(waitMs / 1000);
      reply.header('retry-after', String(seconds));
      return sendLogin(reply, base, `Too many failed sign-ins from your address; try again in ${seconds} s.`, 429);
    }
    const key = (request.body as { key?: unknown } | undefined)?.key;
    if (typeof key !== 'string' || !checkKey(key)) {
      limiter.fail(request.ip);
      return sendLogin(reply, base, 'That key is not one of the server’s API keys.');
    }
    limiter.succeed(request.ip);
    const secure = request.protocol === 'https' ? '; Secure' : '';
    return reply
      .code(303)
      .header(
        'set-cookie',
        `${DASHBOARD_COOKIE}=${sessions.create()}; Path=${base}; HttpOnly; SameSite=Strict; Max-Age=${SESSION_MS / 1000}${secure}`,
      )
      .header('location', base)
      .send();
  });
}

/** 401 for a dashboard route without a key: the page answers with the sign-in form. */
export function sendDashboardUnauthorized(request: FastifyRequest, reply: FastifyReply, prefix: string): void {
  if ((request.routeOptions.config as DashboardRouteConfig).rxserveDashboard === 'page' && /\/dashboard\/?$/.test(pathOf(request.url))) {
    void sendLogin(reply, `${prefix}/dashboard`, undefined);
    return;
  }
  reply.header('www-authenticate', 'Bearer realm="rxserve"').header('connection', 'close');
  lingerOnClose(reply.raw.socket);
  void reply
    .code(401)
    .type('application/json; charset=utf-8')
    .send(
      JSON.stringify({
        error: 'UnauthorizedError: this route needs an Authorization: Bearer <API key> header or the dashboard sign-in cookie',
      }),
    );
}

function sendLogin(reply: FastifyReply, base: string, problem: string | undefined, status = 401): FastifyReply {
  const html = readAsset('login.html')
    .toString('utf8')
    .replace('{{action}}', escapeHtml(`${base}/login`))
    .replace('{{problem}}', problem === undefined ? '' : `<p class="problem" role="alert">${escapeHtml(problem)}</p>`);
  // A refusal: the connection closes with it, as every 401 of rxserve's.
  if (status === 401) reply.header('www-authenticate', 'Bearer realm="rxserve"');
  lingerOnClose(reply.raw.socket);
  return reply
    .code(status)
    .header('connection', 'close')
    .header('content-security-policy', CSP)
    .header('cache-control', 'no-store')
    .type('text/html; charset=utf-8')
    .send(html);
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** One cookie's value from a Cookie header. */
function cookie(header: string | undefined, name: string): string | undefined {
  if (header === undefined) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}
