// What redisStream writes back to Redis for each event it handed out: an answer (commit()) or an
// acknowledgement without one (filter()). Writes that arrive in one turn of the event loop go in
// one script call; each settles its message's credit whatever the outcome.
import { describeError } from '../errors.js';
import type { ServingEvent } from '../event.js';
import type { StreamMetrics } from './metrics.js';
import type { RedisLike } from './options.js';
import { COMMIT, SKIP, runScript } from './scripts.js';

/** The committer of one redisStream. */
export interface Committer {
  /** Writes the event's answer to `stream` and acknowledges its request; resolves once settled (written, dropped or failed). */
  answer(event: ServingEvent, stream: string): Promise<void>;
  /** Acknowledges the event's request without an answer; resolves once settled. */
  skip(event: ServingEvent): Promise<void>;
  /** Writes asked for and not settled yet. */
  readonly busy: number;
}

type Pending = { id: string; body: string; error: string; done: () => void };
// The batch key of skips (output streams are the keys of answers; no stream is named by a symbol).
const SKIPS = Symbol('skips');

/**
 * @param settled Called once per write as it settles, with the message id: the credit it held is free.
 */
export function committer(deps: {
  readonly options: { readonly stream: string; readonly group: string; readonly consumer: string; readonly batchSize: number };
  readonly commands: () => RedisLike | undefined;
  readonly metrics: StreamMetrics;
  readonly settled: (id: string) => void;
}): Committer {
  const { options: o, metrics } = deps;
  const batches = new Map<string | typeof SKIPS, Pending[]>();
  let busy = 0;

  function enqueue(key: string | typeof SKIPS, item: Omit<Pending, 'done'>): Promise<void> {
    busy++;
    return new Promise((done) => {
      let batch = batches.get(key);
      if (!batch) {
        batches.set(key, (batch = []));
        // Writes that arrive in the same turn of the event loop go in one script call.
        setImmediate(() => {
          if (batches.get(key) === batch) batches.delete(key);
          if (batch!.length > 0) void flush(key, batch!.splice(0));
        });
      }
      batch.push({ ...item, done });
      if (batch.length >= o.batchSize) void flush(key, batch.splice(0));
    });
  }

  async function flush(key: string | typeof SKIPS, items: Pending[]): Promise<void> {
    const args: string[] = [o.group, o.consumer];
    if (key === SKIPS) for (const item of items) args.push(item.id);
    else for (const item of items) args.push(item.id, item.body, item.error);
    const [script, keys] = key === SKIPS ? [SKIP, [o.stream]] : [COMMIT, [o.stream, key]];
    let result: unknown;
    for (let attempt = 0; ; attempt++) {
      const commands = deps.commands();
      if (!commands) break;
      try {
        result = await runScript(commands, script, keys, args);
        break;
      } catch (error) {
        // Redis refused (a wrong type, a script error): trying again will not help. A lost
        // connection may: ioredis reconnects meanwhile.
        if ((error as Error)?.name === 'ReplyError' || attempt >= 20) break;
        await new Promise((r) => setTimeout(r, Math.min(1_000, 50 * 2 ** attempt)));
      }
    }
    // No result: the script itself failed (not a message another consumer had taken).
    const written = Array.isArray(result) ? (result as unknown[]) : undefined;
    const done = key === SKIPS ? 'skipped' : 'committed';
    items.forEach((item, i) => {
      metrics.inc(written === undefined ? 'failed' : Number(written[i]) === 1 ? done : 'dropped');
      busy--;
      deps.settled(item.id);
      item.done();
    });
  }

  return {
    answer(event, stream) {
      let body: string | undefined;
      let error = event.error ? describeError(event.error) : '';
      try {
        body = JSON.stringify(event.body);
      } catch (cause) {
        error ||= `TypeError: the answer's body is not JSON (${(cause as Error).message})`;
      }
      return enqueue(stream, { id: event.id, body: body ?? 'null', error });
    },
    skip: (event) => enqueue(SKIPS, { id: event.id, body: '', error: '' }),
    get busy() {
      return busy;
    },
  };
}
