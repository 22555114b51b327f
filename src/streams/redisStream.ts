// redisStream(): a Redis Streams consumer group as the source (events$) and sink (commit) of a pipeline (DESIGN §12).
// Over 300 lines: the read/reclaim loop and its credit are one piece of state; scripts, options and
// metrics live beside it.
import { hostname } from 'node:os';
import { Observable, type OperatorFunction, type Subscriber } from 'rxjs';
import { decodeOrThrow } from '../config.js';
import { RxServeError, describeError } from '../errors.js';
import { toEvent, type ServingEvent } from '../event.js';
import { connect } from './ioredis.js';
import { readMessage } from './message.js';
import { streamMetrics, type RedisStreamStats } from './metrics.js';
import { CommitOptionsCodec, resolveOptions, type CommitOptions, type RedisLike, type RedisStreamOptions } from './options.js';
import { COMMIT, RECLAIM, runScript } from './scripts.js';

/** What `redisStream()` returns. */
export interface RedisStream {
  /** The requests, one event per message (`id` = the message id, `body` = the parsed JSON field). Subscribe once. */
  readonly events$: Observable<ServingEvent>;
  /** Writes each event's answer to `stream` and acknowledges its request, atomically; emits the event once done. */
  commit(options: CommitOptions): OperatorFunction<ServingEvent, ServingEvent>;
  /** Stops reading, waits (up to `closeTimeoutMs`) for in-flight messages to be committed, closes the connections it opened. */
  close(): Promise<void>;
  /** Counters since the stream was made, and the messages in flight now. */
  stats(): RedisStreamStats;
  /** This consumer's name in the group. */
  readonly consumer: string;
}

type Entry = [id: string, fields: string[] | null];

/**
 * The entries of a one-stream XREADGROUP reply, whatever the client's protocol: RESP2
 * `[[stream, entries]]`; RESP3 (ioredis 6's default) a map, as `[stream, entries]` or, with
 * `replyMapping: 'resp3'`, `{ [stream]: entries }`; `null` on timeout.
 */
function readEntries(reply: unknown): Entry[] {
  let entries: unknown;
  if (Array.isArray(reply)) entries = Array.isArray(reply[0]) ? (reply[0] as unknown[])[1] : reply[1];
  else if (reply !== null && typeof reply === 'object') entries = Object.values(reply)[0];
  return Array.isArray(entries) ? (entries as Entry[]) : [];
}

/**
 * A Redis Streams consumer group as a pipeline's source and sink: many processes on many machines
 * share one request stream, Redis hands each message to one of them, and answers land in an
 * output stream exactly once.
 *
 * `events$` reads with `XREADGROUP` (never more than `maxInFlight` messages uncommitted), reclaims
 * messages left pending by dead or stalled consumers once idle `claimIdleMs`, and moves a message
 * delivered `maxDeliveries` times to the dead-letter stream instead. `commit({ stream })` writes
 * `id`, `body` (JSON) and, for an errored event, `error` (`'<Name>: <message>'`) to `stream` and
 * acknowledges the request in one Lua script that writes only while the message is still pending
 * for this consumer. A message whose body field is missing or not JSON becomes an event errored
 * with a `TypeError` naming the field, and is committed with that error.
 *
 * ## Example
 * ```ts
 * import { modelRunner } from 'rxserve';
 * import { redisStream } from 'rxserve/streams';
 * const requests = redisStream({ redis: 'redis://127.0.0.1:6379', stream: 'requests', group: 'scorers' });
 * requests.events$
 *   .pipe(modelRunner({ models: [...] }), requests.commit({ stream: 'scores' }))
 *   .subscribe();
 * // on SIGTERM:
 * await requests.close(); // stop reading, commit what is in flight, quit
 * ```
 * @see docs/streams.md
 * @param options See {@link RedisStreamOptions}; invalid ones throw `ConfigError` naming the field.
 * @returns The stream: `events$`, `commit()`, `close()`, `stats()`.
 */
export function redisStream(options: RedisStreamOptions): RedisStream {
  const o = resolveOptions(options, () => `${hostname()}-${process.pid}`);
  // Messages read and not yet committed: the credit is maxInFlight minus this.
  const inFlight = new Set<string>();
  const metrics = streamMetrics({ stream: o.stream, group: o.group, consumer: o.consumer }, () => inFlight.size);

  let commands: RedisLike | undefined;
  let reader: RedisLike | undefined;
  let owned: RedisLike[] = [];
  let readerId: unknown;
  let running = false;
  let subscribed = false;
  let subscriber: Subscriber<ServingEvent> | undefined;
  let loop: Promise<void> = Promise.resolve();
  let closing: Promise<void> | undefined;
  let blocked = false;
  let wakeUp: (() => void) | undefined;
  let drained: (() => void) | undefined;

  /** Waits `ms` (or until woken: credit freed, close()). */
  const pause = (ms: number) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        wakeUp = undefined;
        resolve();
      }
      wakeUp = done;
    });

  // Reads wait for a few credits rather than fetching one message per round trip as each commit
  // lands (which would cap a consumer at one message per read round trip).
  const readAt = Math.max(1, Math.floor(Math.min(o.batchSize, o.maxInFlight) / 4));
  const release = (id: string) => {
    if (!inFlight.delete(id)) return;
    if (o.maxInFlight - inFlight.size >= readAt) wakeUp?.();
    if (inFlight.size === 0) drained?.();
  };

  async function open(): Promise<void> {
    if (typeof o.redis === 'string') {
      commands = await connect(o.redis);
      owned = [commands];
    } else {
      commands = o.redis;
    }
    // A blocking XREADGROUP holds its connection: reads get one of their own.
    reader = commands.duplicate();
    owned.push(reader);
    // Connection errors surface as rejected commands (retried by the loop); without a listener
    // ioredis would also print each one.
    for (const c of owned) c.on?.('error', () => undefined);
    await createGroup();
    readerId = await reader.call('CLIENT', 'ID');
    if (o.metrics) await metrics.attach(o.metrics);
  }

  async function createGroup(): Promise<void> {
    try {
      await commands!.call('XGROUP', 'CREATE', o.stream, o.group, o.startId, 'MKSTREAM');
    } catch (error) {
      if (!String((error as Error)?.message).startsWith('BUSYGROUP')) throw error;
    }
  }

  function emit(sub: Subscriber<ServingEvent>, [id, fields]: Entry, reclaimed: boolean): void {
    if (inFlight.has(id)) return;
    inFlight.add(id);
    metrics.inc('read');
    if (reclaimed) metrics.inc('reclaimed');
    sub.next(toMessageEvent(id, fields, reclaimed));
  }

  function toMessageEvent(id: string, fields: string[] | null, reclaimed: boolean): ServingEvent {
    // A queueStep's message (§19) brings its path, its headers and the sender's id (sourceId).
    const { raw, path, headers, sourceId } = readMessage(fields, o.field);
    const metadata: Record<string, unknown> = { stream: o.stream };
    if (reclaimed) metadata.reclaimed = true;
    if (sourceId !== undefined) metadata.sourceId = sourceId;
    if (raw === undefined) {
      const error = new TypeError(`redisStream: message ${id} has no field '${o.field}'`);
      return toEvent(null, { id, path, headers, metadata, error, origin: 'redisStream' });
    }
    try {
      return toEvent(JSON.parse(raw) as unknown, { id, path, headers, metadata });
    } catch (cause) {
      const error = new TypeError(`redisStream: message ${id} field '${o.field}' is not valid JSON (${(cause as Error).message})`, { cause });
      return toEvent(raw, { id, path, headers, metadata, error, origin: 'redisStream' });
    }
  }

  /** Claims idle messages of other consumers (as many as there is credit for) and dead-letters the over-delivered. */
  async function reclaim(sub: Subscriber<ServingEvent>): Promise<void> {
    let cursor = '-';
    for (let round = 0; round < 100 && running; round++) {
      const credit = o.maxInFlight - inFlight.size;
      if (credit <= 0) return;
      const [next, claimed, dead] = (await runScript(commands!, RECLAIM, [o.stream, o.deadLetterStream], [
        o.group,
        o.consumer,
        o.claimIdleMs,
        cursor,
        100,
        o.maxDeliveries,
        credit,
      ])) as [string, Entry[], number | string];
      // Numbers may arrive as strings (ioredis `stringNumbers`).
      if (Number(dead) > 0) metrics.inc('deadLettered', Number(dead));
      for (const entry of claimed) emit(sub, entry, true);
      if (next === '0') return;
      cursor = next;
    }
  }

  // One loop does both reading and reclaiming, so they share the credit without reservations, and
  // a read blocks no longer than the next reclaim is due (reclaims run at least every claimIdleMs / 2).
  async function run(sub: Subscriber<ServingEvent>): Promise<void> {
    try {
      await open();
    } catch (error) {
      running = false;
      sub.error(error);
      return;
    }
    const claimEvery = Math.max(1, Math.floor(o.claimIdleMs / 2));
    let nextReclaim = 0;
    // First our own pending entries from an earlier life under the same consumer name (ids from
    // '0'), then new messages ('>').
    let history: string | undefined = '0';
    let failures = 0;
    while (running) {
      try {
        if (Date.now() >= nextReclaim) {
          await reclaim(sub);
          nextReclaim = Date.now() + claimEvery;
        }
        const credit = o.maxInFlight - inFlight.size;
        if (credit < readAt) {
          await pause(Math.max(1, nextReclaim - Date.now()));
          continue;
        }
        blocked = true;
        const block = Math.max(1, Math.min(o.blockMs, nextReclaim - Date.now()));
        const reply = (await reader!.call(
          'XREADGROUP', 'GROUP', o.group, o.consumer, 'COUNT', Math.min(o.batchSize, credit),
          'BLOCK', block, 'STREAMS', o.stream, history ?? '>',
        )) as unknown;
        blocked = false;
        failures = 0;
        const entries = readEntries(reply);
        if (history !== undefined) history = entries.length > 0 ? entries[entries.length - 1][0] : undefined;
        for (const entry of entries) emit(sub, entry, false);
      } catch (error) {
        blocked = false;
        if (!running) break;
        // The group vanishes when Redis restarts without persistence: make it again.
        if (String((error as Error)?.message).startsWith('NOGROUP')) await createGroup().catch(() => undefined);
        else await pause(Math.min(2_000, 50 * 2 ** Math.min(failures++, 6)));
      }
    }
  }

  const events$ = new Observable<ServingEvent>((sub) => {
    if (closing) {
      sub.complete();
      return;
    }
    if (subscribed) {
      sub.error(new RxServeError('redisStream: events$ takes one subscription (make another redisStream for another consumer)'));
      return;
    }
    subscribed = true;
    subscriber = sub;
    running = true;
    loop = run(sub);
    return () => {
      subscriber = undefined;
      stopReading();
    };
  });

  function stopReading(): void {
    running = false;
    wakeUp?.();
    // A blocked XREADGROUP returns at once (as on timeout) instead of after blockMs.
    if (blocked && readerId !== undefined) commands?.call('CLIENT', 'UNBLOCK', String(readerId)).catch(() => undefined);
  }

  type Pending = { id: string; body: string; error: string; done: () => void };
  const batches = new Map<string, Pending[]>();

  function enqueue(event: ServingEvent, stream: string): Promise<void> {
    let body: string | undefined;
    let error = event.error ? describeError(event.error) : '';
    try {
      body = JSON.stringify(event.body);
    } catch (cause) {
      error ||= `TypeError: the answer's body is not JSON (${(cause as Error).message})`;
    }
    return new Promise((done) => {
      let batch = batches.get(stream);
      if (!batch) {
        batches.set(stream, (batch = []));
        // Answers that arrive in the same turn of the event loop go in one script call.
        setImmediate(() => {
          if (batches.get(stream) === batch) batches.delete(stream);
          if (batch!.length > 0) void flush(stream, batch!.splice(0));
        });
      }
      batch.push({ id: event.id, body: body ?? 'null', error, done });
      if (batch.length >= o.batchSize) void flush(stream, batch.splice(0));
    });
  }

  async function flush(stream: string, items: Pending[]): Promise<void> {
    const args: string[] = [o.group, o.consumer];
    for (const item of items) args.push(item.id, item.body, item.error);
    let result: unknown;
    for (let attempt = 0; commands; attempt++) {
      try {
        result = await runScript(commands, COMMIT, [o.stream, stream], args);
        break;
      } catch (error) {
        // Redis refused (a wrong type, a script error): trying again will not help. A lost
        // connection may: ioredis reconnects meanwhile.
        if ((error as Error)?.name === 'ReplyError' || attempt >= 20) break;
        await new Promise((r) => setTimeout(r, Math.min(1_000, 50 * 2 ** attempt)));
      }
    }
    // No result: the commit itself failed (not a message another consumer had taken).
    const written = Array.isArray(result) ? (result as unknown[]) : undefined;
    items.forEach((item, i) => {
      metrics.inc(written === undefined ? 'failed' : Number(written[i]) === 1 ? 'committed' : 'dropped');
      release(item.id);
      item.done();
    });
  }

  return {
    events$,
    consumer: o.consumer,
    stats: () => ({ ...metrics.stats }),
    commit(commitOptions: CommitOptions): OperatorFunction<ServingEvent, ServingEvent> {
      const { stream } = decodeOrThrow(CommitOptionsCodec, commitOptions, 'redisStream.commit.options');
      return (source) =>
        new Observable<ServingEvent>((sub) => {
          let writing = 0;
          let sourceDone = false;
          const finish = () => {
            if (sourceDone && writing === 0) sub.complete();
          };
          const subscription = source.subscribe({
            next(event) {
              writing++;
              void enqueue(event, stream).then(() => {
                writing--;
                sub.next(event);
                finish();
              });
            },
            error: (error) => sub.error(error),
            complete() {
              sourceDone = true;
              finish();
            },
          });
          return () => subscription.unsubscribe();
        });
    },
    close() {
      closing ??= (async () => {
        const downstream = subscriber;
        stopReading();
        await loop;
        downstream?.complete();
        // Only a live subscription can still commit what is in flight.
        if (downstream && inFlight.size > 0) {
          await new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, o.closeTimeoutMs);
            drained = () => {
              clearTimeout(timer);
              resolve();
            };
          });
        }
        metrics.detach();
        await Promise.all(owned.map((c) => c.quit().catch(() => c.disconnect())));
      })();
      return closing;
    },
  };
}
