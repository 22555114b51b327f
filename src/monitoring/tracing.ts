// OpenTelemetry spans through @opentelemetry/api (an optional peer dependency, loaded when used).
import type { Tracer } from '@opentelemetry/api';
import { describeError } from '../errors.js';
import { decodeOrThrow, guard, strict } from '../decode.js';
import { callUsage } from '../model/usage.js';
import { modelClassName } from '../model/registry.js';
import type { Graph } from '../graph/graph.js';
import { MONITORING, isMonitored, type EventReport, type Monitored, type MonitorObserver } from './monitor.js';

const MonitoredCodec = guard<Monitored>('a graph made by createGraph()', isMonitored);

const TraceOptionsCodec = strict(
  'TraceGraphOptions',
  {},
  {
    tracer: guard(
      'an OpenTelemetry Tracer (with startSpan)',
      (u) => typeof (u as { startSpan?: unknown } | null)?.startSpan === 'function',
    ),
  },
);

/**
 * Records a span per event in each step (`rxserve.step <name>`) with a child span per model call
 * (`rxserve.model <endpoint>`), carrying endpoint attributes, errors and LLM usage. Spans are
 * made when the event finishes, with the calls' real start and end times, so nothing is added to
 * a call while it runs. Opt-in: until this is called, nothing is traced.
 *
 * @param options `tracer` (default: `trace.getTracer('rxserve')` of the global provider).
 * @returns A function that stops tracing.
 */
export async function traceGraph(graph: Graph, options: { tracer?: Tracer } = {}): Promise<() => void> {
  decodeOrThrow(MonitoredCodec, graph, 'traceGraph.graph');
  decodeOrThrow(TraceOptionsCodec, options, 'traceGraph.options');
  const api = await import('@opentelemetry/api');
  const tracer = options.tracer ?? api.trace.getTracer('rxserve');
  const observer: MonitorObserver = {
    onEvent(report: EventReport) {
      const { calls } = report;
      if (calls.length === 0) return;
      const begin = Math.min(...calls.map((c) => c.started));
      const end = Math.max(...calls.map((c) => c.started + c.latencyMs));
      const eventSpan = tracer.startSpan(`rxserve.step ${report.step}`, {
        startTime: begin,
        attributes: { 'rxserve.step': report.step, 'rxserve.event_id': report.event.id, 'rxserve.models': calls.length },
      });
      const parent = api.trace.setSpan(api.context.active(), eventSpan);
      let failed = false;
      for (const call of calls) {
        const { entry, error } = call;
        const usage = callUsage(call.value, error);
        const span = tracer.startSpan(
          `rxserve.model ${entry.endpointName}`,
          {
            startTime: call.started,
            attributes: {
              'rxserve.endpoint': entry.endpointName,
              'rxserve.model_class': modelClassName(entry.modelClass),
              'rxserve.mechanism': entry.executionMechanism,
              'rxserve.step': report.step,
              ...(Array.isArray(entry.labels)
                ? { 'rxserve.labels': entry.labels.join(',') }
                : Object.fromEntries(Object.entries(entry.labels ?? {}).map(([k, v]) => [`rxserve.label.${k}`, v]))),
              ...(usage
                ? { 'gen_ai.usage.input_tokens': usage.prompt_tokens ?? 0, 'gen_ai.usage.output_tokens': usage.completion_tokens ?? 0 }
                : {}),
            },
          },
          parent,
        );
        if (error) {
          failed = true;
          span.setStatus({ code: api.SpanStatusCode.ERROR, message: describeError(error) });
        }
        span.end(call.started + call.latencyMs);
      }
      if (failed) eventSpan.setStatus({ code: api.SpanStatusCode.ERROR });
      eventSpan.end(end);
    },
  };
  graph[MONITORING].observe(observer);
  return () => graph[MONITORING].unobserve(observer);
}
