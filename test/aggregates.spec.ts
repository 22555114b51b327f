// The graph's aggregates (one source for Prometheus and the dashboard): counters, the rolling
// window's rates and quantiles, per-second series, the graph's shape, and their sharing.
import { from, lastValueFrom, toArray } from 'rxjs';
import { describe, expect, it } from 'vitest';
import { Model, asEvents, createGraph, modelArtifact, prometheusExporter } from '../src/index.js';
import { MonitoringAggregates, acquireAggregates } from '../src/monitoring/aggregates.js';
import { MONITORING } from '../src/monitoring/monitor.js';

class Wait extends Model<{ ms: number; fail?: boolean }, number> {
  override async predict({ ms, fail }: { ms: number; fail?: boolean }) {
    await new Promise((resolve) => setTimeout(resolve, ms));
    if (fail) throw new RangeError('failed on purpose');
    return ms;
  }
}

describe('monitoring aggregates', () => {
  it('totals, window rates, quantiles from calls, per-second series; endpoints without calls listed', async () => {
    const graph = createGraph({ name: 'g' });
    graph.addSharedModel({
      name: 'llm',
      modelClass: 'LLModel',
      executionMechanism: 'asyncio',
      modelArtifact: modelArtifact({ key: 'm', modelUrl: 'mock://' }),
    });
    const wait = graph.modelRunner({
      name: 'w',
      models: [{ endpointName: 'wait', modelClass: Wait, executionMechanism: 'asyncio' }],
      raiseException: false,
    });
    graph.modelRunner({ name: 'a', models: [graph.sharedModelProxy({ endpointName: 'ask', sharedModelName: 'llm' })] });
    graph.router({ key: () => 'x', routes: { x: wait } });
    let clock = 1_000_000;
    const aggregates = new MonitoringAggregates(graph, () => clock);
    graph[MONITORING].observe(aggregates);
    const bodies = [...Array.from({ length: 9 }, () => ({ ms: 1 })), { ms: 60, fail: true }];
    await lastValueFrom(from(bodies).pipe(asEvents(), wait, toArray()));
    // The calls fell in second 1000; the window counts whole seconds before the current one.
    expect(aggregates.snapshot(10).endpoints.find((e) => e.endpoint === 'wait')?.requestsPerSecond).toBe(0);
    clock += 1000;
    const { endpoints, steps, graph: name, windowSeconds } = aggregates.snapshot(10);
    expect({ name, windowSeconds }).toEqual({ name: 'g', windowSeconds: 10 });
    const wait$ = endpoints.find((e) => e.endpoint === 'wait')!;
    expect(wait$).toMatchObject({
      step: 'w',
      modelClass: 'Wait',
      executionMechanism: 'asyncio',
      requests: 10,
      errors: 1,
      requestsPerSecond: 1,
      errorsPerSecond: 0.1,
    });
    expect(wait$.lastError).toBe('RangeError: failed on purpose');
    expect(wait$.p50Ms).not.toBeNull();
    expect(endpoints.find((e) => e.endpoint === 'ask')).toMatchObject({
      step: 'a',
      executionMechanism: 'shared_executor',
      requests: 0,
      p50Ms: null,
      usageReported: false,
    });
    expect(steps.map((s) => s.step)).toEqual(['w', 'a']);
    expect(aggregates.series()).toEqual([{ at: 1_000_000, endpoint: 'wait', requests: 10, errors: 1 }]);
    // Past the window: no rate; past the history: no series; the totals stay.
    clock += 11_000;
    expect(aggregates.snapshot(10).endpoints.find((e) => e.endpoint === 'wait')).toMatchObject({
      requests: 10,
      requestsPerSecond: 0,
      p99Ms: null,
    });
    clock += 300_000;
    expect(aggregates.series()).toEqual([]);
    expect(graph[MONITORING].describe()).toEqual({
      graph: 'g',
      steps: [
        { step: 'w', models: [{ endpointName: 'wait', modelClass: 'Wait', executionMechanism: 'asyncio' }] },
        {
          step: 'a',
          models: [{ endpointName: 'ask', modelClass: 'LLModel', executionMechanism: 'shared_executor', sharedModelName: 'llm' }],
        },
      ],
      sharedModels: [{ name: 'llm', modelClass: 'LLModel', executionMechanism: 'asyncio' }],
      routers: [{ step: 'router', routes: ['x'] }],
    });
    await graph.close();
  });

  it('p50 and p99 from the window: the upper bound of the log bucket holding that rank (within 19%)', () => {
    const graph = createGraph();
    let clock = 5_000;
    const aggregates = new MonitoringAggregates(graph, () => clock);
    const entry = { endpointName: 'e', modelClass: 'Model', executionMechanism: 'naive' } as const;
    const call = (latencyMs: number) => ({ entry, value: 1, error: undefined, started: 5_000, latencyMs });
    aggregates.onEvent({
      step: 's',
      event: { id: '1', body: {} } as never,
      calls: [...Array.from({ length: 98 }, () => call(1)), call(100), call(100)],
    });
    clock = 6_000;
    const e = aggregates.snapshot(1).endpoints.find((x) => x.endpoint === 'e')!;
    expect(e.requestsPerSecond).toBe(100);
    expect(e.p50Ms!).toBeGreaterThanOrEqual(1);
    expect(e.p50Ms!).toBeLessThan(1.19);
    expect(e.p99Ms!).toBeGreaterThanOrEqual(100);
    expect(e.p99Ms!).toBeLessThan(119);
  });

  it('the window and the series read only their seconds of the ring: a slot reused 300 s later counts once, for its new second', () => {
    const graph = createGraph();
    let clock = 7_000;
    const aggregates = new MonitoringAggregates(graph, () => clock);
    const entry = { endpointName: 'e', modelClass: 'Model', executionMechanism: 'naive' } as const;
    const calls = (n: number) => Array.from({ length: n }, () => ({ entry, value: 1, error: undefined, started: clock, latencyMs: 1 }));
    aggregates.onEvent({ step: 's', event: { id: '1', body: {} } as never, calls: calls(3) }); // second 7
    clock = 8_000;
    aggregates.onEvent({ step: 's', event: { id: '2', body: {} } as never, calls: calls(1) }); // second 8
    clock = 307_000;
    aggregates.onEvent({ step: 's', event: { id: '3', body: {} } as never, calls: calls(5) }); // second 307: second 7's slot
    clock = 308_500;
    // Seconds 298 to 307: only second 307's 5 calls (second 8, in the next slot, is 300 s old).
    expect(aggregates.snapshot(10).endpoints.find((x) => x.endpoint === 'e')).toMatchObject({ requests: 9, requestsPerSecond: 0.5 });
    expect(aggregates.series(2)).toEqual([{ at: 307_000, endpoint: 'e', requests: 5, errors: 0 }]);
    expect(aggregates.series().map((p) => [p.at, p.requests])).toEqual([[307_000, 5]]);
  });

  it('one set of counters per graph, shared by its holders; released by the last; Prometheus keeps its figures after detach', async () => {
    const graph = createGraph();
    const step = graph.modelRunner({ name: 's', models: [{ endpointName: 'wait', modelClass: Wait, executionMechanism: 'asyncio' }] });
    const run = (n: number) => lastValueFrom(from(Array.from({ length: n }, () => ({ ms: 0 }))).pipe(asEvents(), step, toArray()));
    const first = acquireAggregates(graph);
    const exporter = await prometheusExporter(graph);
    const second = acquireAggregates(graph);
    expect(second.aggregates).toBe(first.aggregates);
    await run(3);
    expect(first.aggregates.totals()).toMatchObject([{ endpoint: 'wait', step: 's', requests: 3, errors: 0 }]);
    exporter.detach();
    await run(2);
    expect(await exporter.metrics()).toContain('rxserve_model_requests_total{endpoint="wait",step="s",outcome="success"} 3');
    expect(first.aggregates.totals()[0]?.requests).toBe(5);
    first.release();
    first.release(); // twice: counted once
    expect(acquireAggregates(graph).aggregates).toBe(second.aggregates);
    second.release();
    await graph.close();
  });
});
