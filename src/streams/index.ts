// The rxserve/streams entry: Redis Streams consumer groups as a pipeline's source and sink (DESIGN §12).
export { redisStream, type RedisStream } from './redisStream.js';
export type { RedisStreamOptions, CommitOptions, RedisLike } from './options.js';
export type { RedisStreamStats } from './metrics.js';
