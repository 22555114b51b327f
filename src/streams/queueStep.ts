// queueStep(): MLRun's queue hop (`>>`, `$queue`) — XADD each event to a Redis stream in redisStream's
// message format, so the graph goes on in the process that consumes the stream (docs/design.md §19).
import { Observable, type OperatorFunction } from 'rxjs';
import { NonEmptyString, decodeOrThrow, nonNegativeInt, positiveInt, strict } from '../decode.js';
import { RxServeError, toError } from '../errors.js';
import { isErrored, withBody, withError, type ServingEvent } from '../event.js';
import { dispatch, type Work } from '../operators/internal/dispatch.js';
import { limitsFrom } from '../operators/internal/dispatchOptions.js';
import { QUEUE_STEP, type QueueStepMark } from '../operators/internal/queueMarker.js';
import { connect } from './ioredis.js';
import { messageFields } from './message.js';
import { RedisCodec, type RedisLike } from './options.js';

export { QUEUE_STEP, queueStepMark, type QueueStepMark } from '../operators/internal/queueMarker.js';

/** Options of `queueStep()`. */
export interface QueueStepOptions {
  /** A `redis://` URL (each subscription opens and closes its own connection), or an ioredis client (used as is, never closed). */
  readonly redis: string | RedisLike;
  /** The stream the events are written to (a `redisStream` on the other side reads it). */
  readonly stream: string;
  /** Trim the stream to about this many entries (`XADD MAXLEN ~`); default: never trimmed. */
  readonly maxLen?: number;
  /** Step name, set as `origin` on the events it fails; default `'queue'`. */
  readonly name?: string;
  /** XADDs awaiting Redis' reply at once; default 256. */
  readonly maxInFlight?: number;
  /** Events waiting beyond that; default 10,000; more → `QueueFullError`. */
  readonly maxQueue?: number;
}

export const QueueStepOptionsCodec = strict(
  'QueueStepOptions',
  { redis: RedisCodec, stream: NonEmptyString },
  { maxLen: positiveInt(), name: NonEmptyString, maxInFlight: positiveInt(), maxQueue: nonNegativeInt(true) },
);

/** Messages gathered in one turn of the event loop go to Redis in one pipeline, up to this many. */
const MAX_BATCH = 256;

interface Queued {
  readonly fields: string[];
  /** Cancelled before it was sent: left out of its batch. */
  cancelled: boolean;
  sent: boolean;
  settle(messageId: string | undefined, error: Error | undefined): void;
}

/** An ioredis client's pipeline (checked by shape: ioredis is an optional peer). */
interface Pipelining {
  pipeline(): { call(command: string, ...args: string[]): unknown; exec(): Promise<[Error | null, unknown][] | null> };
}

/**
 * XADDs `items`, each on its own (one refused entry fails only its event): in one pipeline when
 * the client has them (ioredis), else as separate commands (written back to back all the same).
 */
async function xadd(redis: RedisLike, stream: string, maxLen: string, items: readonly Queued[]): Promise<[Error | null, unknown][]> {
  const head = maxLen === '' ? [stream, '*'] : [stream, 'MAXLEN', '~', maxLen, '*'];
  if (typeof (redis as Partial<Pipelining>).pipeline === 'function') {
    const pipe = (redis as unknown as Pipelining).pipeline();
    for (const item of items) pipe.call('XADD', ...head, ...item.fields);
    const results = await pipe.exec();
    if (results === null) throw new Error('the pipeline was not run (the connection is closed)');
    return results;
  }
  return Promise.all(
    items.map((item) =>
      redis.call('XADD', ...head, ...item.fields).then(
        (id): [null, unknown] => [null, id],
        (error: unknown): [Error, unknown] => [toError(error), undefined],
      ),
    ),
  );
}

/**
 * Hands each event to another process through a Redis stream (MLRun's `>>` / `$queue` step):
 * XADDs it in redisStream's message format — fields `body` (JSON), `id` (the event's id), `path`
 * and `headers` (one JSON object) — and emits it once Redis has the entry, with
 * `metadata.queued = { stream, id }` (the entry's id: the `id` field of its answer when a
 * `redisStream(...).commit()` answers it). The event's work goes on in the consumer's process,
 * where `redisStream()` reads the path and headers back, and the sender's id as
 * `metadata.sourceId`.
 *
 * An XADD Redis refuses (the key holds another type, out of memory), or that cannot reach Redis
 * through the connection's own reconnection attempts (ioredis: `maxRetriesPerRequest`), fails the
 * event with an `RxServeError` naming the stream. rxserve never sends an entry twice: a
 * connection it opens does not resend commands that were in flight when it dropped (ioredis'
 * `autoResendUnfulfilledCommands: false`). Events that arrive in one turn of the event loop are
 * written in one pipeline. Errored events pass through untouched, not queued. At most
 * `maxInFlight` XADDs wait for Redis; beyond `maxQueue` more, events leave with `QueueFullError`.
 *
 * In a flow, no step may follow a queue step (they run in the consumer's process): the operator
 * carries `{ stream }` under the symbol `QUEUE_STEP` for the flow builder to check.
 *
 * ## Example
 * ```ts
 * import { serve, step } from 'rxserve';
 * import { queueStep } from 'rxserve/streams';
 * await serve((events) => events.pipe(step(validate), queueStep({ redis: 'redis://127.0.0.1:6379', stream: 'requests' })));
 * // each request is answered once queued: { ...body }, metadata.queued = { stream: 'requests', id: '1718...-0' }
 * ```
 * @see docs/remote.md
 * @param options See {@link QueueStepOptions}; invalid ones throw `ConfigError` naming the field.
 */
export function queueStep(
  options: QueueStepOptions,
): OperatorFunction<ServingEvent, ServingEvent> & { readonly [QUEUE_STEP]: QueueStepMark } {
  const o = decodeOrThrow(QueueStepOptionsCodec, options, 'queueStep.options') as QueueStepOptions;
  const limits = limitsFrom({ name: o.name, maxInFlight: o.maxInFlight ?? 256, maxQueue: o.maxQueue }, 'queue');
  const { stream } = o;
  const name = limits.step;
  const maxLen = o.maxLen === undefined ? '' : String(o.maxLen);

  const operator: OperatorFunction<ServingEvent, ServingEvent> = (source) =>
    new Observable<ServingEvent>((subscriber) => {
      let closed = false;
      let owned: RedisLike | undefined;
      let client: Promise<RedisLike>;
      if (typeof o.redis === 'string') {
        // In flight when the connection drops: failed, not resent (the entry may be in the stream already).
        client = connect(o.redis, { autoResendUnfulfilledCommands: false }).then((redis) => {
          owned = redis;
          redis.on?.('error', () => undefined); // failures reach the events; ioredis would also print each
          if (closed) void redis.quit().catch(() => redis.disconnect());
          return redis;
        });
        // ioredis missing is a fault of the pipeline, not of an event.
        client.catch((error: unknown) => subscriber.error(error));
      } else {
        client = Promise.resolve(o.redis);
      }

      let batch: Queued[] = [];
      let scheduled = false;

      const flush = (): void => {
        scheduled = false;
        const items = batch.filter((item) => !item.cancelled);
        batch = [];
        if (items.length === 0 || closed) return;
        for (const item of items) item.sent = true;
        client
          .then((redis) => xadd(redis, stream, maxLen, items))
          .then(
            (results) => {
              items.forEach((item, i) => {
                const [error, id] = results[i];
                item.settle(error ? undefined : String(id), error ? failure(error.message, error) : undefined);
              });
            },
            (error: unknown) => {
              const e = failure(toError(error).message, error);
              for (const item of items) item.settle(undefined, e);
            },
          );
      };
      const failure = (message: string, cause?: unknown) =>
        new RxServeError(`queueStep '${name}': XADD to stream '${stream}' failed: ${message}`, cause === undefined ? undefined : { cause });

      const work: Work = (event, done) => {
        let fields: string[];
        try {
          fields = messageFields(event);
        } catch (cause) {
          throw new TypeError(`queueStep '${name}': the body of event '${event.id}' cannot be sent as JSON (${toError(cause).message})`, {
            cause,
          });
        }
        const item: Queued = {
          fields,
          cancelled: false,
          sent: false,
          settle(messageId, error) {
            if (error !== undefined) return done(withError(event, error, name));
            done(withBody(event, event.body, { metadata: { ...event.metadata, queued: { stream, id: messageId } } }));
          },
        };
        batch.push(item);
        if (batch.length >= MAX_BATCH) flush();
        else if (!scheduled) {
          scheduled = true;
          setImmediate(flush);
        }
        // Once sent, an entry cannot be taken back: the event leaves cancelled, the entry stays.
        return () => {
          if (!item.sent) item.cancelled = true;
        };
      };

      dispatch(source, subscriber, limits, work, isErrored, { operator: 'queueStep' });
      subscriber.add(() => {
        closed = true;
        // Replies still due are read before the connection closes (QUIT waits for them).
        if (owned) void owned.quit().catch(() => owned!.disconnect());
      });
    });

  const mark: QueueStepMark = Object.freeze({ stream });
  return Object.assign(operator, { [QUEUE_STEP]: mark });
}
