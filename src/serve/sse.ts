// Server-Sent Events for serve() (DESIGN §15): a request with `Accept: text/event-stream` gets one
// `partial` event per partial result of its event, then one `result` event, then the stream closes.
import { PassThrough } from 'node:stream';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { RxServeError, toError } from '../errors.js';
import type { PartialResult, PartialSink, ServingEvent } from '../event.js';
import type { Started } from './invoker.js';
import { errorBody, statusOf } from './status.js';

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

/**
 * Opens an event stream on the reply (200, `text/event-stream`) and starts the request with a
 * partial sink writing to it. `result` carries what the JSON route answers: the output body, or
 * `{ error, status }` for an errored event. A client that disconnects cancels the event's work.
 */
export function sendEventStream(
  reply: FastifyReply,
  start: (partials: PartialSink) => Started,
  options: { closing: boolean },
): FastifyReply {
  const out = new PassThrough();
  let finished = false;
  const partial = (p: PartialResult): void => {
    if (finished) return;
    const json = jsonOrUndefined({ endpoint: p.endpoint, data: p.data });
    out.write(json === undefined ? `: a partial of '${p.endpoint}' could not be sent as JSON\n\n` : sseFrame('partial', json));
  };
  const started = start(partial);
  const onClose = (): void => {
    if (finished) return;
    finished = true;
    started.cancel(new RxServeError('the client disconnected before its answer'));
  };
  reply.raw.once('close', onClose);
  const end = (frame: string): void => {
    finished = true;
    reply.raw.off('close', onClose);
    out.end(frame);
  };
  started.promise.then(
    (event: ServingEvent) => {
      if (finished) return;
      if (event.error !== undefined) return end(sseFrame('result', JSON.stringify({ ...errorBody(event.error), status: statusOf(event.error) })));
      const json = jsonOrUndefined(event.body);
      end(
        sseFrame(
          'result',
          json ?? JSON.stringify({ error: "TypeError: the answer's body cannot be sent as JSON", status: 500 }),
        ),
      );
    },
    (error: unknown) => {
      if (finished) return;
      end(sseFrame('result', JSON.stringify({ ...errorBody(toError(error)), status: 503 })));
    },
  );
  if (options.closing) reply.header('connection', 'close');
  // A comment first, so the client has the headers before the first partial.
  out.write(': rxserve event stream\n\n');
  return reply.code(200).header('content-type', 'text/event-stream; charset=utf-8').header('cache-control', 'no-cache').header('x-accel-buffering', 'no').send(out);
}
