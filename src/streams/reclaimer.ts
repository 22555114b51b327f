// The reclaiming half of redisStream (docs/design.md §12): messages other consumers left pending
// (dead, or stalled past claimIdleMs) become this consumer's, as many as it has credit for, and a
// message delivered maxDeliveries times goes to the dead-letter stream instead. The read loop
// (reader.ts) calls it, so reading and reclaiming share one credit without reservations.
import type { Entry } from './message.js';
import type { StreamMetrics } from './metrics.js';
import type { RedisLike, ResolvedOptions } from './options.js';
import { RECLAIM, runScript } from './scripts.js';

// A pass walks at most PAGES pages of PAGE pending entries: a huge backlog of pending entries
// still ends the pass, and the read loop gets its turn.
const PAGES = 100;
const PAGE = 100;

/**
 * One pass over the group's pending entries idle at least `claimIdleMs` (the RECLAIM script:
 * XPENDING, the dead-letter move, XCLAIM), handing each claimed message to `claimed`. Stops when
 * the credit runs out, the pending list ends, or `running()` turns false.
 */
export function reclaimer(deps: {
  readonly options: Pick<ResolvedOptions, 'stream' | 'deadLetterStream' | 'group' | 'consumer' | 'claimIdleMs' | 'maxDeliveries'>;
  readonly commands: () => RedisLike;
  readonly metrics: StreamMetrics;
  /** Messages this consumer may still take. */
  readonly credit: () => number;
  readonly running: () => boolean;
  readonly claimed: (entry: Entry) => void;
}): () => Promise<void> {
  const { options: o, metrics } = deps;
  return async function reclaim(): Promise<void> {
    let cursor = '-';
    for (let page = 0; page < PAGES && deps.running(); page++) {
      const credit = deps.credit();
      if (credit <= 0) return;
      const [next, claimed, dead] = (await runScript(
        deps.commands(),
        RECLAIM,
        [o.stream, o.deadLetterStream],
        [o.group, o.consumer, o.claimIdleMs, cursor, PAGE, o.maxDeliveries, credit],
      )) as [string, Entry[], number | string];
      // Numbers may arrive as strings (ioredis `stringNumbers`).
      if (Number(dead) > 0) metrics.inc('deadLettered', Number(dead));
      for (const entry of claimed) deps.claimed(entry);
      if (next === '0') return;
      cursor = next;
    }
  };
}
