// Server-Sent Events for serve() (docs/design.md §15): a request with `Accept: text/event-stream` gets one
// `partial` event per partial result of its event, then one `result` event, then the stream closes.
import type { OutgoingHttpHeaders } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { RxServeError, toError } from '../errors.js';
import type { PartialResult, PartialSink, ServingEvent } from '../event.js';
import type { AnswerTo, CancelRequest } from './invoker.js';
import { errorBody, HttpError, refusalStatus, statusOf } from './status.js';
import { MAX_TIMER_MS } from './unread.js';

/** True when the client asks for an event stream (`Accept: text/event-stream`). */
export function wantsEventStream(request: FastifyRequest): boolean {
  const accept = request.headers.accept;
  return typeof accept === 'string' && accept.toLowerCase().includes('text/event-stream');
}

/** One SSE frame. JSON text has no raw newlines, so `data` is one line. */
export function sseFrame(event: string | undefined, data: string): string {
  return `${event === undefined ? '' : `event: ${event}\n`}data: ${data}\n\n`;
}

/** A JSON text, or undefined when the value cannot be sent as JSON (a cycle, a BigInt). */
export function jsonOrUndefined(value: unknown): string | undefined {
  try {
    return JSON.stringify(value ?? null);
  } catch {
    return undefined;
  }
}

/** What an event stream allows a client that does not read (`sendTimeoutMs`, `maxStreamBufferBytes`). */
export interface StreamLimits {
  /** How long a write may wait for the client to read it; `Infinity` = no limit. */
  readonly sendTimeoutMs: number;
  /** The most bytes (as the response counts them: a string's length) kept unsent before a new frame is queued; `Infinity` = no limit. */
  readonly maxBufferBytes: number;
}

export const DEFAULT_STREAM_LIMITS: StreamLimits = { sendTimeoutMs: 60_000, maxBufferBytes: 1024 * 1024 };

/**
 * Per connection: the watches of its requests still unanswered (more than one when pipelined), as
 * a list threaded through the watches themselves — a `Set` here reallocated its table each time it
 * emptied, that is once per request on a kept-alive connection.
 */
const kWatches = Symbol('rxserve.clientWatches');
interface Watches {
  head: ClientWatch | undefined;
}
type WatchedSocket = Socket & { [kWatches]?: Watches };

/**
 * A request's connection, watched: a client that leaves before `done()` cancels its started
 * request (the work is aborted as on unsubscribe). Every route that answers through the invoker
 * uses it, JSON and event streams alike.
 *
 * One `close` listener per connection, not per request: a kept-alive connection carries many
 * requests, and a `once('close')` + `off` pair per request on the response cost ~1 µs of CPU
 * (node's event-emitter bookkeeping). The connection's listener cancels whatever of its requests
 * is still unanswered when it closes.
 */
export class ClientWatch {
  #gone = false;
  #done = false;
  #cancel: CancelRequest | undefined;
  /** The connection's list this watch is on (until done), and its neighbours there. */
  #list: Watches | undefined;
  #prev: ClientWatch | undefined;
  #next: ClientWatch | undefined;

  constructor(reply: FastifyReply) {
    const socket: WatchedSocket | null = reply.raw.socket;
    // Already closed (or detached): the client is gone before its request starts.
    if (socket === null || socket.destroyed) {
      this.#gone = true;
      return;
    }
    let list = socket[kWatches];
    if (list === undefined) {
      const own: Watches = { head: undefined };
      list = socket[kWatches] = own;
      socket.once('close', () => {
        // Each watch leaves the list as it is told (its cancel may end it: done() unlinks).
        for (let watch = own.head; watch !== undefined; watch = own.head) {
          watch.#unlink();
          watch.#left();
        }
      });
    }
    this.#list = list;
    this.#next = list.head;
    if (list.head !== undefined) list.head.#prev = this;
    list.head = this;
  }

  #unlink(): void {
    const list = this.#list;
    if (list === undefined) return;
    if (this.#prev !== undefined) this.#prev.#next = this.#next;
    else list.head = this.#next;
    if (this.#next !== undefined) this.#next.#prev = this.#prev;
    this.#list = this.#prev = this.#next = undefined;
  }

  #left(): void {
    if (this.#done) return;
    this.#gone = true;
    this.#cancel?.(new RxServeError('the client disconnected before its answer'));
  }

  /** The request to cancel if the client leaves (set once it is started; nothing once done). */
  watch(cancel: CancelRequest): void {
    if (this.#done) return;
    if (this.#gone) cancel(new RxServeError('the client disconnected before its answer'));
    else this.#cancel = cancel;
  }

  /**
   * The server gives up on this client (it does not read its answer): its request is cancelled as
   * if it had left, and the watch ends. Nothing once done.
   */
  abort(reason: Error): void {
    if (this.#done) return;
    const cancel = this.#cancel;
    this.#gone = true;
    this.done();
    cancel?.(reason);
  }

  /** The client left before the answer. */
  get gone(): boolean {
    return this.#gone;
  }

  /** The answer is sent (or nobody waits for it): stop watching. */
  done(): void {
    if (this.#done) return;
    this.#done = true;
    this.#cancel = undefined;
    this.#unlink();
  }
}

/**
 * An event stream on a reply: frames are written until it ends once, or until the client leaves.
 *
 * Written straight to the response (the reply is hijacked once its headers go out), not through a
 * stream piped into it: a pipe moves data on `process.nextTick`, and so does node:http's own cork
 * of a response's socket, and a tick's callbacks run only once its promise jobs are done — a model
 * reading a burst of chunks from one upstream read runs through all of them as promise jobs first,
 * so the first token waited for the whole burst (~2 ms for a 200-token answer on loopback).
 *
 * So the first data frame goes out at once (with the frames opened before it, the comment or the
 * role chunk, in one write): the time to first token is not held back by anything. Later frames
 * of one tick go out as one write: the first of them schedules a flush (`process.nextTick`, after
 * the promise jobs of the tick), so a model's burst of partials from one upstream read is one
 * socket write instead of one per partial — each write on a chunked response is a `writev` system
 * call. No frame waits for a later one.
 *
 * Nothing waits for the client either: a model's tokens come at its provider's pace. So what the
 * client leaves unread is bounded (`limits`, serve()'s `sendTimeoutMs` and `maxStreamBufferBytes`):
 * past either bound the call is cancelled and the connection destroyed (docs/streaming.md).
 */
export class EventStream {
  readonly #client: ClientWatch;
  #ended = false;
  /** The headers are out: frames go to the response. */
  #sent = false;
  /** No data frame was written yet: the next one is written at once. */
  #eager = true;
  /** Frames written since the last flush. */
  #pending = '';
  #flushing = false;
  readonly #flush = (): void => {
    this.#flushing = false;
    if (this.#pending.length === 0 || this.#ended) return;
    const text = this.#pending;
    this.#pending = '';
    if (!this.#client.gone) this.#out(text);
  };
  /** Armed while the response holds bytes the client has not read (see `#stalled`). */
  #stall: ReturnType<typeof setTimeout> | undefined;
  /** While streaming, the client read all that was written: not stalled any more. */
  readonly #drained = (): void => {
    if (!this.#ended) this.#unstall();
  };
  /** The answer is all sent ('finish'), or the connection is gone ('close'). */
  readonly #settled = (): void => this.#unstall();
  readonly #expire = (): void => {
    this.#stall = undefined;
    const ms = this.limits.sendTimeoutMs;
    this.#cut(
      this.#ended
        ? `the end of its answer (${this.reply.raw.writableLength} bytes) was not read within ${ms} ms (sendTimeoutMs)`
        : `it did not catch up with its answer within ${ms} ms (sendTimeoutMs)`,
    );
  };

  constructor(
    private readonly reply: FastifyReply,
    readonly limits: StreamLimits = DEFAULT_STREAM_LIMITS,
  ) {
    this.#client = new ClientWatch(reply);
  }

  /** Still writable: not ended, client still there. */
  get open(): boolean {
    return !this.#ended && !this.#client.gone;
  }

  /** Cancels the request if the client leaves before the stream ends. */
  watch(cancel: CancelRequest): void {
    this.#client.watch(cancel);
  }

  /** Writes the first data frame at once; queues the later ones, written together at the end of their tick. */
  write(frame: string): void {
    if (!this.open) return;
    if (this.#eager && this.#sent) {
      this.#eager = false;
      const text = this.#pending + frame;
      this.#pending = '';
      this.#out(text);
      if (this.#ended) return;
      // node:http corks the socket on a response's write and uncorks it on process.nextTick (to
      // send headers and chunk together): uncorked here, the frame leaves now, not after the burst.
      this.reply.raw.socket?.uncork();
      return;
    }
    this.#pending += frame;
    this.#schedule();
  }

  /**
   * Writes to the response, unless the client left more than `maxBufferBytes` of the earlier
   * writes unread: the stream is cut then. Node keeps whatever a response is given until the
   * client reads it, and a model does not wait for its reader, so a client that does not read
   * would otherwise have the whole answer held for it, for as long as it keeps its socket.
   */
  #out(text: string): void {
    const raw = this.reply.raw;
    if (raw.writableLength > this.limits.maxBufferBytes) {
      return this.#cut(`more than ${this.limits.maxBufferBytes} bytes of its answer were unread (maxStreamBufferBytes)`);
    }
    if (!raw.write(text)) this.#stalled();
  }

  /**
   * The connection did not take a write at once: from now the client has `sendTimeoutMs` to read
   * what is held for it — all of it ('drain') while the answer comes, its last byte ('finish')
   * once it ended — or the stream is cut. No socket timeout covers this: the connection is busy
   * writing, not idle. One timer per stalled stream, none while every write is taken at once.
   */
  #stalled(): void {
    if (this.#stall !== undefined || this.limits.sendTimeoutMs === Infinity) return;
    this.#stall = setTimeout(this.#expire, Math.min(this.limits.sendTimeoutMs, MAX_TIMER_MS));
    this.reply.raw.on('drain', this.#drained).on('finish', this.#settled).on('close', this.#settled);
  }

  #unstall(): void {
    if (this.#stall === undefined) return;
    clearTimeout(this.#stall);
    this.#stall = undefined;
    this.reply.raw.off('drain', this.#drained).off('finish', this.#settled).off('close', this.#settled);
  }

  /**
   * Gives up on a client that does not read: the call still running is cancelled (as when a client
   * leaves), and the connection is destroyed, dropping what was held for it.
   */
  #cut(why: string): void {
    this.#unstall();
    const error = new RxServeError(`the client did not read its event stream: ${why}; its connection was closed`);
    if (!this.#ended) {
      this.#ended = true;
      this.#pending = '';
      this.#client.abort(error);
    }
    this.reply.log.warn({ err: error }, 'rxserve: event stream cut');
    this.reply.raw.destroy();
  }

  #schedule(): void {
    if (!this.#flushing) {
      this.#flushing = true;
      process.nextTick(this.#flush);
    }
  }

  /**
   * Ends a stream that was never sent (its request failed before its first frame, and is answered
   * with an ordinary error reply instead). True when the client is still there to get that reply.
   */
  abandon(): boolean {
    const there = this.open;
    this.#ended = true;
    this.#client.done();
    this.#pending = '';
    return there;
  }

  /** Writes what is queued and `frame`, and ends the stream. */
  end(frame: string): void {
    if (!this.open) return;
    this.#ended = true;
    this.#client.done();
    const text = this.#pending + frame;
    this.#pending = '';
    const raw = this.reply.raw;
    raw.end(text);
    // What the client has not read yet keeps the connection open until it does, within
    // sendTimeoutMs (counted from the first write it did not take, if one came before).
    if (!raw.writableFinished) this.#stalled();
  }

  /**
   * Sends the 200 and the headers with `first` (so the client has them before any partial): with
   * the first data frame if one is written in the same tick, else at the end of the tick.
   */
  send(first: string, closing: boolean): FastifyReply {
    if (closing) this.reply.header('connection', 'close');
    this.reply
      .code(200)
      .header('x-request-id', this.reply.request.id)
      .header('content-type', 'text/event-stream; charset=utf-8')
      .header('cache-control', 'no-cache')
      .header('x-accel-buffering', 'no');
    // The response is written here from now on; fastify still runs its onResponse hooks.
    this.reply.hijack();
    this.reply.raw.writeHead(200, this.reply.getHeaders() as OutgoingHttpHeaders);
    this.#sent = true;
    this.#pending = first + this.#pending;
    this.#schedule();
    return this.reply;
  }
}

/**
 * Answers a request as an event stream: starts it with a partial sink, and sends the 200 and
 * `text/event-stream` headers with its first partial, or with its `result` when it has none.
 * `result` carries what the JSON route answers: the output body, or `{ error, status }` for an
 * event that errored after partials were sent. An event that errored (or a request refused)
 * before its first partial is answered by `sendError` with its status instead — an ordinary
 * JSON error reply, not an opened stream (docs/design.md §10). A client that disconnects cancels the
 * event's work.
 */
export function sendEventStream(
  reply: FastifyReply,
  begin: (answer: AnswerTo, partials: PartialSink) => CancelRequest,
  options: { closing: boolean; sendError: (error: Error) => FastifyReply; limits?: StreamLimits },
): void {
  const stream = new EventStream(reply, options.limits);
  let opened = false;
  const open = (): void => {
    if (opened) return;
    opened = true;
    // A comment first: the frames of this tick follow it in one write.
    stream.send(': rxserve event stream\n\n', options.closing);
  };
  const partial = (p: PartialResult): void => {
    if (!stream.open) return;
    open();
    const json = jsonOrUndefined({ endpoint: p.endpoint, data: p.data });
    stream.write(json === undefined ? `: a partial of '${p.endpoint}' could not be sent as JSON\n\n` : sseFrame('partial', json));
  };
  const fail = (error: Error, frame: string): void => {
    if (opened) return stream.end(frame);
    if (stream.abandon()) options.sendError(error);
  };
  const answered = (event: ServingEvent): void => {
    if (event.error !== undefined) {
      return fail(event.error, sseFrame('result', JSON.stringify({ ...errorBody(event.error), status: statusOf(event.error) })));
    }
    if (!stream.open) return;
    open();
    const json = jsonOrUndefined(event.body);
    stream.end(sseFrame('result', json ?? JSON.stringify({ error: "TypeError: the answer's body cannot be sent as JSON", status: 500 })));
  };
  const refused = (thrown: unknown): void => {
    const e = toError(thrown);
    const status = refusalStatus(options.closing);
    fail(new HttpError(e.name, e.message, status), sseFrame('result', JSON.stringify({ ...errorBody(e), status })));
  };
  stream.watch(begin((event, why) => (event !== undefined ? answered(event) : refused(why)), partial));
}
