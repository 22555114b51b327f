// redisStream(): a Redis Streams consumer group as the source (events$) and sink (commit) of a pipeline (docs/design.md §12).
// This file composes the parts and keeps what they share: the credit (the messages in flight), the
// connections and the lifecycle (subscribe, close). The parts live beside it: the read loop
// (reader.ts), the reclaimer (reclaimer.ts), what is written back (committer.ts), the two operators
// (commit.ts, filter.ts), messages as events (message.ts), the stall report (stall.ts), scripts,
// options and metrics.
import { hostname } from 'node:os';
import { Observable, type OperatorFunction, type Subscriber } from 'rxjs';
import { decodeOrThrow, fn } from '../decode.js';
import { RxServeError } from '../errors.js';
import type { ServingEvent } from '../event.js';
import { commitOperator } from './commit.js';
import { committer } from './committer.js';
import { filterOperator } from './filter.js';
import { connect } from './ioredis.js';
import { toMessageEvent, type Entry } from './message.js';
import { streamMetrics, type RedisStreamStats } from './metrics.js';
import { CommitOptionsCodec, resolveOptions, type CommitOptions, type RedisLike, type RedisStreamOptions } from './options.js';
import { createGroup, readLoop } from './reader.js';
import { reclaimer } from './reclaimer.js';
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
  const credit = () => o.maxInFlight - inFlight.size;
  // Reads wait for a few credits rather than fetching one message per round trip as each commit
  // lands (which would cap a consumer at one message per read round trip).
  const readAt = Math.max(1, Math.floor(Math.min(o.batchSize, o.maxInFlight) / 4));
  const stall = stallWatch(o, { held: () => inFlight.size, starved: () => credit() < readAt });
  const metrics = streamMetrics(
    { stream: o.stream, group: o.group, consumer: o.consumer },
    { pending: () => inFlight.size, stalled: stall.stalled },
  );

  let connections: { commands: RedisLike; reader: RedisLike; readerId: unknown } | undefined;
  let owned: RedisLike[] = [];
  let running = false;
  let subscribed = false;
  let subscriber: Subscriber<ServingEvent> | undefined;
  // The one subscription's subscriber, kept after it unsubscribes (next() on it is then a no-op).
  let emitTo: Subscriber<ServingEvent> | undefined;
  let loop: Promise<void> = Promise.resolve();
  let closing: Promise<void> | undefined;
  let drained: (() => void) | undefined;
  // commit() subscriptions open now, and ever opened: once all have ended, nothing more can be
  // committed, and what is still in flight was dropped by the pipeline (close() stops waiting).
  let commitsOpen = 0;
  let commitsEver = 0;

  const writes = committer({ options: o, commands: () => connections?.commands, metrics, settled: release });
  const nothingMoreToCommit = () => inFlight.size === 0 || (commitsEver > 0 && commitsOpen === 0 && writes.busy === 0);
  function release(id: string): void {
    if (inFlight.delete(id)) {
      stall.settled();
      if (credit() >= readAt) reads.wake();
    }
    // Also for an id not held (an event committed twice, or not from this stream): its write was
    // the last one close() may have been waiting for.
    if (nothingMoreToCommit()) drained?.();
  }

  /** Hands a message out as an event, once while it is in flight (a reclaim may return one already read). */
  function emit(entry: Entry, reclaimed: boolean): void {
    if (inFlight.has(entry[0])) return;
    inFlight.add(entry[0]);
    stall.read();
    metrics.inc('read');
    if (reclaimed) metrics.inc('reclaimed');
    emitTo!.next(toMessageEvent(o, entry, reclaimed));
  }

  const reclaim = reclaimer({
    options: o,
    commands: () => connections!.commands,
    metrics,
    credit,
    running: () => running,
    claimed: (entry) => emit(entry, true),
  });
  const reads = readLoop({
    options: o,
    connections: () => connections,
    credit,
    readAt,
    running: () => running,
    reclaim,
    read: (entry) => emit(entry, false),
    stall,
  });

  async function open(): Promise<void> {
    let commands: RedisLike;
    if (typeof o.redis === 'string') {
      commands = await connect(o.redis);
      owned = [commands];
    } else {
      commands = o.redis;
    }
    // A blocking XREADGROUP holds its connection: reads get one of their own.
    const reader = commands.duplicate();
    owned.push(reader);
    // Connection errors surface as rejected commands (retried by the loop); without a listener
    // ioredis would also print each one.
    for (const c of owned) c.on?.('error', () => undefined);
    // Writes may start as soon as there are commands (the reader's id comes later).
    connections = { commands, reader, readerId: undefined };
    await createGroup(commands, o);
    connections.readerId = await reader.call('CLIENT', 'ID');
    if (o.metrics) await metrics.attach(o.metrics);
  }

  async function run(sub: Subscriber<ServingEvent>): Promise<void> {
    try {
      await open();
    } catch (error) {
      running = false;
      sub.error(error);
      return;
    }
    await reads.run();
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
    subscriber = emitTo = sub;
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
    reads.interrupt();
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
