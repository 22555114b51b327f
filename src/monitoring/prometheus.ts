// Prometheus metrics through prom-client (an optional peer dependency, loaded only when used).
import { GraphCodec, decodeOrThrow, guard, strict } from '../config.js';
import type { Graph } from '../graph.js';
import { callUsage } from '../llm/usage.js';
import type { EventReport, MonitorObserver } from './monitor.js';

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

/**
 * Exposes a graph's model endpoints to Prometheus: requests by outcome, a latency histogram,
 * in-flight and queued calls per lane (read at scrape time), and LLM token counters. Opt-in:
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
 * @param options `registry` (default: a new one), `prefix` (default `'rxserve_'`), `buckets` (seconds).
 */
const PrometheusOptionsCodec = strict(
  'PrometheusExporterOptions',
  {},
  {
    registry: guard('a prom-client Registry', (u) => typeof (u as { registerMetric?: unknown } | null)?.registerMetric === 'function'),
    prefix: guard('a metric name prefix ([a-zA-Z_:][a-zA-Z0-9_:]*)', (u) => typeof u === 'string' && /^[a-zA-Z_:][a-zA-Z0-9_:]*$/.test(u)),
    buckets: guard(
      'increasing positive numbers',
      (u) => Array.isArray(u) && u.length > 0 && u.every((x, i) => typeof x === 'number' && Number.isFinite(x) && x > 0 && (i === 0 || x > (u[i - 1] as number))),
    ),
  },
);

export async function prometheusExporter(
  graph: Graph,
  options: { registry?: import('prom-client').Registry; prefix?: string; buckets?: number[] } = {},
): Promise<PrometheusExporter> {
  decodeOrThrow(GraphCodec, graph, 'prometheusExporter.graph');
  decodeOrThrow(PrometheusOptionsCodec, options, 'prometheusExporter.options');
  const client = await import('prom-client');
  const registry = options.registry ?? new client.Registry();
  const prefix = options.prefix ?? 'rxserve_';
  const labelNames = ['endpoint', 'step'] as const;
  const requests = new client.Counter({
    name: `${prefix}model_requests_total`,
    help: 'Model calls by endpoint, step and outcome (success or error)',
    labelNames: [...labelNames, 'outcome'],
    registers: [registry],
  });
  const latency = new client.Histogram({
    name: `${prefix}model_latency_seconds`,
    help: 'Model call latency',
    labelNames,
    buckets: options.buckets ?? [0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  });
  const tokens = new client.Counter({
    name: `${prefix}llm_tokens_total`,
    help: 'LLM tokens by endpoint and kind (prompt or completion)',
    labelNames: ['endpoint', 'step', 'kind'],
    registers: [registry],
  });
  const lanes = (pick: 'inFlight' | 'queued') =>
    function (this: import('prom-client').Gauge<string>) {
      this.reset();
      for (const lane of graph.laneStats()) this.set({ endpoint: lane.endpointName, step: lane.step }, lane[pick]);
    };
  new client.Gauge({
    name: `${prefix}lane_in_flight`,
    help: 'Calls running in a model lane',
    labelNames,
    registers: [registry],
    collect: lanes('inFlight'),
  });
  new client.Gauge({
    name: `${prefix}lane_queued`,
    help: 'Calls waiting in a model lane',
    labelNames,
    registers: [registry],
    collect: lanes('queued'),
  });
  const observer: MonitorObserver = {
    onEvent(report: EventReport) {
      for (let i = 0; i < report.selected.length; i++) {
        const labels = { endpoint: report.models[report.selected[i]].endpointName, step: report.step };
        const error = report.errors[i];
        requests.inc({ ...labels, outcome: error ? 'error' : 'success' });
        latency.observe(labels, report.latencies[i] / 1000);
        const usage = callUsage(report.values[i], error);
        if (usage) {
          tokens.inc({ ...labels, kind: 'prompt' }, usage.prompt_tokens ?? 0);
          tokens.inc({ ...labels, kind: 'completion' }, usage.completion_tokens ?? 0);
        }
      }
    },
  };
  graph.observe(observer);
  return {
    registry,
    contentType: registry.contentType,
    metrics: () => registry.metrics(),
    detach: () => graph.unobserve(observer),
  };
}
