// Prometheus metrics through prom-client (an optional peer dependency, loaded only when used).
import { decodeOrThrow, guard, strict } from '../decode.js';
import { ConfigError } from '../errors.js';
import { acquireAggregates, type EndpointTotals } from './aggregates.js';
import type { Graph } from '../graph/graph.js';
import { MONITORING, isMonitored, type EventReport, type Monitored, type MonitorObserver } from './monitor.js';

const MonitoredCodec = guard<Monitored>('a graph made by createGraph()', isMonitored);

/** What `prometheusExporter` returns. */
export interface PrometheusExporter {
  /** The prom-client registry holding rxserve's metrics (yours when you passed one). */
  readonly registry: import('prom-client').Registry;
  /** The text exposition, for a `/metrics` endpoint. */
  metrics(): Promise<string>;
  /** The exposition's content type. */
  readonly contentType: string;
  /** Stops counting (the metrics stay in the registry). */
  detach(): void;
}

const PrometheusOptionsCodec = strict(
  'PrometheusExporterOptions',
  {},
  {
    registry: guard('a prom-client Registry', (u) => typeof (u as { registerMetric?: unknown } | null)?.registerMetric === 'function'),
    prefix: guard('a metric name prefix ([a-zA-Z_:][a-zA-Z0-9_:]*)', (u) => typeof u === 'string' && /^[a-zA-Z_:][a-zA-Z0-9_:]*$/.test(u)),
    buckets: guard(
      'increasing positive numbers',
      (u) =>
        Array.isArray(u) &&
        u.length > 0 &&
        u.every((x, i) => typeof x === 'number' && Number.isFinite(x) && x > 0 && (i === 0 || x > (u[i - 1] as number))),
    ),
  },
);

/**
 * Loads prom-client, the optional peer dependency; when it is not installed, a `ConfigError` at
 * `path` saying how to add it (the option that asked for metrics is what cannot work).
 */
export async function loadPromClient(path: string): Promise<typeof import('prom-client')> {
  try {
    return await import('prom-client');
  } catch (cause) {
    throw new ConfigError(
      [
        {
          path,
          expected: "the optional peer dependency 'prom-client' installed (npm install prom-client@^15)",
          actual: `it cannot be loaded (${(cause as Error).message.split('\n')[0]})`,
        },
      ],
      { cause },
    );
  }
}

/**
 * Exposes a graph's model endpoints to Prometheus: requests by outcome, a latency histogram,
 * in-flight and queued calls per lane and per step, events rejected per step (read at scrape
 * time), and LLM token counters. Opt-in:
 * until this is called nothing is counted, and prom-client is not even loaded.
 *
 * ## Example
 * ```ts
 * import { createServer } from 'node:http';
 * import { createGraph, prometheusExporter } from 'rxserve';
 * const graph = createGraph();
 * const exporter = await prometheusExporter(graph);
 * createServer(async (_req, res) => {
 *   res.setHeader('content-type', exporter.contentType);
 *   res.end(await exporter.metrics());
 * }).listen(9464, '127.0.0.1');
 * ```
 * @param graph A graph made by `createGraph()`.
 * @param options `registry` (default: a new one), `prefix` (default `'rxserve_'`), `buckets` (seconds).
 * @returns The exporter; `ConfigError` (rejected) for a bad graph or option, or without prom-client.
 */
export async function prometheusExporter(
  graph: Graph,
  options: { registry?: import('prom-client').Registry; prefix?: string; buckets?: number[] } = {},
): Promise<PrometheusExporter> {
  decodeOrThrow(MonitoredCodec, graph, 'prometheusExporter.graph');
  decodeOrThrow(PrometheusOptionsCodec, options, 'prometheusExporter.options');
  const client = await loadPromClient('prometheusExporter');
  const registry = options.registry ?? new client.Registry();
  const prefix = options.prefix ?? 'rxserve_';
  const labelNames = ['endpoint', 'step'] as const;
  // Requests and tokens are read at scrape time from the graph's aggregates (what the dashboard
  // shows too); after detach() the last figures stay.
  const held = acquireAggregates(graph);
  let frozen: EndpointTotals[] | undefined;
  const totals = (): readonly EndpointTotals[] => frozen ?? held.aggregates.totals();
  new client.Counter({
    name: `${prefix}model_requests_total`,
    help: 'Model calls by endpoint, step and outcome (success or error)',
    labelNames: [...labelNames, 'outcome'],
    registers: [registry],
    collect(this: import('prom-client').Counter<string>) {
      this.reset();
      for (const t of totals()) {
        if (t.requests > t.errors) this.inc({ endpoint: t.endpoint, step: t.step, outcome: 'success' }, t.requests - t.errors);
        if (t.errors > 0) this.inc({ endpoint: t.endpoint, step: t.step, outcome: 'error' }, t.errors);
      }
    },
  });
  const latency = new client.Histogram({
    name: `${prefix}model_latency_seconds`,
    help: 'Model call latency',
    labelNames,
    buckets: options.buckets ?? [0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  });
  new client.Counter({
    name: `${prefix}llm_tokens_total`,
    help: 'LLM tokens by endpoint and kind (prompt or completion)',
    labelNames: ['endpoint', 'step', 'kind'],
    registers: [registry],
    collect(this: import('prom-client').Counter<string>) {
      this.reset();
      for (const t of totals()) {
        if (!t.usageReported) continue;
        this.inc({ endpoint: t.endpoint, step: t.step, kind: 'prompt' }, t.promptTokens);
        this.inc({ endpoint: t.endpoint, step: t.step, kind: 'completion' }, t.completionTokens);
      }
    },
  });
  const lanes = (pick: 'inFlight' | 'queued') =>
    function (this: import('prom-client').Gauge<string>) {
      this.reset();
      for (const lane of graph[MONITORING].laneStats()) this.set({ endpoint: lane.endpointName, step: lane.step }, lane[pick]);
    };
  new client.Gauge({
    name: `${prefix}lane_in_flight`,
    help: 'Calls of a model lane running now (started, not settled; a batch counts each of its calls)',
    labelNames,
    registers: [registry],
    collect: lanes('inFlight'),
  });
  new client.Gauge({
    name: `${prefix}lane_queued`,
    help: "Calls waiting in a model lane for a slot of the model's maxInFlight, or for their batch to fill",
    labelNames,
    registers: [registry],
    collect: lanes('queued'),
  });
  // Step intake: what waits in front of the lanes, and what was turned away (QueueFullError).
  const steps = (pick: 'inFlight' | 'queued') =>
    function (this: import('prom-client').Gauge<string>) {
      this.reset();
      for (const step of graph[MONITORING].stepStats()) this.set({ step: step.step }, step[pick]);
    };
  new client.Gauge({
    name: `${prefix}step_in_flight`,
    help: 'Events inside a step: being worked on, or done and waiting to be emitted in order',
    labelNames: ['step'],
    registers: [registry],
    collect: steps('inFlight'),
  });
  new client.Gauge({
    name: `${prefix}step_queued`,
    help: 'Events admitted by a step and waiting for one of its maxInFlight slots',
    labelNames: ['step'],
    registers: [registry],
    collect: steps('queued'),
  });
  new client.Counter({
    name: `${prefix}step_rejected_total`,
    help: 'Events a step rejected, by reason (queue_full: past maxInFlight + maxQueue)',
    labelNames: ['step', 'reason'],
    registers: [registry],
    collect(this: import('prom-client').Counter<string>) {
      this.reset();
      for (const step of graph[MONITORING].stepStats()) this.inc({ step: step.step, reason: 'queue_full' }, step.rejected);
    },
  });
  // The latency histogram's buckets are this exporter's own: it observes every call itself.
  const observer: MonitorObserver = {
    onEvent(report: EventReport) {
      for (const call of report.calls) latency.observe({ endpoint: call.entry.endpointName, step: report.step }, call.latencyMs / 1000);
    },
  };
  graph[MONITORING].observe(observer);
  return {
    registry,
    contentType: registry.contentType,
    metrics: () => registry.metrics(),
    detach: () => {
      if (frozen !== undefined) return;
      frozen = held.aggregates.totals().map((t) => ({ ...t }));
      graph[MONITORING].unobserve(observer);
      held.release();
    },
  };
}
