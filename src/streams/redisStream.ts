// redisStream(): a Redis Streams consumer group as the source (events$) and sink (commit) of a pipeline (docs/design.md §12).
// The read/reclaim loop and its credit are one piece of state, kept here; what is written back
// (committer.ts), the two operators (commit.ts, filter.ts), messages as events (message.ts), the
// stall report (stall.ts), scripts, options and metrics live beside it.
import { hostname } from 'node:os';
import { Observable, type OperatorFunction, type Subscriber } from 'rxjs';
import { decodeOrThrow, fn } from '../decode.js';
import { RxServeError } from '../errors.js';
import type { ServingEvent } from '../event.js';
import { commitOperator } from './commit.js';
import { committer } from './committer.js';
import { filterOperator } from './filter.js';
import { connect } from './ioredis.js';
import { readEntries, toMessageEvent, type Entry } from './message.js';
import { streamMetrics, type RedisStreamStats } from './metrics.js';
import { CommitOptionsCodec, resolveOptions, type CommitOptions, type RedisLike, type RedisStreamOptions } from './options.js';
import { RECLAIM, runScript } from './scripts.js';
import { stallWatch } from './stall.js';

/** What `redisStream()` returns. */
export interface RedisStream {
  /** The requests, one event per message (`id` = the message id, `body` = the parsed JSON field). Subscribe once. */
  readonly events$: Observable<ServingEvent>;
  /** Writes each event's answer to `stream` and acknowledges its request, atomically; emits the event once done. */
  commit(options: CommitOptions): OperatorFunction<ServingEvent, ServingEvent>;
  /**
   * The stream-aware filter: passes the events `predicate` accepts and acknowledges the others
   * without an answer (atomically, like a commit; counted as `skipped`), freeing their credit. An
   * RxJS `filter` would leave their messages pending and their credit held: after `maxInFlight`
   * such events the consumer reads nothing more. Errored events pass without being asked about.
   */
  filter(predicate: (event: ServingEvent) => boolean): OperatorFunction<ServingEvent, ServingEvent>;
  /** Stops reading, waits (up to `closeTimeoutMs`) for in-flight messages to be committed, closes the connections it opened. */
  close(): Promise<void>;
  /** Counters since the stream was made, and the messages in flight now. */
  stats(): RedisStreamStats;
  /** This consumer's name in the group. */
  readonly consumer: string;
}

const PredicateCodec = fn<(event: ServingEvent) => boolean>('a function (event) => boolean');

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
 * for this consumer. `filter(predicate)` acknowledges the events it rejects without an answer. A
 * message whose body field is missing, not JSON, nested deeper than `maxBodyDepth` or carrying
 * `__proto__` keys becomes an event errored with a `TypeError` naming the field, and is committed
 * with that error. A consumer whose every credit is held past `claimIdleMs` reports it
 * (`stats().stalled`, a warning).
 *
 * ## Example
 * ```ts
 * import { modelRunner } from 'rxserve';
 * import { redisStream } from 'rxserve/streams';
 * const requests = redisStream({ redis: 'redis://127.0.0.1:6379', stream: 'requests', group: 'scorers' });
 * requests.events$
 *   .pipe(
 *     requests.filter((e) => e.body.kind === 'score'), // the others: acknowledged, no answer
 *     modelRunner({ models: [...] }),
 *     requests.commit({ stream: 'scores' }),
 *   )
 *   .subscribe();
 * // on SIGTERM:
 * await requests.close(); // stop reading, commit what is in flight, quit
 * ```
 * @see docs/streams.md
 * @param options See {@link RedisStreamOptions}; invalid ones throw `ConfigError` naming the field.
 * @returns The stream: `events$`, `commit()`, `filter()`, `close()`, `stats()`.
 */
export function redisStream(options: RedisStreamOptions): RedisStream {
  const o = resolveOptions(options, () => `${hostname()}-${process.pid}`);
  // Messages read and not yet committed: the credit is maxInFlight minus this.
  const inFlight = new Set<string>();
  // Reads wait for a few credits rather than fetching one message per round trip as each commit
  // lands (which would cap a consumer at one message per read round trip).
  const readAt = Math.max(1, Math.floor(Math.min(o.batchSize, o.maxInFlight) / 4));
  const stall = stallWatch(o, { held: () => inFlight.size, starved: () => o.maxInFlight - inFlight.size < readAt });
  const metrics = streamMetrics({ stream: o.stream, group: o.group, consumer: o.consumer }, { pending: () => inFlight.size, stalled: stall.stalled });

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
  // commit() subscriptions open now, and ever opened: once all have ended, nothing more can be
  // committed, and what is still in flight was dropped by the pipeline (close() stops waiting).
  let commitsOpen = 0;
  let commitsEver = 0;

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

  const writes = committer({ options: o, commands: () => commands, metrics, settled: release });
  const nothingMoreToCommit = () => inFlight.size === 0 || (commitsEver > 0 && commitsOpen === 0 && writes.busy === 0);
  function release(id: string): void {
    if (inFlight.delete(id)) {
      stall.settled();
      if (o.maxInFlight - inFlight.size >= readAt) wakeUp?.();
    }
    // Also for an id not held (an event committed twice, or not from this stream): its write was
    // the last one close() may have been waiting for.
    if (nothingMoreToCommit()) drained?.();
  }

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

  function emit(sub: Subscriber<ServingEvent>, entry: Entry, reclaimed: boolean): void {
    if (inFlight.has(entry[0])) return;
    inFlight.add(entry[0]);
    stall.read();
    metrics.inc('read');
    if (reclaimed) metrics.inc('reclaimed');
    sub.next(toMessageEvent(o, entry, reclaimed));
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
    stall.reading(true);
    while (running) {
      try {
        // A full credit wakes this loop at least every claimIdleMs / 2 (the reclaims).
        stall.check();
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
    // Also when close() came while open() was still connecting: a consumer not reading is not stalled.
    stall.reading(false);
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
    stall.reading(false);
    wakeUp?.();
    // A blocked XREADGROUP returns at once (as on timeout) instead of after blockMs.
    if (blocked && readerId !== undefined) commands?.call('CLIENT', 'UNBLOCK', String(readerId)).catch(() => undefined);
  }

  return {
    events$,
    consumer: o.consumer,
    stats: () => ({ ...metrics.stats }),
    commit(commitOptions: CommitOptions): OperatorFunction<ServingEvent, ServingEvent> {
      const { stream } = decodeOrThrow(CommitOptionsCodec, commitOptions, 'redisStream.commit.options');
      return commitOperator((event) => writes.answer(event, stream), {
        opened() {
          commitsOpen++;
          commitsEver++;
        },
        ended() {
          commitsOpen--;
          if (nothingMoreToCommit()) drained?.();
        },
      });
    },
    filter(predicate: (event: ServingEvent) => boolean): OperatorFunction<ServingEvent, ServingEvent> {
      decodeOrThrow(PredicateCodec, predicate, 'redisStream.filter.predicate');
      return filterOperator(predicate, (event) => writes.skip(event));
    },
    close() {
      closing ??= (async () => {
        const downstream = subscriber;
        stopReading();
        await loop;
        downstream?.complete();
        // Only a live subscription can still commit what is in flight, and only until its
        // commit() has completed: what it still holds then was dropped by the pipeline (left
        // pending for another consumer to reclaim).
        if (downstream && !nothingMoreToCommit()) {
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
