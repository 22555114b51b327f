// Checks of serve()'s and rxservePlugin's options that need the graph: names of its endpoints,
// and the metrics it serves.
import { didYouMean } from '../decode.js';
import { ConfigError, type ConfigIssue } from '../errors.js';
import type { Graph } from '../graph/graph.js';
import { loadPromClient, prometheusExporter, type PrometheusExporter } from '../monitoring/prometheus.js';
import type { OpenAIFrontOptions } from './openai.js';

/**
 * The endpoint names the options give (`models`, `openai.models`) must be endpoints of the graph:
 * a typo would otherwise start a server that lists a model that does not exist, or answers every
 * call with a 500. Checked against the endpoints the graph knows now (steps made with
 * `graph.modelRunner()`, proxies); without a graph nothing is known, so nothing is checked.
 */
export function checkEndpointNames(options: { models?: readonly string[]; openai?: OpenAIFrontOptions; graph?: Graph }, at: string): void {
  const { graph } = options;
  if (graph === undefined) return;
  const known = graph.endpointNames().map((e) => e.endpointName);
  const listed =
    known.length === 0
      ? 'none yet'
      : known
          .slice(0, 20)
          .map((n) => `'${n}'`)
          .join(', ') + (known.length > 20 ? ', ...' : '');
  const issues: ConfigIssue[] = [];
  const unknown = (path: string, name: string): void => {
    if (graph.endpoint(name) === undefined) {
      issues.push({
        path,
        expected: `an endpoint of graph '${graph.name}' (endpoints: ${listed})`,
        actual: `'${name}'${didYouMean(name, known)}`,
      });
    }
  };
  options.models?.forEach((name, i) => unknown(`${at}.models[${i}]`, name));
  for (const [publicName, endpoint] of Object.entries(options.openai?.models ?? {})) unknown(`${at}.openai.models.${publicName}`, endpoint);
  if (issues.length > 0) throw new ConfigError(issues);
}

/**
 * Metrics are the graph's (`prometheusExporter`): `metrics: true` without a graph is a ConfigError
 * at `<at>.metrics`, and so is a missing prom-client (checked when the server starts, not at the
 * first scrape).
 */
export async function loadMetrics(options: { metrics?: boolean; graph?: Graph }, at: string): Promise<PrometheusExporter | undefined> {
  if (options.metrics !== true) return undefined;
  if (options.graph === undefined) {
    throw new ConfigError([
      { path: `${at}.metrics`, expected: 'a graph option too (the metrics are the graph’s)', actual: 'metrics: true without graph' },
    ]);
  }
  await loadPromClient(`${at}.metrics`);
  return prometheusExporter(options.graph);
}
