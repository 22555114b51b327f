// The reading half of redisStream (docs/design.md §12): one loop that reads with XREADGROUP while
// there is credit and runs the reclaimer (reclaimer.ts) at least every claimIdleMs / 2, so both
// take from one credit without reservations and a read blocks no longer than the next reclaim is due.
import { readEntries, type Entry } from './message.js';
import type { RedisLike, ResolvedOptions } from './options.js';
import type { stallWatch } from './stall.js';

/** Makes the consumer group (and the stream) unless it exists. */
export async function createGroup(commands: RedisLike, o: Pick<ResolvedOptions, 'stream' | 'group' | 'startId'>): Promise<void> {
  try {
    await commands.call('XGROUP', 'CREATE', o.stream, o.group, o.startId, 'MKSTREAM');
  } catch (error) {
    if (!String((error as Error)?.message).startsWith('BUSYGROUP')) throw error;
  }
}

/** The read loop of one redisStream. */
export interface ReadLoop {
  /** Reads (and reclaims) until `running()` turns false and `interrupt()` wakes it. */
  run(): Promise<void>;
  /** Wakes a loop waiting for credit or backing off (credit freed). */
  wake(): void;
  /** Wakes the loop and makes a blocked XREADGROUP return at once (as on timeout) instead of after blockMs: call after `running()` turned false. */
  interrupt(): void;
}

export function readLoop(deps: {
  readonly options: Pick<ResolvedOptions, 'stream' | 'group' | 'consumer' | 'startId' | 'batchSize' | 'blockMs' | 'claimIdleMs'>;
  /** The connection for commands (and CLIENT UNBLOCK), and the one the blocking reads hold, with its CLIENT ID. */
  readonly connections: () => { readonly commands: RedisLike; readonly reader: RedisLike; readonly readerId: unknown } | undefined;
  /** Messages this consumer may still take. */
  readonly credit: () => number;
  /** The credit a read waits for. */
  readonly readAt: number;
  readonly running: () => boolean;
  readonly reclaim: () => Promise<void>;
  readonly read: (entry: Entry) => void;
  readonly stall: ReturnType<typeof stallWatch>;
}): ReadLoop {
  const { options: o, stall } = deps;
  let blocked = false;
  let wakeUp: (() => void) | undefined;

  /** Waits `ms` (or until woken: credit freed, interrupt()). */
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

  async function run(): Promise<void> {
    const { commands, reader } = deps.connections()!;
    const claimEvery = Math.max(1, Math.floor(o.claimIdleMs / 2));
    let nextReclaim = 0;
    // First our own pending entries from an earlier life under the same consumer name (ids from
    // '0'), then new messages ('>').
    let history: string | undefined = '0';
    let failures = 0;
    stall.reading(true);
    while (deps.running()) {
      try {
        // A full credit wakes this loop at least every claimIdleMs / 2 (the reclaims).
        stall.check();
        if (Date.now() >= nextReclaim) {
          await deps.reclaim();
          nextReclaim = Date.now() + claimEvery;
        }
        const credit = deps.credit();
        if (credit < deps.readAt) {
          await pause(Math.max(1, nextReclaim - Date.now()));
          continue;
        }
        blocked = true;
        const block = Math.max(1, Math.min(o.blockMs, nextReclaim - Date.now()));
        const reply = await reader.call(
          'XREADGROUP',
          'GROUP',
          o.group,
          o.consumer,
          'COUNT',
          Math.min(o.batchSize, credit),
          'BLOCK',
          block,
          'STREAMS',
          o.stream,
          history ?? '>',
        );
        blocked = false;
        failures = 0;
        const entries = readEntries(reply);
        if (history !== undefined) history = entries.length > 0 ? entries[entries.length - 1][0] : undefined;
        for (const entry of entries) deps.read(entry);
      } catch (error) {
        blocked = false;
        if (!deps.running()) break;
        // The group vanishes when Redis restarts without persistence: make it again.
        if (String((error as Error)?.message).startsWith('NOGROUP')) await createGroup(commands, o).catch(() => undefined);
        else await pause(Math.min(2_000, 50 * 2 ** Math.min(failures++, 6)));
      }
    }
    // Also when close() came while the connections were still opening: a consumer not reading is not stalled.
    stall.reading(false);
  }

  return {
    run,
    wake: () => wakeUp?.(),
    interrupt() {
      wakeUp?.();
      const connections = deps.connections();
      if (blocked && connections?.readerId !== undefined) {
        // A blocked XREADGROUP returns at once (as on timeout) instead of after blockMs.
        // eslint-disable-next-line @typescript-eslint/no-base-to-string -- CLIENT ID answers an integer
        connections.commands.call('CLIENT', 'UNBLOCK', String(connections.readerId)).catch(() => undefined);
      }
    },
  };
}
