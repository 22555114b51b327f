// The graph's aggregates: per endpoint call counters, token usage and a rolling latency window,
// plus the lane and step figures read at scrape time. One source for every exporter that shows
// numbers (Prometheus counters, the dashboard): one observer per graph, shared by reference count.
import { describeError } from '../errors.js';
import { callUsage } from '../model/usage.js';
import {
  MONITORING,
  type EventReport,
  type FlowStepStats,
  type GraphShape,
  type Monitored,
  type MonitorObserver,
  type StepStats,
} from './monitor.js';

/** Per-second history kept for rates, quantiles and charts. */
export const HISTORY_SECONDS = 300;

/** Latency buckets: 4 per doubling from 0.01 ms (upper bound of bucket i: 0.01 · 2^(i/4) ms). */
const BUCKETS = 112;
const BASE_MS = 0.01;
const bucketOf = (ms: number): number => (ms <= BASE_MS ? 0 : Math.min(BUCKETS - 1, Math.ceil(4 * Math.log2(ms / BASE_MS))));
const upperMs = (bucket: number): number => BASE_MS * 2 ** (bucket / 4);
/** A second's slot in an endpoint's ring. */
const slotOf = (second: number): number => second % HISTORY_SECONDS;

/** One second of one endpoint. */
interface Second {
  readonly at: number;
  requests: number;
  errors: number;
  readonly latency: Uint32Array;
}

/** Totals of one endpoint (as labelled by Prometheus: endpoint and step). */
export interface EndpointTotals {
  readonly endpoint: string;
  readonly step: string;
  requests: number;
  errors: number;
  promptTokens: number;
  completionTokens: number;
  /** True once a call reported token usage (an LLM endpoint). */
  usageReported: boolean;
  /** `Name: message` of the latest failed call. */
  lastError?: string;
  lastErrorAt?: number;
}

interface EndpointState {
  readonly totals: EndpointTotals;
  /** Ring of the last HISTORY_SECONDS seconds, indexed by second % HISTORY_SECONDS. */
  readonly seconds: (Second | undefined)[];
}

/** One endpoint in a snapshot. */
export interface EndpointFigures {
  readonly endpoint: string;
  readonly step: string;
  readonly modelClass?: string;
  readonly executionMechanism?: string;
  readonly requests: number;
  readonly errors: number;
  /** Over the rolling window. */
  readonly requestsPerSecond: number;
  readonly errorsPerSecond: number;
  /** Over the rolling window; null without calls in it. Approximate (log buckets, within 19%). */
  readonly p50Ms: number | null;
  readonly p99Ms: number | null;
  readonly laneInFlight: number;
  readonly laneQueued: number;
  readonly promptTokens: number;
  readonly completionTokens: number;
  /** True for an endpoint that reported token usage (an LLM endpoint). */
  readonly usageReported: boolean;
  readonly lastError?: string;
  readonly lastErrorAt?: number;
}

/** What the dashboard receives about once a second. */
export interface AggregatesSnapshot {
  /** Epoch ms of the snapshot. */
  readonly at: number;
  readonly graph: string;
  readonly windowSeconds: number;
  readonly endpoints: readonly EndpointFigures[];
  readonly steps: readonly StepStats[];
  /** Per step of the graph's flows: copies in flight and errors so far (none without flows). */
  readonly flows: readonly FlowStepStats[];
}

/** Per second, per endpoint: requests and errors (for charts of the last minutes). */
export interface SeriesPoint {
  readonly at: number;
  readonly endpoint: string;
  readonly requests: number;
  readonly errors: number;
}

/** Counters and windows of one graph's calls (see `acquireAggregates`). */
export class MonitoringAggregates implements MonitorObserver {
  readonly #endpoints = new Map<string, EndpointState>();

  constructor(
    private readonly graph: Monitored,
    private readonly now: () => number = Date.now,
  ) {}

  onEvent(report: EventReport): void {
    const second = Math.floor(this.now() / 1000);
    for (const call of report.calls) {
      const state = this.#state(call.entry.endpointName, report.step);
      const { totals } = state;
      totals.requests++;
      if (call.error !== undefined) {
        totals.errors++;
        totals.lastError = describeError(call.error);
        totals.lastErrorAt = this.now();
      }
      const usage = callUsage(call.value, call.error);
      if (usage) {
        totals.usageReported = true;
        totals.promptTokens += usage.prompt_tokens ?? 0;
        totals.completionTokens += usage.completion_tokens ?? 0;
      }
      const slot = slotOf(second);
      let s = state.seconds[slot];
      if (s === undefined || s.at !== second)
        state.seconds[slot] = s = { at: second, requests: 0, errors: 0, latency: new Uint32Array(BUCKETS) };
      s.requests++;
      if (call.error !== undefined) s.errors++;
      s.latency[bucketOf(call.latencyMs)]++;
    }
  }

  #state(endpoint: string, step: string): EndpointState {
    const key = `${endpoint}\u0000${step}`;
    let state = this.#endpoints.get(key);
    if (state === undefined) {
      state = {
        totals: { endpoint, step, requests: 0, errors: 0, promptTokens: 0, completionTokens: 0, usageReported: false },
        seconds: new Array<Second | undefined>(HISTORY_SECONDS).fill(undefined),
      };
      this.#endpoints.set(key, state);
    }
    return state;
  }

  /** Running totals per endpoint and step since the aggregates were made (live objects: copy to keep). */
  totals(): readonly EndpointTotals[] {
    return [...this.#endpoints.values()].map((s) => s.totals);
  }

  /**
   * Per second and endpoint, the last `seconds` seconds that had calls (oldest first). Reads only
   * those seconds' slots of each ring, not the whole history (the dashboard asks every second for
   * the few seconds since its last message).
   */
  series(seconds = HISTORY_SECONDS): SeriesPoint[] {
    const last = Math.floor(this.now() / 1000);
    const first = last - Math.min(seconds, HISTORY_SECONDS) + 1;
    const points: SeriesPoint[] = [];
    for (const { totals, seconds: ring } of this.#endpoints.values()) {
      for (let at = first; at <= last; at++) {
        const s = ring[slotOf(at)];
        if (s !== undefined && s.at === at)
          points.push({ at: s.at * 1000, endpoint: totals.endpoint, requests: s.requests, errors: s.errors });
      }
    }
    return points.sort((a, b) => a.at - b.at);
  }

  /**
   * Every endpoint of the graph (calls or not) with its totals, rates and quantiles over the last
   * `windowSeconds` whole seconds, lane occupancy, and every step's intake figures, read now.
   * `shape` is the graph's `describe()`, for a caller that has just read it (the dashboard sends it too).
   */
  snapshot(windowSeconds = 10, shape: GraphShape = this.graph[MONITORING].describe()): AggregatesSnapshot {
    const source = this.graph[MONITORING];
    const now = this.now();
    const current = Math.floor(now / 1000);
    // Whole seconds before the current one, which is still filling.
    const from = current - windowSeconds;
    const lanes = new Map<string, { inFlight: number; queued: number }>();
    for (const lane of source.laneStats()) {
      const key = `${lane.endpointName}\u0000${lane.step}`;
      const l = lanes.get(key) ?? { inFlight: 0, queued: 0 };
      l.inFlight += lane.inFlight;
      l.queued += lane.queued;
      lanes.set(key, l);
    }
    const known = new Map<string, { endpoint: string; step: string; modelClass?: string; executionMechanism?: string }>();
    for (const step of shape.steps) {
      for (const m of step.models) {
        known.set(`${m.endpointName}\u0000${step.step}`, {
          endpoint: m.endpointName,
          step: step.step,
          modelClass: m.modelClass,
          executionMechanism: m.executionMechanism,
        });
      }
    }
    for (const { totals } of this.#endpoints.values()) {
      const key = `${totals.endpoint}\u0000${totals.step}`;
      if (!known.has(key)) known.set(key, { endpoint: totals.endpoint, step: totals.step });
    }
    const endpoints: EndpointFigures[] = [];
    for (const [key, info] of known) {
      const state = this.#endpoints.get(key);
      let requests = 0;
      let errors = 0;
      const histogram = new Array<number>(BUCKETS).fill(0);
      // Only the window's slots of the ring (its seconds `from` to `current - 1`).
      for (let at = from; at < current && state !== undefined; at++) {
        const s = state.seconds[slotOf(at)];
        if (s === undefined || s.at !== at) continue;
        requests += s.requests;
        errors += s.errors;
        for (let i = 0; i < BUCKETS; i++) histogram[i] += s.latency[i];
      }
      const lane = lanes.get(key);
      const t = state?.totals;
      endpoints.push({
        ...info,
        requests: t?.requests ?? 0,
        errors: t?.errors ?? 0,
        requestsPerSecond: requests / windowSeconds,
        errorsPerSecond: errors / windowSeconds,
        p50Ms: quantile(histogram, requests, 0.5),
        p99Ms: quantile(histogram, requests, 0.99),
        laneInFlight: lane?.inFlight ?? 0,
        laneQueued: lane?.queued ?? 0,
        promptTokens: t?.promptTokens ?? 0,
        completionTokens: t?.completionTokens ?? 0,
        usageReported: t?.usageReported ?? false,
        ...(t?.lastError !== undefined ? { lastError: t.lastError, lastErrorAt: t.lastErrorAt } : {}),
      });
    }
    return { at: now, graph: source.graphName, windowSeconds, endpoints, steps: source.stepStats(), flows: source.flowStats?.() ?? [] };
  }
}

/** The bucket's upper bound where the q-th call falls. */
function quantile(histogram: readonly number[], count: number, q: number): number | null {
  if (count === 0) return null;
  const rank = Math.max(1, Math.ceil(q * count));
  let seen = 0;
  for (let i = 0; i < BUCKETS; i++) {
    seen += histogram[i];
    if (seen >= rank) return upperMs(i);
  }
  return upperMs(BUCKETS - 1);
}

/** The aggregates of each graph and how many exporters hold them. */
const held = new WeakMap<Monitored, { aggregates: MonitoringAggregates; holders: number }>();

/**
 * The graph's aggregates, made and attached on the first hold; `release()` detaches them when
 * the last holder lets go (the next hold starts from zero). Every exporter of one graph reads the
 * same counters.
 */
export function acquireAggregates(graph: Monitored): { readonly aggregates: MonitoringAggregates; release(): void } {
  let entry = held.get(graph);
  if (entry === undefined) {
    const aggregates = new MonitoringAggregates(graph);
    graph[MONITORING].observe(aggregates);
    held.set(graph, (entry = { aggregates, holders: 0 }));
  }
  entry.holders++;
  const mine = entry;
  let released = false;
  return {
    aggregates: mine.aggregates,
    release() {
      if (released) return;
      released = true;
      if (--mine.holders === 0 && held.get(graph) === mine) {
        graph[MONITORING].unobserve(mine.aggregates);
        held.delete(graph);
      }
    },
  };
}
