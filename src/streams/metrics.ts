// redisStream's counters: plain numbers for stats(), mirrored into prom-client when a registry is given.

/** What `requests.stats()` returns: counts since the stream was made, and what is in flight now. */
export interface RedisStreamStats {
  /** Messages handed to the pipeline (read with XREADGROUP or reclaimed). */
  read: number;
  /** Answers written and requests acknowledged. */
  committed: number;
  /** Messages claimed from other (dead or stalled) consumers; also counted in `read`. */
  reclaimed: number;
  /** Messages moved to the dead-letter stream after `maxDeliveries`. */
  deadLettered: number;
  /** Answers not written because the message was no longer pending for this consumer (reclaimed by another). */
  dropped: number;
  /** Answers not written because Redis refused the commit or stayed unreachable; the message stays pending (another consumer reclaims it). */
  failed: number;
  /** Messages read and not yet committed (never more than `maxInFlight`). */
  pending: number;
}

export type Counter = Exclude<keyof RedisStreamStats, 'pending'>;

const HELP: Record<Counter, string> = {
  read: 'Stream messages handed to the pipeline (read or reclaimed)',
  committed: 'Stream answers written and requests acknowledged',
  reclaimed: "Stream messages claimed from other consumers' idle pending lists",
  deadLettered: 'Stream messages moved to the dead-letter stream after maxDeliveries',
  dropped: 'Stream answers dropped because another consumer had reclaimed the message',
  failed: 'Stream answers not written: Redis refused the commit or stayed unreachable',
};
const NAME: Record<Counter, string> = {
  read: 'stream_messages_read_total',
  committed: 'stream_messages_committed_total',
  reclaimed: 'stream_messages_reclaimed_total',
  deadLettered: 'stream_messages_dead_lettered_total',
  dropped: 'stream_answers_dropped_total',
  failed: 'stream_answers_failed_total',
};

/**
 * Counters for one consumer. `attach()` mirrors them into a prom-client registry as counters
 * labelled `stream`, `group`, `consumer` (shared by every redisStream using that registry), and
 * `<prefix>stream_pending`, a gauge read at scrape time; `detach()` stops the gauge reading it.
 */
export function streamMetrics(labels: { stream: string; group: string; consumer: string }, pending: () => number) {
  const stats: RedisStreamStats = { read: 0, committed: 0, reclaimed: 0, deadLettered: 0, dropped: 0, failed: 0, pending: 0 };
  Object.defineProperty(stats, 'pending', { get: pending, enumerable: true });
  let counters: Record<Counter, import('prom-client').Counter<string>> | undefined;
  let sources: Map<string, () => [typeof labels, number]> | undefined;
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
      const gaugeName = `${prefix}stream_pending`;
      const perRegistry = gaugeSources.get(registry) ?? new Map<string, () => [typeof labels, number]>();
      gaugeSources.set(registry, perRegistry);
      perRegistry.set(key, () => [labels, pending()]);
      sources = perRegistry;
      if (!registry.getSingleMetric(gaugeName)) {
        new client.Gauge({
          name: gaugeName,
          help: 'Stream messages read and not yet committed, per consumer',
          labelNames,
          registers: [registry],
          collect(this: import('prom-client').Gauge<string>) {
            this.reset();
            for (const read of perRegistry.values()) {
              const [l, value] = read();
              this.set(l, value);
            }
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

// Which consumers the pending gauge reads, per registry (one gauge per registry, many consumers).
const gaugeSources = new WeakMap<object, Map<string, () => [{ stream: string; group: string; consumer: string }, number]>>();
