// The rxserve/streams entry: Redis Streams consumer groups as a pipeline's source and sink (docs/design.md §12), and the queue hop between processes (§19).
export { redisStream, type RedisStream } from './redisStream.js';
export { queueStep, QUEUE_STEP, queueStepMark, type QueueStepOptions, type QueueStepMark } from './queueStep.js';
export type { RedisStreamOptions, CommitOptions, RedisLike } from './options.js';
export type { RedisStreamStats } from './metrics.js';
