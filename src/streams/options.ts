// redisStream()'s options: the codec (validated on construction, ConfigError naming the field) and defaults.
import * as t from 'io-ts';
import { NonEmptyString, annotate, decodeOrThrow, guard, positiveInt, strict } from '../decode.js';
import { DEFAULT_MAX_BODY_DEPTH } from '../body.js';
import { ConfigError } from '../errors.js';

/** What `redisStream()` needs of an ioredis client (checked by shape: ioredis is an optional peer). */
export interface RedisLike {
  duplicate(): RedisLike;
  call(command: string, ...args: (string | number)[]): Promise<unknown>;
  quit(): Promise<unknown>;
  disconnect(): void;
  on?(event: 'error', listener: (error: Error) => void): unknown;
}

/** A `redis://` or `rediss://` URL. */
export const RedisUrl = annotate(
  guard<string>("a 'redis://' or 'rediss://' URL", (u) => typeof u === 'string' && /^rediss?:\/\//.test(u)),
  { type: 'string', pattern: '^rediss?://' },
);

export const RedisCodec = t.union(
  [
    RedisUrl,
    guard<RedisLike>('an ioredis client', (u) => {
      const r = u as Partial<RedisLike> | null;
      return typeof r === 'object' && r !== null && typeof r.duplicate === 'function' && typeof r.call === 'function';
    }),
  ],
  "a 'redis://' URL or an ioredis client",
);

export const StartId = annotate(
  guard<string>("a stream id ('0', '$' or '<ms>-<seq>')", (u) => typeof u === 'string' && /^(\$|\d+(-\d+)?)$/.test(u)),
  { type: 'string', pattern: '^(\\$|\\d+(-\\d+)?)$' },
);

const MetricsCodec = strict(
  'RedisStreamMetrics',
  {
    registry: guard<import('prom-client').Registry>(
      'a prom-client Registry',
      (u) => typeof (u as { registerMetric?: unknown } | null)?.registerMetric === 'function',
    ),
  },
  {
    prefix: guard<string>(
      'a metric name prefix ([a-zA-Z_:][a-zA-Z0-9_:]*)',
      (u) => typeof u === 'string' && /^[a-zA-Z_:][a-zA-Z0-9_:]*$/.test(u),
    ),
  },
);

export const RedisStreamOptionsCodec = strict(
  'RedisStreamOptions',
  { redis: RedisCodec, stream: NonEmptyString, group: NonEmptyString },
  {
    consumer: NonEmptyString,
    field: NonEmptyString,
    maxBodyDepth: positiveInt(),
    startId: StartId,
    maxInFlight: positiveInt(),
    batchSize: positiveInt(),
    blockMs: positiveInt(),
    claimIdleMs: positiveInt(),
    maxDeliveries: positiveInt(),
    deadLetterStream: NonEmptyString,
    closeTimeoutMs: positiveInt(),
    metrics: MetricsCodec,
  },
);

/** Options of `redisStream()` (docs/design.md §12). */
export interface RedisStreamOptions {
  /** A `redis://` URL (redisStream opens and closes its connections), or an ioredis client (used for commands; duplicated for blocking reads; never closed by redisStream). */
  redis: string | RedisLike;
  /** The request stream. */
  stream: string;
  /** The consumer group, created (with MKSTREAM) when missing. */
  group: string;
  /** This consumer's name in the group; default `<hostname>-<pid>`. */
  consumer?: string;
  /** The message field holding the JSON body; default `'body'`. */
  field?: string;
  /** A body nested deeper than this is refused (answered with a `TypeError`, never handed to a model); default 256. */
  maxBodyDepth?: number;
  /** Where a new group starts reading; default `'0'` (requests written before the first consumer are served). */
  startId?: string;
  /** At most this many messages read and not yet committed; default 256. */
  maxInFlight?: number;
  /** `XREADGROUP COUNT`; default 64. */
  batchSize?: number;
  /** `XREADGROUP BLOCK`, ms; default 1,000. */
  blockMs?: number;
  /** Another consumer's pending message idle this long is reclaimed, ms; default 30,000. Longer than your slowest request. */
  claimIdleMs?: number;
  /** A message reaches the pipeline at most this many times, then goes to the dead-letter stream; default 5. */
  maxDeliveries?: number;
  /** Default `` `${stream}:dead` ``. */
  deadLetterStream?: string;
  /** How long `close()` waits for in-flight messages to be committed, ms; default 30,000. */
  closeTimeoutMs?: number;
  /** Prometheus: counters and a gauge registered in `registry` (prom-client), names starting with `prefix` (default `'rxserve_'`). */
  metrics?: { registry: import('prom-client').Registry; prefix?: string };
}

export type ResolvedOptions = Required<Omit<RedisStreamOptions, 'metrics' | 'redis'>> & Pick<RedisStreamOptions, 'metrics' | 'redis'>;

/** Validates and fills in defaults; throws ConfigError naming the field. */
export function resolveOptions(options: unknown, defaultConsumer: () => string): ResolvedOptions {
  const o = decodeOrThrow<RedisStreamOptions, unknown>(RedisStreamOptionsCodec, options, 'redisStream.options');
  const resolved: ResolvedOptions = {
    redis: o.redis,
    stream: o.stream,
    group: o.group,
    consumer: o.consumer ?? defaultConsumer(),
    field: o.field ?? 'body',
    maxBodyDepth: o.maxBodyDepth ?? DEFAULT_MAX_BODY_DEPTH,
    startId: o.startId ?? '0',
    maxInFlight: o.maxInFlight ?? 256,
    batchSize: o.batchSize ?? 64,
    blockMs: o.blockMs ?? 1_000,
    claimIdleMs: o.claimIdleMs ?? 30_000,
    maxDeliveries: o.maxDeliveries ?? 5,
    deadLetterStream: o.deadLetterStream ?? `${o.stream}:dead`,
    closeTimeoutMs: o.closeTimeoutMs ?? 30_000,
    metrics: o.metrics,
  };
  if (resolved.deadLetterStream === resolved.stream) {
    throw new ConfigError([
      { path: 'redisStream.options.deadLetterStream', expected: '', message: `must differ from stream '${resolved.stream}'` },
    ]);
  }
  return resolved;
}

export const CommitOptionsCodec = strict('CommitOptions', { stream: NonEmptyString }, {});
/** Options of `commit()`. */
export interface CommitOptions {
  /** The output stream the answers are written to (`XADD`). */
  stream: string;
}
