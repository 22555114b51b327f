// The mark on the operator queueStep returns (rxserve/streams, docs/design.md §19), declared down here so a
// flow builder (which sits below streams) can recognise a queue hop without importing streams.

/**
 * The property under which `queueStep()`'s operator carries `{ stream }`. A flow refuses steps
 * after such a step (they run in the consumer's process: start them with `redisStream()`), and
 * a responder behind it. `Symbol.for`, so every copy of rxserve (ESM and CJS) agrees.
 */
export const QUEUE_STEP: unique symbol = Symbol.for('rxserve.queueStep');

/** What a queue step's mark says. */
export interface QueueStepMark {
  /** The Redis stream its events are written to. */
  readonly stream: string;
}

/** The mark of a queue step's operator, or `undefined` for any other operator. */
export function queueStepMark(operator: unknown): QueueStepMark | undefined {
  if (typeof operator !== 'function') return undefined;
  return (operator as { [QUEUE_STEP]?: QueueStepMark })[QUEUE_STEP];
}
