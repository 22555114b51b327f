// redisStream's counters: plain numbers for stats(), mirrored into prom-client when a registry is given.

/** What `requests.stats()` returns: counts since the stream was made, and what is in flight now. */
export interface RedisStreamStats {
  /** Messages handed to the pipeline (read with XREADGROUP or reclaimed). */
  read: number;
  /** Answers written and requests acknowledged. */
  committed: number;
  /** Messages `requests.filter` rejected, acknowledged without an answer. */
  skipped: number;
  /** Messages claimed from other (dead or stalled) consumers; also counted in `read`. */
  reclaimed: number;
  /** Messages moved to the dead-letter stream after `maxDeliveries`. */
  deadLettered: number;
  /** Answers (or skips) not written because the message was no longer pending for this consumer (reclaimed by another). */
  dropped: number;
  /** Answers (or skips) not written because Redis refused the script or stayed unreachable; the message stays pending (another consumer reclaims it). */
  failed: number;
  /** Messages read and not yet committed (never more than `maxInFlight`). */
  pending: number;
  /**
   * True while every credit (`maxInFlight`) has been held longer than `claimIdleMs` with no commit:
   * most often a pipeline that drops events with a plain RxJS `filter` (use `requests.filter`).
   */
  stalled: boolean;
}

export type Counter = Exclude<keyof RedisStreamStats, 'pending' | 'stalled'>;
type Gauge = 'pending' | 'stalled';
type Labels = { stream: string; group: string; consumer: string };

const HELP: Record<Counter, string> = {
  read: 'Stream messages handed to the pipeline (read or reclaimed)',
  committed: 'Stream answers written and requests acknowledged',
  skipped: 'Stream messages rejected by requests.filter, acknowledged without an answer',
  reclaimed: "Stream messages claimed from other consumers' idle pending lists",
  deadLettered: 'Stream messages moved to the dead-letter stream after maxDeliveries',
  dropped: 'Stream answers dropped because another consumer had reclaimed the message',
  failed: 'Stream answers not written: Redis refused the commit or stayed unreachable',
};
const NAME: Record<Counter, string> = {
  read: 'stream_messages_read_total',
  committed: 'stream_messages_committed_total',
  skipped: 'stream_messages_skipped_total',
  reclaimed: 'stream_messages_reclaimed_total',
  deadLettered: 'stream_messages_dead_lettered_total',
  dropped: 'stream_answers_dropped_total',
  failed: 'stream_answers_failed_total',
};
const GAUGES: Record<Gauge, { name: string; help: string }> = {
  pending: { name: 'stream_pending', help: 'Stream messages read and not yet committed, per consumer' },
  stalled: {
    name: 'stream_stalled',
    help: 'Stream consumers whose every credit has been held longer than claimIdleMs with no commit (1), per consumer',
  },
};

/**
 * Counters for one consumer. `attach()` mirrors them into a prom-client registry as counters
 * labelled `stream`, `group`, `consumer` (shared by every redisStream using that registry), and
 * the gauges `<prefix>stream_pending` and `<prefix>stream_stalled`, read at scrape time;
 * `detach()` stops the gauges reading this consumer.
 */
export function streamMetrics(labels: Labels, gauges: { pending: () => number; stalled: () => boolean }) {
  const stats = { read: 0, committed: 0, skipped: 0, reclaimed: 0, deadLettered: 0, dropped: 0, failed: 0 } as RedisStreamStats;
  Object.defineProperty(stats, 'pending', { get: gauges.pending, enumerable: true });
  Object.defineProperty(stats, 'stalled', { get: gauges.stalled, enumerable: true });
  let counters: Record<Counter, import('prom-client').Counter<string>> | undefined;
  let sources: Map<string, GaugeSource> | undefined;
  const key = `${labels.stream}\0${labels.group}\0${labels.consumer}`;
  return {
    stats,
    inc(c: Counter, by = 1): void {
      stats[c] += by;
      counters?.[c].inc(labels, by);
    },
    async attach(metrics: { registry: import('prom-client').Registry; prefix?: string }): Promise<void> {
      const client = await import('prom-client');
      const { registry } = metrics;
      const prefix = metrics.prefix ?? 'rxserve_';
      const labelNames = ['stream', 'group', 'consumer'];
      const made = {} as Record<Counter, import('prom-client').Counter<string>>;
      for (const c of Object.keys(NAME) as Counter[]) {
        const name = prefix + NAME[c];
        made[c] =
          (registry.getSingleMetric(name) as import('prom-client').Counter<string> | undefined) ??
          new client.Counter({ name, help: HELP[c], labelNames, registers: [registry] });
        if (stats[c] > 0) made[c].inc(labels, stats[c]);
      }
      counters = made;
      const perRegistry = gaugeSources.get(registry) ?? new Map<string, GaugeSource>();
      gaugeSources.set(registry, perRegistry);
      perRegistry.set(key, { labels, pending: gauges.pending, stalled: () => (gauges.stalled() ? 1 : 0) });
      sources = perRegistry;
      for (const g of Object.keys(GAUGES) as Gauge[]) {
        const name = prefix + GAUGES[g].name;
        if (registry.getSingleMetric(name)) continue;
        new client.Gauge({
          name,
          help: GAUGES[g].help,
          labelNames,
          registers: [registry],
          collect(this: import('prom-client').Gauge<string>) {
            this.reset();
            for (const source of perRegistry.values()) this.set(source.labels, source[g]());
          },
        });
      }
    },
    detach(): void {
      sources?.delete(key);
    },
  };
}

export type StreamMetrics = ReturnType<typeof streamMetrics>;

type GaugeSource = { labels: Labels; pending: () => number; stalled: () => number };
// Which consumers the gauges read, per registry (one gauge per registry, many consumers).
const gaugeSources = new WeakMap<object, Map<string, GaugeSource>>();
