// The stall report of a redisStream (docs/design.md §12, turn 3): a consumer whose credit is held by
// messages that never get committed reads nothing more, and nothing else would say so.

/**
 * Watches one consumer's credit. It is stalled while the messages it holds leave too little
 * credit for a read (`starved`: every credit, or all but fewer than a read waits for) and none of
 * them has been settled, nor a new one read, for `claimIdleMs` (by then other consumers may
 * already be reclaiming them). `check()` warns once per stall; a settled message ends the stall.
 */
export function stallWatch(
  o: {
    readonly stream: string;
    readonly group: string;
    readonly consumer: string;
    readonly maxInFlight: number;
    readonly claimIdleMs: number;
  },
  credit: { readonly held: () => number; readonly starved: () => boolean },
  now: () => number = Date.now,
) {
  // The last time credit moved: a message read (the youngest one held) or one settled.
  let moved = now();
  let reading = false;
  let warned = false;
  const stalled = () => reading && credit.starved() && now() - moved >= o.claimIdleMs;
  return {
    stalled,
    /** Reading started (true) or stopped (false: a closed consumer is not stalled). */
    reading(on: boolean): void {
      reading = on;
      moved = now();
    },
    read(): void {
      moved = now();
    },
    settled(): void {
      moved = now();
      warned = false;
    },
    /** Emits the warning if the consumer has just stalled; called from the read loop, which wakes at least every claimIdleMs / 2. */
    check(): void {
      if (warned || !stalled()) return;
      warned = true;
      process.emitWarning(
        `redisStream '${o.consumer}' (stream '${o.stream}', group '${o.group}') has read nothing for ${o.claimIdleMs} ms ` +
          `(claimIdleMs): the ${credit.held()} messages it holds leave no credit (maxInFlight ${o.maxInFlight}) and none was committed. ` +
          `A pipeline that drops events with an RxJS filter never commits them: use requests.filter(predicate), which ` +
          `acknowledges what it rejects. Otherwise its requests take longer than claimIdleMs.`,
        { code: 'RXSERVE_STREAM_STALLED' },
      );
    },
  };
}
