// What remoteStep and batchHttpRequests share (docs/design.md §19): their options and MLRun's request rules
// (URL, subpath and '$path', method, body, headers). The client that sends the requests is
// httpClient.ts.
import * as t from 'io-ts';
import type { Dispatcher } from 'undici';
import { DotPath, PositiveMs, annotate, decodeOrThrow, guard, nonNegativeInt, positiveInt, strict } from '../../decode.js';
import { ConfigError, toError } from '../../errors.js';
import { getPath, hasPath, type ServingEvent } from '../../event.js';
import { dispatchOptionProps, limitsFrom } from './dispatchOptions.js';
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
    throw new ConfigError([
      {
        path: `${at}.url`,
        expected: '',
        message: "is required: give 'url' (or 'urlExpression', a function of the event returning the URL)",
      },
    ]);
  }
  if (o.urlExpression !== undefined && o.subpath !== undefined) {
    throw new ConfigError([
      { path: `${at}.subpath`, expected: '', message: "applies to 'url' only: with 'urlExpression', return the whole URL" },
    ]);
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
  const bad = (why: string) =>
    new TypeError(
      `remote step '${config.step}': the event's path ${JSON.stringify(path.slice(0, 100))} cannot be appended to the URL (${why})`,
    );
  if (!PATH_CHARS.test(path)) throw bad('characters a URL path cannot hold');
  for (const segment of path.split('/')) {
    let decoded: string;
    try {
      decoded = decodeURIComponent(segment);
    } catch {
      throw bad('a malformed percent-encoding');
    }
    if (decoded === '.' || decoded === '..' || decoded.includes('/') || decoded.includes('\\'))
      throw bad("a '.' or '..' segment, or an encoded slash");
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
      throw new TypeError(
        `remote step '${config.step}': urlExpression returned ${JSON.stringify(String(value).slice(0, 100))}, not an 'http://' or 'https://' URL`,
      );
    }
    const url = new URL(value);
    origin = url.origin;
    path = `${url.pathname}${url.search}`;
    display = `${url.origin}${url.pathname}`;
  } else {
    const base = config.base!;
    const pathname = config.appendEventPath ? joinPath(base.pathname, eventPath(config, event)) : base.pathname;
    origin = base.origin;
    path = `${pathname}${base.search}`;
    display = `${base.origin}${pathname}`;
  }
  const method = config.method ?? event.method?.toUpperCase() ?? 'POST';
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
