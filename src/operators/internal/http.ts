// What remoteStep and batchHttpRequests share (DESIGN §19): their options, the URL, method and
// body rules, one undici keep-alive Agent per subscription, and one HTTP call with retries
// (jittered capped backoff, retry-after honoured), a deadline and abort.
// Over 300 lines on purpose: the request rules, the retry loop and the answer's decoding are one
// contract, read together.
import { createRequire } from 'node:module';
import * as t from 'io-ts';
import type { Dispatcher } from 'undici';
import { bodyProblem } from '../../body.js';
import { DotPath, PositiveMs, annotate, decodeOrThrow, guard, nonNegativeInt, positiveInt, strict } from '../../config.js';
import { ConfigError, ModelTimeoutError, RemoteStepError, toError } from '../../errors.js';
import { getPath, hasPath, type ServingEvent } from '../../event.js';
import { RingQueue } from '../../execution/ringQueue.js';
import { retryAfterMs, retryDelayMs, sleep, type AbortLike } from '../../retry.js';
import { dispatchOptionProps, limitsFrom } from './options.js';
import type { DispatchLimits } from './dispatch.js';

/** Backoff between attempts when the server did not say `retry-after`. */
export interface Backoff {
  /** The first wait, ms; doubles each retry, less up to 25% jitter. Default 500. */
  readonly baseDelayMs?: number;
  /** The longest wait, ms; default 10,000. A server's `retry-after` is honoured up to 60 s instead. */
  readonly maxDelayMs?: number;
}

/**
 * Options both HTTP steps take. `E` is what the expressions receive: the event for
 * `remoteStep`, the list item and the event for `batchHttpRequests`.
 */
export interface HttpStepOptions<E extends unknown[]> {
  /** Step name, set as `origin` on the events it fails. */
  readonly name?: string;
  /** The service's `http://` or `https://` URL (a query string is kept). */
  readonly url?: string;
  /** HTTP method; default the event's `method`, else `'POST'`. `GET` and `HEAD` send no body. */
  readonly method?: string;
  /** Appended to `url`'s path; `'$path'` appends the event's `path` (MLRun's rule). */
  readonly subpath?: string;
  /** Sent with every request (`x-request-id` is always the event's id). */
  readonly headers?: Readonly<Record<string, string>>;
  /** The whole URL from the event; wins over `url`. */
  readonly urlExpression?: (...args: E) => string;
  /** The request body from the event, instead of the body (or its `inputPath` part). */
  readonly bodyExpression?: (...args: E) => unknown;
  /** Parse the answer as JSON (an empty answer is `null`); default `true`. Else text, JSON only when its content type says so. */
  readonly returnJson?: boolean;
  /** Dot path of what is sent in the body; the whole body when absent. */
  readonly inputPath?: string;
  /** Dot path where the answer is written into a copy of the body; the answer replaces the body when absent. */
  readonly resultPath?: string;
  /** Retries after the first attempt, for network errors, 5xx, 408 and 429; default 6. */
  readonly retries?: number;
  /** Waits between attempts; see {@link Backoff}. */
  readonly backoff?: Backoff;
  /** The longest one event may take, retries and waits included, ms; then `ModelTimeoutError` and the request is aborted. Default 30,000. */
  readonly timeoutMs?: number;
  /** Requests in flight at once (one keep-alive connection each at most); default 64. */
  readonly maxInFlight?: number;
  /** Events waiting beyond that; default 10,000; more → `QueueFullError`. */
  readonly maxQueue?: number;
  /** Emit in arrival order; default `true`. */
  readonly ordered?: boolean;
  /** The largest answer read, bytes; a longer one fails the event (not retried). Default 10 MiB. */
  readonly maxAnswerBytes?: number;
}

const isHttpUrl = (u: unknown): boolean => {
  if (typeof u !== 'string') return false;
  try {
    const url = new URL(u);
    return url.protocol === 'http:' || url.protocol === 'https:';
  } catch {
    return false;
  }
};
const HttpUrl = annotate(guard<string>("an 'http://' or 'https://' URL", isHttpUrl), { type: 'string', pattern: '^https?://' });
// A method is an HTTP token (RFC 9110); sent upper-cased.
const Method = annotate(
  guard<string>("an HTTP method like 'POST'", (u) => typeof u === 'string' && /^[A-Za-z]+$/.test(u)),
  { type: 'string', pattern: '^[A-Za-z]+$' },
);
// Header names are tokens and values carry no line breaks: undici would refuse them at each request.
const Headers = annotate(
  guard<Record<string, string>>(
    'an object of header names to string values',
    (u) =>
      u !== null &&
      typeof u === 'object' &&
      !Array.isArray(u) &&
      Object.entries(u).every(([k, v]) => /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(k) && typeof v === 'string' && !/[\r\n\0]/.test(v)),
  ),
  { type: 'object', additionalProperties: { type: 'string' } },
);
const BackoffCodec = strict('Backoff', {}, { baseDelayMs: PositiveMs, maxDelayMs: PositiveMs });
const Fn = guard<(...args: never[]) => unknown>('a function', (u) => typeof u === 'function');

/** The codec of both steps' options (the expressions are functions here; the spec compiles templates to them). */
export const HttpStepOptionsCodec = strict(
  'HttpStepOptions',
  {},
  {
    ...dispatchOptionProps,
    url: HttpUrl,
    method: Method,
    subpath: t.string,
    headers: Headers,
    urlExpression: Fn,
    bodyExpression: Fn,
    returnJson: t.boolean,
    inputPath: DotPath,
    resultPath: DotPath,
    retries: nonNegativeInt(),
    backoff: BackoffCodec,
    timeoutMs: PositiveMs,
    maxAnswerBytes: positiveInt(),
  },
);

/** The options of one HTTP step, checked and with the defaults filled in. */
export interface HttpConfig<E extends unknown[]> {
  readonly limits: DispatchLimits;
  readonly step: string;
  /** The `url` (+ a literal `subpath`), split for undici; undefined with `urlExpression`. */
  readonly base: { readonly origin: string; readonly pathname: string; readonly search: string } | undefined;
  readonly appendEventPath: boolean;
  readonly method: string | undefined;
  readonly headers: Readonly<Record<string, string>>;
  readonly urlExpression: ((...args: E) => string) | undefined;
  readonly bodyExpression: ((...args: E) => unknown) | undefined;
  readonly returnJson: boolean;
  readonly inputPath: string | undefined;
  readonly resultPath: string | undefined;
  readonly retries: number;
  readonly baseDelayMs: number;
  readonly maxDelayMs: number;
  readonly timeoutMs: number;
  readonly maxAnswerBytes: number;
}

/** Checks `options` (ConfigError naming `<operator>.options.<field>`) and fills in the defaults. */
export function httpConfig<E extends unknown[]>(options: HttpStepOptions<E>, operator: string, defaultName: string): HttpConfig<E> {
  const at = `${operator}.options`;
  const o = decodeOrThrow(HttpStepOptionsCodec, options, at) as HttpStepOptions<E>;
  if (o.url === undefined && o.urlExpression === undefined) {
    throw new ConfigError([{ path: `${at}.url`, expected: '', message: "is required: give 'url' (or 'urlExpression', a function of the event returning the URL)" }]);
  }
  if (o.urlExpression !== undefined && o.subpath !== undefined) {
    throw new ConfigError([{ path: `${at}.subpath`, expected: '', message: "applies to 'url' only: with 'urlExpression', return the whole URL" }]);
  }
  const appendEventPath = o.subpath === '$path';
  let base: HttpConfig<E>['base'];
  if (o.url !== undefined && o.urlExpression === undefined) {
    const url = new URL(o.url);
    const pathname = o.subpath !== undefined && !appendEventPath ? joinPath(url.pathname, o.subpath) : url.pathname;
    base = { origin: url.origin, pathname, search: url.search };
  }
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(o.headers ?? {})) headers[name.toLowerCase()] = value;
  const limits = limitsFrom(o, defaultName);
  return {
    limits,
    step: limits.step,
    base,
    appendEventPath,
    method: o.method?.toUpperCase(),
    headers,
    urlExpression: o.urlExpression,
    bodyExpression: o.bodyExpression,
    returnJson: o.returnJson ?? true,
    inputPath: o.inputPath,
    resultPath: o.resultPath,
    retries: o.retries ?? 6,
    baseDelayMs: o.backoff?.baseDelayMs ?? 500,
    maxDelayMs: o.backoff?.maxDelayMs ?? 10_000,
    timeoutMs: o.timeoutMs ?? 30_000,
    maxAnswerBytes: o.maxAnswerBytes ?? 10 * 1024 * 1024,
  };
}

/** `a/b` + `c` → `a/b/c`, one slash between. */
function joinPath(left: string, right: string): string {
  const tail = right.replace(/^\/+/, '');
  if (tail === '') return left;
  return `${left.replace(/\/+$/, '')}/${tail}`;
}

// RFC 3986 path characters (percent-encoded octets included): a path from a client is appended
// as it came, never re-encoded, and anything else is refused rather than guessed at.
const PATH_CHARS = /^[A-Za-z0-9\-._~!$&'()*+,;=:@%/]*$/;

/** The event's path checked for appending: no dot segments (not even encoded), nothing outside a path. */
function eventPath(config: HttpConfig<never>, event: ServingEvent): string {
  const path = event.path ?? '';
  const bad = (why: string) => new TypeError(`remote step '${config.step}': the event's path ${JSON.stringify(path.slice(0, 100))} cannot be appended to the URL (${why})`);
  if (!PATH_CHARS.test(path)) throw bad('characters a URL path cannot hold');
  for (const segment of path.split('/')) {
    let decoded: string;
    try {
      decoded = decodeURIComponent(segment);
    } catch {
      throw bad('a malformed percent-encoding');
    }
    if (decoded === '.' || decoded === '..' || decoded.includes('/') || decoded.includes('\\')) throw bad("a '.' or '..' segment, or an encoded slash");
  }
  return path;
}

/** One request, ready to send (and to send again). */
export interface PreparedRequest {
  readonly origin: string;
  readonly path: string;
  /** The URL for messages: no credentials, no query string. */
  readonly display: string;
  readonly method: Dispatcher.HttpMethod;
  readonly headers: Record<string, string>;
  readonly body: string | Uint8Array | undefined;
}

/**
 * The request for one event (or one item of a batch): URL, method, headers and body by MLRun's
 * rules. Throws a TypeError (the event's failure, never retried) for a bad URL, path or body.
 */
export function prepareRequest<E extends unknown[]>(config: HttpConfig<E>, event: ServingEvent, input: unknown, args: E): PreparedRequest {
  let origin: string;
  let path: string;
  let display: string;
  if (config.urlExpression !== undefined) {
    const value = config.urlExpression(...args);
    if (!isHttpUrl(value)) {
      throw new TypeError(`remote step '${config.step}': urlExpression returned ${JSON.stringify(String(value).slice(0, 100))}, not an 'http://' or 'https://' URL`);
    }
    const url = new URL(value);
    origin = url.origin;
    path = `${url.pathname}${url.search}`;
    display = `${url.origin}${url.pathname}`;
  } else {
    const base = config.base!;
    const pathname = config.appendEventPath ? joinPath(base.pathname, eventPath(config as HttpConfig<never>, event)) : base.pathname;
    origin = base.origin;
    path = `${pathname}${base.search}`;
    display = `${base.origin}${pathname}`;
  }
  const method = (config.method ?? event.method?.toUpperCase() ?? 'POST') as Dispatcher.HttpMethod;
  const headers: Record<string, string> = { ...config.headers };
  let body: string | Uint8Array | undefined;
  if (method !== 'GET' && method !== 'HEAD') {
    const value = config.bodyExpression !== undefined ? config.bodyExpression(...args) : input;
    let type: string | undefined;
    if (value === undefined) {
      body = undefined;
    } else if (typeof value === 'string') {
      body = value;
      type = 'text/plain; charset=utf-8';
    } else if (value instanceof Uint8Array) {
      body = value;
      type = 'application/octet-stream';
    } else {
      try {
        body = JSON.stringify(value);
      } catch (cause) {
        throw new TypeError(`remote step '${config.step}': the request body cannot be sent as JSON (${toError(cause).message})`, { cause });
      }
      type = 'application/json';
    }
    if (type !== undefined && headers['content-type'] === undefined) headers['content-type'] = type;
  }
  headers['x-request-id'] = event.id;
  return { origin, path, display, method, headers, body };
}

/** The input of an event (its body, or the `inputPath` part), or a TypeError when the path is missing. */
export function inputOf(config: HttpConfig<never> | HttpConfig<unknown[]>, event: ServingEvent): unknown {
  const { inputPath } = config;
  if (inputPath !== undefined && !hasPath(event.body, inputPath)) {
    throw new TypeError(`remote step '${config.step}': inputPath '${inputPath}' is not in the body of event '${event.id}'`);
  }
  return getPath(event.body, inputPath);
}

type Undici = typeof import('undici');
let undici: Undici | undefined;

/**
 * undici, loaded on first use (as llm/nodeFetch.ts does, and for the same reason): loading it
 * installs its Agent as the process's global dispatcher, which Node's own `fetch` then uses,
 * unless Node's undici has installed its own first — so Node's is made to load first.
 */
function loadUndici(): Undici {
  if (undici !== undefined) return undici;
  void globalThis.Headers;
  undici = createRequire(import.meta.url)('undici') as Undici;
  return undici;
}

// Errors of the request itself (a bad header, an unsupported option) and answers over the size
// limit: sending again would fail the same way.
const NOT_RETRYABLE = new Set(['UND_ERR_INVALID_ARG', 'UND_ERR_NOT_SUPPORTED', 'UND_ERR_RES_EXCEEDED_MAX_SIZE', 'UND_ERR_REQ_CONTENT_LENGTH_MISMATCH']);
const RETRYABLE_STATUS = (status: number) => status >= 500 || status === 408 || status === 429;
const MAX_REDIRECTS = 5;
const REDIRECTS = new Set([301, 302, 303, 307, 308]);
// What a request must not carry to another origin (undici's redirect handler drops the same).
const CREDENTIALS = ['authorization', 'cookie', 'proxy-authorization'];

/**
 * The request a redirect asks for, by the rules browsers and undici follow: 303 (and 301/302 after
 * a POST) become a GET without a body; 307 and 308 repeat the request as it was. Credentials are
 * dropped when the origin changes; `x-request-id` and the other headers stay.
 */
function redirected(step: string, request: PreparedRequest, status: number, location: string): PreparedRequest {
  let url: URL;
  try {
    url = new URL(location, `${request.origin}${request.path}`);
  } catch {
    url = new URL('about:blank');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new RemoteStepError(step, request.display, status, '', 1, `${request.method} ${request.display} was redirected to ${JSON.stringify(location.slice(0, 100))}, not an http(s) URL`);
  }
  const toGet = status === 303 ? request.method !== 'HEAD' : (status === 301 || status === 302) && request.method === 'POST';
  const headers = { ...request.headers };
  if (url.origin !== request.origin) for (const name of CREDENTIALS) delete headers[name];
  if (toGet) delete headers['content-type'];
  return {
    origin: url.origin,
    path: `${url.pathname}${url.search}`,
    display: `${url.origin}${url.pathname}`,
    method: toGet ? 'GET' : request.method,
    headers,
    body: toGet ? undefined : request.body,
  };
}
const ANSWER_HEAD_BYTES = 200;

/** An answer as the client reads it: status, raw headers (`[name, value, ...]`) and the whole body. */
interface Answer {
  readonly status: number;
  readonly rawHeaders: readonly Buffer[];
  readonly body: Buffer;
}

/** One header of an answer (first of its name), read only when asked for (most answers never are). */
function headerOf(answer: Answer, name: string): string | undefined {
  const raw = answer.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    if (raw[i].length === name.length && raw[i].toString('latin1').toLowerCase() === name) return raw[i + 1].toString('latin1');
  }
  return undefined;
}

/**
 * Reads one answer whole, through undici's dispatch API: no Readable stream, async resource or
 * header object per request as `request()` makes them (they were most of the client's CPU beside
 * undici's own parsing), and the abort wired straight to undici's.
 */
class AnswerHandler implements Dispatcher.DispatchHandler {
  #status = 0;
  #rawHeaders: Buffer[] = [];
  readonly #chunks: Buffer[] = [];
  #abort: ((reason?: Error) => void) | undefined;
  readonly #onAbort = (): void => this.#abort?.(this.signal.reason as Error);

  constructor(
    private readonly signal: RequestAbort,
    private readonly resolve: (answer: Answer) => void,
    private readonly reject: (error: unknown) => void,
  ) {
    signal.addEventListener('abort', this.#onAbort);
  }

  onConnect(abort: (reason?: Error) => void): void {
    if (this.signal.aborted) return abort(this.signal.reason as Error);
    this.#abort = abort;
  }

  onHeaders(status: number, rawHeaders: Buffer[]): boolean {
    // 1xx (100 Continue, 103 Early Hints) come before the answer's own headers.
    if (status >= 200) {
      this.#status = status;
      this.#rawHeaders = rawHeaders;
    }
    return true;
  }

  onData(chunk: Buffer): boolean {
    this.#chunks.push(chunk);
    return true;
  }

  onComplete(): void {
    this.signal.removeEventListener('abort', this.#onAbort);
    const chunks = this.#chunks;
    this.resolve({ status: this.#status, rawHeaders: this.#rawHeaders, body: chunks.length === 1 ? chunks[0] : Buffer.concat(chunks) });
  }

  onError(error: Error): void {
    this.signal.removeEventListener('abort', this.#onAbort);
    this.reject(this.signal.aborted ? this.signal.reason : error);
  }
}

/**
 * One subscription's HTTP client: one keep-alive undici Agent (at most `maxInFlight` connections
 * per origin), closed with the subscription. Redirects are followed here (see `redirected`), not
 * by undici's redirect interceptor: it costs ~8 µs of CPU on every request (a handler and copies
 * of the options), ~20% of a loopback call, to serve the rare one that is redirected.
 */
export class HttpClient {
  readonly #agent: Dispatcher;
  #closed = false;

  constructor(private readonly config: HttpConfig<never> | HttpConfig<unknown[]>) {
    const { Agent } = loadUndici();
    // maxResponseSize: undici fails a longer answer as it arrives (UND_ERR_RES_EXCEEDED_MAX_SIZE).
    this.#agent = new Agent({ connections: config.limits.maxInFlight, maxResponseSize: config.maxAnswerBytes });
  }

  /** Closes the connections (requests still running are aborted by their signals first). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#agent.destroy().catch(() => undefined);
  }

  #request(request: PreparedRequest, signal: RequestAbort): Promise<Answer> {
    return new Promise((resolve, reject) => {
      if (signal.aborted) return reject(signal.reason);
      const { origin, path, method, headers, body } = request;
      this.#agent.dispatch({ origin, path, method, headers, body }, new AnswerHandler(signal, resolve, reject));
    });
  }

  /**
   * Sends `request` until it is answered below 400, fails in a way retrying cannot help, the
   * retries are spent, or the next wait would pass `deadline` (a `performance.now()` time).
   * Resolves with the decoded answer; rejects with `RemoteStepError`, or with the signal's
   * reason once it aborts (cancel, unsubscribe, the step's timeout).
   */
  async send(first: PreparedRequest, signal: RequestAbort, deadline: number): Promise<unknown> {
    const { config } = this;
    for (let attempt = 1; ; attempt++) {
      let failure: RemoteStepError;
      let retryable: boolean;
      let wait: number | undefined;
      let request = first;
      try {
        let res = await this.#request(request, signal);
        for (let hops = 0; REDIRECTS.has(res.status); hops++) {
          const location = headerOf(res, 'location');
          if (location === undefined) break;
          if (hops === MAX_REDIRECTS) {
            throw new RemoteStepError(config.step, first.display, res.status, '', attempt, `${first.method} ${first.display}: more than ${MAX_REDIRECTS} redirects (last to ${request.display})`);
          }
          request = redirected(config.step, request, res.status, location);
          res = await this.#request(request, signal);
        }
        if (res.status < 400) return this.#decode(request, res, attempt);
        const answer = head(res.body);
        const { status } = res;
        failure = new RemoteStepError(config.step, request.display, status, answer, attempt, `HTTP ${status} from ${request.method} ${request.display}${tries(attempt)}: ${answer}`);
        retryable = RETRYABLE_STATUS(status);
        wait = retryAfterMs((name) => headerOf(res, name));
      } catch (error) {
        if (signal.aborted) throw signal.reason;
        if (error instanceof RemoteStepError) throw error;
        const e = toError(error);
        const code = (e as { code?: string }).code ?? '';
        const causeMessage = (e.cause as { message?: string } | undefined)?.message;
        const why = code === 'UND_ERR_RES_EXCEEDED_MAX_SIZE'
          ? `the answer is over maxAnswerBytes (${config.maxAnswerBytes})`
          : [e.message, causeMessage].filter(Boolean).join(': ');
        failure = new RemoteStepError(config.step, request.display, undefined, '', attempt, `${request.method} ${request.display} failed${tries(attempt)}: ${why}`, { cause: error });
        retryable = !NOT_RETRYABLE.has(code);
      }
      if (!retryable || attempt > config.retries) throw failure;
      const delay = retryDelayMs(attempt - 1, wait, config.baseDelayMs, Math.random, config.maxDelayMs);
      // Waiting past the deadline only to time out would hide the server's answer behind a
      // ModelTimeoutError and hold the slot meanwhile: fail with the answer now.
      if (performance.now() + delay >= deadline) {
        throw new RemoteStepError(config.step, request.display, failure.status, failure.answer, attempt, `${failure.message.replace(/^remote step '[^']*': /, '')} (no retry: waiting ${Math.round(delay)} ms would pass timeoutMs ${config.timeoutMs})`, { cause: failure.cause });
      }
      await sleep(delay, signal);
    }
  }

  #decode(request: PreparedRequest, res: Answer, attempt: number): unknown {
    const text = res.body.toString('utf8');
    if (!this.config.returnJson && !/[/+]json\b/i.test(headerOf(res, 'content-type') ?? '')) return text;
    const fail = (why: string) =>
      new RemoteStepError(this.config.step, request.display, res.status, head(res.body), attempt, `the answer of ${request.method} ${request.display} (HTTP ${res.status}) ${why}: ${head(res.body)}`);
    if (text === '') return null;
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (error) {
      throw fail(`is not JSON (${toError(error).message})`);
    }
    // The answer enters the pipeline like a request body does (DESIGN §11): same checks. A short
    // answer without those key names and without escapes (which could spell them) cannot fail
    // them (it cannot nest 256 deep either): the walk is skipped.
    const problem = mayNeedCheck(text) ? bodyProblem(value, { protoKeys: true }) : undefined;
    if (problem !== undefined) throw fail(`was refused: ${problem.replace(/^body/, 'answer')}`);
    return value;
  }
}

const mayNeedCheck = (text: string) =>
  text.length >= 256 || text.includes('\\') || text.includes('__proto__') || text.includes('constructor');
const tries = (attempt: number) => (attempt > 1 ? ` after ${attempt} attempts` : '');
/** The first 200 bytes of an answer, as text (a character cut in two is replaced, not thrown on). */
const head = (body: Buffer) => body.subarray(0, ANSWER_HEAD_BYTES).toString('utf8');

/**
 * The abort of one event's requests: what undici and `sleep` need of an AbortSignal, without an
 * AbortController and its EventTarget (~6% of a loopback request's client CPU on Node 20).
 */
export class RequestAbort implements AbortLike {
  aborted = false;
  reason: unknown = undefined;
  #listeners: (() => void)[] | undefined;

  addEventListener(_type: 'abort', listener: () => void): void {
    (this.#listeners ??= []).push(listener);
  }

  removeEventListener(_type: 'abort', listener: () => void): void {
    const list = this.#listeners;
    const at = list ? list.indexOf(listener) : -1;
    if (at >= 0) list!.splice(at, 1);
  }

  abort(reason: unknown): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason;
    const list = this.#listeners;
    this.#listeners = undefined;
    if (list) for (const listener of list) listener();
  }
}

/**
 * One event's deadline and abort: `timeoutMs` after it starts, its requests are aborted and it
 * fails with `ModelTimeoutError`; `cancel` (the event cancelled, the subscription ended) aborts
 * them too. `finish` settles it once.
 */
export class EventCall {
  readonly signal = new RequestAbort();
  readonly deadline: number;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #settled = false;

  constructor(
    config: HttpConfig<never> | HttpConfig<unknown[]>,
    private readonly onTimeout: (error: ModelTimeoutError) => void,
  ) {
    this.deadline = performance.now() + config.timeoutMs;
    this.#timer = setTimeout(() => {
      if (this.#settled) return;
      const error = new ModelTimeoutError(config.step, config.timeoutMs);
      this.#settle();
      this.signal.abort(error);
      this.onTimeout(error);
    }, config.timeoutMs);
  }

  get settled(): boolean {
    return this.#settled;
  }

  /** True the first time: the caller emits its outcome. */
  finish(): boolean {
    if (this.#settled) return false;
    this.#settle();
    return true;
  }

  cancel = (reason?: unknown): void => {
    if (this.#settled) return;
    this.#settle();
    this.signal.abort(reason ?? new DOMException('the step was unsubscribed', 'AbortError'));
  };

  #settle(): void {
    this.#settled = true;
    clearTimeout(this.#timer);
  }
}

/**
 * Request permits shared by one subscription's events (batchHttpRequests: an event of many items
 * never sends more than the step's `maxInFlight` at once, with the other events). Each waiting
 * event holds one place in the queue whatever its list's length, so the queue is bounded by the
 * events in flight.
 */
export class RequestPermits {
  #free: number;
  readonly #waiting = new RingQueue<() => boolean>();

  constructor(max: number) {
    this.#free = max;
  }

  /** Takes a permit now if one is free. */
  tryTake(): boolean {
    if (this.#free === 0) return false;
    this.#free--;
    return true;
  }

  /** Calls `grant` when a permit frees; `grant` returns false when its event no longer wants it. */
  wait(grant: () => boolean): void {
    this.#waiting.push(grant);
  }

  release(): void {
    for (let next = this.#waiting.shift(); next !== undefined; next = this.#waiting.shift()) {
      // The permit passes straight to a waiter that takes it; one that left hands it on.
      if (next()) return;
    }
    this.#free++;
  }
}
