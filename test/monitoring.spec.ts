// Monitoring: endpoint records (MLRun's tracking cases), sampling, the registry, Prometheus, tracing.
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InMemorySpanExporter, SimpleSpanProcessor, BasicTracerProvider } from '@opentelemetry/sdk-trace-base';
import { from, lastValueFrom, Subject, toArray } from 'rxjs';
import { describe, expect, it } from 'vitest';
import {
  ConfigError,
  Model,
  asEvents,
  createGraph,
  llmPromptArtifact,
  modelArtifact,
  prometheusExporter,
  registerModel,
  traceGraph,
  unregisterModel,
  type EndpointRecord,
  type Graph,
  type ModelEntry,
  type ServingEvent,
  toEvent,
} from '../src/index.js';

class Inc extends Model<number, number> {
  override predict(n: number) {
    if (n < 0) throw new RangeError(`negative: ${n}`);
    return n + 1;
  }
}
class Dict extends Model {
  override predict() {
    return { a: 2, b: 3, c: 4, d: 5 };
  }
}

const collect = async (graph: Graph, run: () => Promise<unknown>): Promise<EndpointRecord[]> => {
  const records: EndpointRecord[] = [];
  const sub = graph.monitoring$.subscribe((r) => records.push(r));
  await run();
  sub.unsubscribe();
  return records;
};
const feed = (graph: Graph, bodies: unknown[], ...ops: ReturnType<Graph['modelRunner']>[]) =>
  lastValueFrom(from(bodies).pipe(asEvents(), ...(ops as [ReturnType<Graph['modelRunner']>]), toArray()));

describe('endpoint records (MLRun tracking cases)', () => {
  it('one model → one record with the inputs (inputPath) and outputs (resultPath) as rows', async () => {
    const graph = createGraph({ monitoring: {} });
    const step = graph.modelRunner({
      name: 'inc',
      models: [{ endpointName: 'm', modelClass: Inc, executionMechanism: 'naive', inputPath: 'n', resultPath: 'n', labels: { team: 'a' } }],
    });
    const records = await collect(graph, () => feed(graph, [{ n: 1 }], step));
    expect(records).toEqual([
      {
        endpointName: 'm',
        modelClass: 'Inc',
        step: 'inc',
        labels: { team: 'a' },
        eventId: expect.any(String),
        when: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
        latencyMs: expect.any(Number),
        request: { inputs: [1] },
        response: { outputs: [2] },
        samplingPercentage: 100,
        effectiveSampleCount: 1,
      },
    ]);
    await graph.close();
  });

  it('a dict output becomes one row in key order', async () => {
    const graph = createGraph({ monitoring: {} });
    const step = graph.modelRunner({ models: [{ endpointName: 'd', modelClass: Dict, executionMechanism: 'naive' }] });
    const [record] = await collect(graph, () => feed(graph, [{ x: 1 }], step));
    expect(record.response).toEqual({ outputs: [[2, 3, 4, 5]] });
    expect(record.request).toEqual({ inputs: [[1]] });
    await graph.close();
  });

  it("a class's static monitoredOutputs names its records' columns over the entry's outputs (any model, by class, name or instance), warning once", async () => {
    // Not an LLModel: monitoring reads the static of whatever class the entry names.
    class Picked extends Dict {
      static override readonly monitoredOutputs = ['d', 'b'];
    }
    class Deeper extends Picked {}
    registerModel('PickedByName', Picked, { override: true });
    const warnings: Error[] = [];
    const onWarning = (w: Error) => warnings.push(w);
    process.on('warning', onWarning);
    try {
      const graph = createGraph({ monitoring: {} });
      const step = graph.modelRunner({
        models: [
          { endpointName: 'cls', modelClass: Picked, executionMechanism: 'naive', outputs: ['a'] },
          { endpointName: 'name', modelClass: 'PickedByName', executionMechanism: 'naive' },
          { endpointName: 'inst', modelClass: new Deeper({ name: 'inst' }), executionMechanism: 'naive', outputs: ['d', 'b'] },
          { endpointName: 'plain', modelClass: Dict, executionMechanism: 'naive', outputs: ['c'] },
        ],
      });
      const records = await collect(graph, () => feed(graph, [{ x: 1 }, { x: 2 }], step));
      await new Promise((resolve) => setImmediate(resolve)); // warnings are emitted on the next tick
      const outputs = Object.fromEntries(records.map((r) => [r.endpointName, r.response?.outputs]));
      expect(outputs).toEqual({ cls: [[5, 3]], name: [[5, 3]], inst: [[5, 3]], plain: [[4]] });
      expect(records).toHaveLength(8);
      expect(warnings.filter((w) => (w as { code?: string }).code === 'RXSERVE_LLM_OUTPUTS').map((w) => w.message)).toEqual([
        `Picked endpoint 'cls': monitoring outputs ["a"] replaced by ["d","b"] (a Picked returns { d, b }, as in MLRun)`,
      ]);
      await graph.close();
    } finally {
      process.off('warning', onWarning);
      unregisterModel('PickedByName');
    }
  });

  it('two steps with four models each → eight records per event', async () => {
    const graph = createGraph({ monitoring: {} });
    const four = (prefix: string): ModelEntry[] =>
      [1, 2, 3, 4].map((i) => ({ endpointName: `${prefix}${i}`, modelClass: Inc, executionMechanism: 'naive', inputPath: 'n' }));
    const a = graph.modelRunner({ name: 'a', models: four('a') });
    const b = graph.modelRunner({ name: 'b', models: four('b') });
    const records = await collect(graph, () =>
      lastValueFrom(from([{ n: 1 }, { n: 2 }]).pipe(asEvents(), a, asEvents(), toArray())).then((events) =>
        lastValueFrom(from(events.map(() => ({ n: 5 }))).pipe(asEvents(), b, toArray())),
      ),
    );
    const perEventA = records.filter((r) => r.step === 'a');
    expect(perEventA).toHaveLength(8); // 2 events × 4 models
    expect(records.filter((r) => r.step === 'b')).toHaveLength(8);
    expect(new Set(records.filter((r) => r.step === 'a').map((r) => r.eventId)).size).toBe(2);
    await graph.close();
  });

  it('an untracked graph records nothing', async () => {
    const graph = createGraph();
    const step = graph.modelRunner({ models: [{ endpointName: 'm', modelClass: Inc, executionMechanism: 'naive', inputPath: 'n' }] });
    expect(await collect(graph, () => feed(graph, [{ n: 1 }, { n: 2 }], step))).toEqual([]);
    await graph.close();
  });

  it('sampling at 10% over 4,000 events keeps roughly that share, and every error record', async () => {
    const graph = createGraph({ monitoring: { samplingPercentage: 10 } });
    const step = graph.modelRunner({
      models: [{ endpointName: 'm', modelClass: Inc, executionMechanism: 'naive', inputPath: 'n' }],
      raiseException: false,
      maxQueue: Infinity,
    });
    const bodies = Array.from({ length: 4000 }, (_, i) => ({ n: i % 40 === 0 ? -i - 1 : i })); // 100 errors
    const records = await collect(graph, () => feed(graph, bodies, step));
    const errors = records.filter((r) => r.error);
    const kept = records.filter((r) => !r.error);
    expect(errors).toHaveLength(100);
    expect(errors[0].error).toMatch(/^RangeError: negative: -1$/);
    expect(errors[0].effectiveSampleCount).toBe(1);
    // 3,900 successes at 10%: 390 expected; ±5 standard deviations (σ ≈ 18.7)
    expect(kept.length).toBeGreaterThan(296);
    expect(kept.length).toBeLessThan(484);
    expect(kept[0]).toMatchObject({ samplingPercentage: 10, effectiveSampleCount: 10 });
    await graph.close();
  });

  it('proxies report under their own endpoint name and labels; LLM usage is recorded', async () => {
    const graph = createGraph({ monitoring: {} });
    const mock = modelArtifact({ key: 'llm', modelUrl: 'mock://' });
    graph.addSharedModel({ name: 'llm', modelClass: 'LLModel', executionMechanism: 'asyncio', modelArtifact: mock });
    const prompt = (key: string) => llmPromptArtifact({ key, model: mock, promptTemplate: [{ role: 'user', content: '{q}' }] });
    const a = graph.sharedModelProxy({ endpointName: 'finance', modelArtifact: prompt('finance'), labels: { domain: 'finance' } });
    const b = graph.sharedModelProxy({ endpointName: 'travel', modelArtifact: prompt('travel'), labels: ['travel'] });
    const step = graph.modelRunner({ models: [a, b] });
    const records = await collect(graph, () => feed(graph, [{ q: 'hi' }], step));
    expect(records.map((r) => [r.endpointName, r.labels, r.modelClass, r.usage])).toEqual([
      ['finance', { domain: 'finance' }, 'LLModel', { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 }],
      ['travel', ['travel'], 'LLModel', { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 }],
    ]);
    await graph.close();
  });

  it('validates the monitoring options', () => {
    expect(() => createGraph({ monitoring: { samplingPercentage: 0 } })).toThrow(
      /createGraph\.monitoring\.samplingPercentage: expected a percentage above 0 and at most 100, got 0/,
    );
    expect(() => createGraph({ monitoring: { sampling: 5 } as never })).toThrow(ConfigError);
  });
});

describe('endpoint registry', () => {
  it('applies creation strategies when a graph starts and keeps history in its JSON file', async () => {
    const registryPath = join(mkdtempSync(join(tmpdir(), 'rxserve-')), 'endpoints.json');
    const models = (strategy?: Record<string, ModelEntry['creationStrategy']>): ModelEntry[] =>
      ['keep', 'replace', 'history', 'leave'].map((endpointName) => ({
        endpointName,
        modelClass: Inc,
        executionMechanism: 'naive',
        inputPath: 'n',
        labels: { version: strategy ? '2' : '1' },
        ...(strategy?.[endpointName] ? { creationStrategy: strategy[endpointName] } : {}),
      }));
    const first = createGraph({ monitoring: { registryPath } });
    const s1 = first.modelRunner({ name: 'v1', models: models() });
    await first.ready();
    await feed(first, [{ n: 1 }, { n: 2 }], s1);
    const uid = (g: Graph, name: string) => g.endpointRegistry.current(name)!.uid;
    const before = { keep: uid(first, 'keep'), replace: uid(first, 'replace'), history: uid(first, 'history'), leave: uid(first, 'leave') };
    await first.close();

    const second = createGraph({ monitoring: { registryPath } });
    second.modelRunner({
      name: 'v2',
      models: models({ keep: 'inplace', replace: 'overwrite', history: 'archive', leave: 'skip' }),
    });
    await second.ready();
    const reg = second.endpointRegistry;
    expect(reg.current('keep')).toMatchObject({
      uid: before.keep,
      labels: { version: '2' },
      step: 'v2',
      counters: { requests: 2, errors: 0 },
    });
    expect(reg.current('replace')).toMatchObject({ labels: { version: '2' }, counters: { requests: 0, errors: 0 } });
    expect(uid(second, 'replace')).not.toBe(before.replace);
    expect(reg.entries().filter((e) => e.endpointName === 'replace')).toHaveLength(1);
    const history = reg.entries().filter((e) => e.endpointName === 'history');
    expect(history).toHaveLength(2);
    expect(history[0]).toMatchObject({ uid: before.history, archivedAt: expect.any(String), counters: { requests: 2 } });
    expect(history[1].archivedAt).toBeUndefined();
    expect(reg.current('leave')).toMatchObject({ uid: before.leave, labels: { version: '1' }, step: 'v1' });
    await second.close();
    const saved = JSON.parse(readFileSync(registryPath, 'utf8')) as { endpoints: unknown[] };
    expect(saved.endpoints).toHaveLength(5);
  });
});

describe('exporters', () => {
  it('Prometheus: requests by outcome, latency histogram, lane gauges, LLM tokens', async () => {
    const graph = createGraph();
    const exporter = await prometheusExporter(graph);
    const step = graph.modelRunner({
      name: 'serve',
      models: [
        { endpointName: 'inc', modelClass: Inc, executionMechanism: 'naive', inputPath: 'n' },
        {
          endpointName: 'llm',
          modelClass: 'LLModel',
          executionMechanism: 'asyncio',
          modelArtifact: modelArtifact({ key: 'm', modelUrl: 'mock://' }),
        },
      ],
      raiseException: false,
    });
    await feed(
      graph,
      [
        { n: 1, messages: [] },
        { n: -1, messages: [] },
        { n: 3, messages: [] },
      ],
      step,
    );
    const text = await exporter.metrics();
    expect(text).toContain('rxserve_model_requests_total{endpoint="inc",step="serve",outcome="success"} 2');
    expect(text).toContain('rxserve_model_requests_total{endpoint="inc",step="serve",outcome="error"} 1');
    expect(text).toMatch(/rxserve_model_latency_seconds_count\{endpoint="llm",step="serve"\} 3/);
    expect(text).toContain('rxserve_llm_tokens_total{endpoint="llm",step="serve",kind="prompt"} 0');
    expect(text).toContain('# TYPE rxserve_lane_in_flight gauge');
    expect(text).toContain('# TYPE rxserve_lane_queued gauge');
    exporter.detach();
    await graph.close();
  });

  it('Prometheus: overload is visible: step in flight and queued mid-run, rejections counted by reason', async () => {
    class Gate extends Model {
      static open: () => void = () => undefined;
      static readonly opened = new Promise<void>((r) => (Gate.open = r));
      override async predict(body: unknown) {
        await Gate.opened;
        return body;
      }
    }
    const graph = createGraph();
    const exporter = await prometheusExporter(graph);
    const step = graph.modelRunner({
      name: 'busy',
      models: [{ endpointName: 'gate', modelClass: Gate, executionMechanism: 'asyncio', maxInFlight: 1 }],
      maxInFlight: 2,
      maxQueue: 3,
    });
    const source = new Subject<ServingEvent>();
    const out: ServingEvent[] = [];
    const done = new Promise<void>((resolve) => source.pipe(step).subscribe({ next: (e) => out.push(e), complete: resolve }));
    for (let i = 0; i < 10; i++) source.next(toEvent({ i }));
    const mid = await exporter.metrics();
    // 2 inside the step (one running in the lane, one waiting in the lane), 3 queued, 5 rejected
    expect(mid).toContain('rxserve_step_in_flight{step="busy"} 2');
    expect(mid).toContain('rxserve_step_queued{step="busy"} 3');
    expect(mid).toContain('rxserve_step_rejected_total{step="busy",reason="queue_full"} 5');
    expect(mid).toContain('rxserve_lane_in_flight{endpoint="gate",step="busy"} 1');
    expect(mid).toContain('rxserve_lane_queued{endpoint="gate",step="busy"} 1');
    expect(out.filter((e) => e.error?.name === 'QueueFullError')).toHaveLength(5);
    expect(out[0].error?.message).toMatch(/raise maxQueue or maxInFlight, or slow the source/);
    Gate.open();
    source.complete();
    await done;
    const after = await exporter.metrics();
    expect(after).toContain('rxserve_step_in_flight{step="busy"} 0');
    expect(after).toContain('rxserve_step_rejected_total{step="busy",reason="queue_full"} 5');
    exporter.detach();
    await graph.close();
  });

  it('OpenTelemetry: a span per event and a child span per model call, with attributes and status', async () => {
    const exporter = new InMemorySpanExporter();
    const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
    const graph = createGraph();
    const stop = await traceGraph(graph, { tracer: provider.getTracer('test') });
    const step = graph.modelRunner({
      name: 'serve',
      models: [
        { endpointName: 'inc', modelClass: Inc, executionMechanism: 'naive', inputPath: 'n', labels: { team: 'x' } },
        { endpointName: 'dict', modelClass: Dict, executionMechanism: 'asyncio' },
      ],
      raiseException: false,
    });
    await feed(graph, [{ n: 1 }, { n: -5 }], step);
    stop();
    const spans = exporter.getFinishedSpans();
    const stepSpans = spans.filter((s) => s.name === 'rxserve.step serve');
    const modelSpans = spans.filter((s) => s.name.startsWith('rxserve.model '));
    expect(stepSpans).toHaveLength(2);
    expect(modelSpans).toHaveLength(4);
    const parentIds = new Set(stepSpans.map((s) => s.spanContext().spanId));
    for (const span of modelSpans) expect(parentIds.has(span.parentSpanContext?.spanId ?? '')).toBe(true);
    const failed = modelSpans.find((s) => s.name === 'rxserve.model inc' && s.status.code === 2);
    expect(failed?.status.message).toBe('RangeError: negative: -5');
    expect(modelSpans[0].attributes).toMatchObject({ 'rxserve.endpoint': 'inc', 'rxserve.step': 'serve', 'rxserve.label.team': 'x' });
    await graph.close();
  });
});
