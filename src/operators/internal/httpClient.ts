// The client of remoteStep and batchHttpRequests (docs/design.md §19): one undici keep-alive Agent per
// subscription, one HTTP call with retries (jittered capped backoff, retry-after honoured),
// redirects, a deadline and abort, the answer read and checked; and the request permits a batch
// shares across events.
import type { Dispatcher } from 'undici';
import { loadUndici } from '../../undici.js';
import { jsonTextProblem } from '../../body.js';
import { ModelTimeoutError, RemoteStepError, toError } from '../../errors.js';
import { EventCancel } from '../../event.js';
import { RingQueue } from '../../execution/ringQueue.js';
import { retryAfterMs, retryDelayMs, sleep, type AbortLike } from '../../retry.js';
import type { HttpConfig, PreparedRequest } from './http.js';

// Errors of the request itself (a bad header, an unsupported option) and answers over the size
// limit: sending again would fail the same way.
const NOT_RETRYABLE = new Set([
  'UND_ERR_INVALID_ARG',
  'UND_ERR_NOT_SUPPORTED',
  'UND_ERR_RES_EXCEEDED_MAX_SIZE',
  'UND_ERR_REQ_CONTENT_LENGTH_MISMATCH',
]);
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
    throw new RemoteStepError(
      step,
      request.display,
      status,
      '',
      1,
      `${request.method} ${request.display} was redirected to ${JSON.stringify(location.slice(0, 100))}, not an http(s) URL`,
    );
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
            throw new RemoteStepError(
              config.step,
              first.display,
              res.status,
              '',
              attempt,
              `${first.method} ${first.display}: more than ${MAX_REDIRECTS} redirects (last to ${request.display})`,
            );
          }
          request = redirected(config.step, request, res.status, location);
          res = await this.#request(request, signal);
        }
        if (res.status < 400) return this.#decode(request, res, attempt);
        const answer = head(res.body);
        const { status } = res;
        failure = new RemoteStepError(
          config.step,
          request.display,
          status,
          answer,
          attempt,
          `HTTP ${status} from ${request.method} ${request.display}${tries(attempt)}: ${answer}`,
        );
        retryable = RETRYABLE_STATUS(status);
        wait = retryAfterMs((name) => headerOf(res, name));
      } catch (error) {
        if (signal.aborted) throw signal.reason;
        if (error instanceof RemoteStepError) throw error;
        const e = toError(error);
        const code = (e as { code?: string }).code ?? '';
        const causeMessage = (e.cause as { message?: string } | undefined)?.message;
        const why =
          code === 'UND_ERR_RES_EXCEEDED_MAX_SIZE'
            ? `the answer is over maxAnswerBytes (${config.maxAnswerBytes})`
            : [e.message, causeMessage].filter(Boolean).join(': ');
        failure = new RemoteStepError(
          config.step,
          request.display,
          undefined,
          '',
          attempt,
          `${request.method} ${request.display} failed${tries(attempt)}: ${why}`,
          { cause: error },
        );
        retryable = !NOT_RETRYABLE.has(code);
      }
      if (!retryable || attempt > config.retries) throw failure;
      const delay = retryDelayMs(attempt - 1, wait, config.baseDelayMs, Math.random, config.maxDelayMs);
      // Waiting past the deadline only to time out would hide the server's answer behind a
      // ModelTimeoutError and hold the slot meanwhile: fail with the answer now.
      if (performance.now() + delay >= deadline) {
        throw new RemoteStepError(
          config.step,
          request.display,
          failure.status,
          failure.answer,
          attempt,
          `${failure.message.replace(/^remote step '[^']*': /, '')} (no retry: waiting ${Math.round(delay)} ms would pass timeoutMs ${config.timeoutMs})`,
          { cause: failure.cause },
        );
      }
      await sleep(delay, signal);
    }
  }

  #decode(request: PreparedRequest, res: Answer, attempt: number): unknown {
    const text = res.body.toString('utf8');
    if (!this.config.returnJson && !/[/+]json\b/i.test(headerOf(res, 'content-type') ?? '')) return text;
    const fail = (why: string) =>
      new RemoteStepError(
        this.config.step,
        request.display,
        res.status,
        head(res.body),
        attempt,
        `the answer of ${request.method} ${request.display} (HTTP ${res.status}) ${why}: ${head(res.body)}`,
      );
    if (text === '') return null;
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (error) {
      throw fail(`is not JSON (${toError(error).message})`);
    }
    // The answer enters the pipeline like a request body does (docs/design.md §11): same checks
    // (a short answer without those key names and without escapes is not walked).
    const problem = jsonTextProblem(text, value);
    if (problem !== undefined) throw fail(`was refused: ${problem.replace(/^body/, 'answer')}`);
    return value;
  }
}

const tries = (attempt: number) => (attempt > 1 ? ` after ${attempt} attempts` : '');
/** The first 200 bytes of an answer, as text (a character cut in two is replaced, not thrown on). */
const head = (body: Buffer) => body.subarray(0, ANSWER_HEAD_BYTES).toString('utf8');

/**
 * The abort of one event's requests: what undici and `sleep` need of an AbortSignal, without an
 * AbortController and its EventTarget (~6% of a loopback request's client CPU on Node 20). The
 * event's own cancel token class has that surface.
 */
export class RequestAbort extends EventCancel implements AbortLike {}

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
