// The graph: shared models behind proxies, unique endpoint names, lifecycle.
import { from, lastValueFrom, Subject, toArray } from 'rxjs';
import { describe, expect, it } from 'vitest';
import { MONITORING } from '../src/monitoring/monitor.js';
import { nodeChildren, settleChildren } from './support/processes.js';
import {
  ConfigError,
  Model,
  ModelLoadError,
  ModelRunnerError,
  asEvents,
  createGraph,
  modelRunner,
  step,
  toEvent,
  type PredictContext,
  type ServingEvent,
} from '../src/index.js';

const fixture = new URL('./fixtures/workerModels.mjs', import.meta.url).href;
const ref = (name: string) => ({ module: fixture, export: name });
const artifact = (key: string, uri = `store://models/${key}`) => ({ key, uri, modelUrl: 'mock://' });
const prompt = (key: string, parent: ReturnType<typeof artifact>) => ({
  key,
  uri: `store://prompts/${key}`,
  model: parent,
  promptTemplate: [{ role: 'user', content: `${key}: {question}` }],
});

let loads = 0;
let closes = 0;
class Counting extends Model {
  override load() {
    loads++;
  }
  override predict(body: { q: number }, ctx: PredictContext) {
    return { answer: body.q * 10, origin: ctx.origin, proxies: Object.keys((this.params.proxyArtifacts as object) ?? {}) };
  }
  override close() {
    closes++;
  }
}

describe('shared models', () => {
  it('two steps, three proxies, one shared model: loaded once, results keyed by proxy, ctx.origin per proxy', async () => {
    loads = 0;
    const graph = createGraph({ name: 'g' });
    const base = artifact('llm');
    graph.addSharedModel({ name: 'shared-llm', modelClass: Counting, executionMechanism: 'asyncio', modelArtifact: base });
    const finance = graph.sharedModelProxy({ endpointName: 'finance', modelArtifact: prompt('finance', base) });
    const travel = graph.sharedModelProxy({ endpointName: 'travel', modelArtifact: prompt('travel', base) });
    const summary = graph.sharedModelProxy({ endpointName: 'summary', sharedModelName: 'shared-llm', labels: { team: 'x' } });
    await graph.ready();
    const out = await lastValueFrom(
      from([{ q: 1 }, { q: 2 }]).pipe(
        asEvents(),
        graph.modelRunner({ name: 'first', models: [finance, travel] }),
        step((b: Record<string, { answer: number }>) => ({ q: b.finance.answer + b.travel.answer })),
        modelRunner({ name: 'second', models: [summary], graph }),
        toArray(),
      ),
    );
    expect(out.map((e) => e.body)).toEqual([
      { answer: 200, origin: 'summary', proxies: ['finance', 'travel', 'summary'] },
      { answer: 400, origin: 'summary', proxies: ['finance', 'travel', 'summary'] },
    ]);
    expect(loads).toBe(1);
    expect(graph.endpointNames().map((e) => e.where)).toEqual([
      "proxy 'finance' in step 'first'",
      "proxy 'travel' in step 'first'",
      "proxy 'summary' in step 'second'",
    ]);
    await graph.close();
  });

  it.each(['thread_pool', 'process_pool', 'dedicated_process'] as const)(
    'a shared %s model is one instance: loaded once, one thread or process, every proxy answered',
    async (executionMechanism) => {
      const before = nodeChildren();
      const graph = createGraph();
      graph.addSharedModel({ name: 'where', modelClass: ref('Where'), executionMechanism, modelArtifact: artifact('where') });
      const proxies = ['p1', 'p2', 'p3', 'p4'].map((endpointName) =>
        graph.sharedModelProxy({ endpointName, modelArtifact: artifact('where') }),
      );
      await graph.ready();
      if (executionMechanism !== 'thread_pool') expect(nodeChildren()).toBe(before + 1);
      const out = await lastValueFrom(
        from([{}, {}, {}]).pipe(
          asEvents(),
          graph.modelRunner({ models: proxies.slice(0, 2) }),
          graph.modelRunner({ name: 'again', models: proxies.slice(2) }),
          toArray(),
        ),
      );
      const answers = out.flatMap((e) => Object.values(e.body as Record<string, { pid: number; loads: number; origin: string }>));
      expect(new Set(answers.map((a) => a.pid)).size).toBe(1);
      expect(new Set(answers.map((a) => a.loads))).toEqual(new Set([1]));
      expect(Object.keys(out[0].body as object)).toEqual(['p3', 'p4']);
      expect((out[0].body as Record<string, { origin: string }>).p4.origin).toBe('p4');
      await graph.close();
      await settleChildren(before);
      expect(nodeChildren()).toBe(before);
    },
  );

  it("applies the shared model's maxInFlight across all proxies together", async () => {
    let running = 0;
    let peak = 0;
    class Slow extends Model {
      override async predict() {
        peak = Math.max(peak, ++running);
        await new Promise((r) => setTimeout(r, 5));
        running--;
        return 'ok';
      }
    }
    const graph = createGraph();
    graph.addSharedModel({ name: 's', modelClass: Slow, executionMechanism: 'asyncio', maxInFlight: 1 });
    const a = graph.sharedModelProxy({ endpointName: 'a', sharedModelName: 's' });
    const b = graph.sharedModelProxy({ endpointName: 'b', sharedModelName: 's' });
    const out = await lastValueFrom(
      from(Array.from({ length: 6 }, () => ({}))).pipe(asEvents(), graph.modelRunner({ models: [a, b] }), toArray()),
    );
    expect(out.every((e) => JSON.stringify(e.body) === '{"a":"ok","b":"ok"}')).toBe(true);
    expect(peak).toBe(1);
    await graph.close();
  });
});

describe('shared models with batching', () => {
  it("a shared model's batching gathers the calls of all its proxies into predictBatch calls; each answer reaches its own caller", async () => {
    const sizes: number[] = [];
    class Doubler extends Model {
      override predict(body: { q: number }, ctx: PredictContext) {
        return { doubled: body.q * 2, origin: ctx.origin };
      }
      override predictBatch(bodies: { q: number }[], ctxs: PredictContext[]) {
        sizes.push(bodies.length);
        return bodies.map((b, i) => this.predict(b, ctxs[i]));
      }
    }
    const graph = createGraph({ name: 'batched' });
    graph.addSharedModel({ name: 'd', modelClass: Doubler, executionMechanism: 'asyncio', batching: { maxBatchSize: 8, maxWaitMs: 20 } });
    const left = graph.sharedModelProxy({ endpointName: 'left', sharedModelName: 'd' });
    const right = graph.sharedModelProxy({ endpointName: 'right', sharedModelName: 'd' });
    const out = await lastValueFrom(
      from([{ q: 1 }, { q: 2 }, { q: 3 }]).pipe(
        asEvents(),
        graph.modelRunner({ name: 'both', models: [left, right], ordered: false }),
        toArray(),
      ),
    );
    await graph.close();
    expect(
      out
        .map((e) => e.body)
        .sort((a, b) => (a as { left: { doubled: number } }).left.doubled - (b as { left: { doubled: number } }).left.doubled),
    ).toEqual([1, 2, 3].map((q) => ({ left: { doubled: q * 2, origin: 'left' }, right: { doubled: q * 2, origin: 'right' } })));
    // Six calls (three events, two proxies) arriving together: fewer, larger predictBatch calls.
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(6);
    expect(Math.max(...sizes)).toBeGreaterThan(1);
  });
});

describe('graph configuration errors', () => {
  it('endpoint names are unique across the graph: a duplicate names both places', () => {
    const graph = createGraph({ name: 'g' });
    graph.modelRunner({ name: 'one', models: [{ endpointName: 'm', modelClass: 'Model', executionMechanism: 'naive' }] });
    expect(() =>
      graph.modelRunner({ name: 'two', models: [{ endpointName: 'm', modelClass: 'Model', executionMechanism: 'naive' }] }),
    ).toThrow(/endpoint names unique across graph 'g', got 'm' used by step 'one' and by step 'two'/);
    const shared = createGraph();
    shared.addSharedModel({ name: 's', modelClass: 'Model', executionMechanism: 'asyncio' });
    const p = shared.sharedModelProxy({ endpointName: 'p', sharedModelName: 's' });
    shared.modelRunner({ name: 'a', models: [p] });
    expect(() => shared.modelRunner({ name: 'b', models: [p] })).toThrow(/'p' used by proxy 'p' in step 'a' and by proxy 'p' in step 'b'/);
  });

  it('route and step names are not endpoint names: a route named after the model it serves is accepted (the KServe layout)', () => {
    const graph = createGraph({ name: 'g' });
    const mlp = graph.modelRunner({ name: 'mlp', models: [{ endpointName: 'mlp', modelClass: 'Model', executionMechanism: 'naive' }] });
    const other = graph.modelRunner({
      name: 'other-step',
      models: [{ endpointName: 'other', modelClass: 'Model', executionMechanism: 'naive' }],
    });
    graph.router({ name: 'models', key: () => 'mlp', routes: { mlp, alias: other } });
    expect(graph.endpointNames().map((e) => e.endpointName)).toEqual(['mlp', 'other']);
    expect(graph.endpoint('alias')).toBeUndefined();
    expect(graph.endpoint('mlp')).toMatchObject({ endpointName: 'mlp', step: 'mlp', executionMechanism: 'naive' });
    // A model named like a route made earlier is no clash either.
    expect(() =>
      graph.modelRunner({ name: 'late', models: [{ endpointName: 'alias', modelClass: 'Model', executionMechanism: 'naive' }] }),
    ).not.toThrow();
    // The router is still drawn in the graph's shape, with its routes.
    expect(graph[MONITORING].describe().routers).toEqual([{ step: 'models', routes: ['mlp', 'alias'] }]);
  });

  it('a proxy with no matching shared model, or a mismatching name, is a ConfigError naming what was looked for', () => {
    const graph = createGraph();
    graph.addSharedModel({ name: 'llm', modelClass: 'Model', executionMechanism: 'asyncio', modelArtifact: artifact('llm') });
    expect(() => graph.sharedModelProxy({ endpointName: 'p', modelArtifact: artifact('other') })).toThrow(
      /sharedModelProxy\.modelArtifact: expected the artifact of a shared model \(shared: 'llm' \(uri 'store:\/\/models\/llm'\)\), got uri 'store:\/\/models\/other'/,
    );
    expect(() => graph.sharedModelProxy({ endpointName: 'p', sharedModelName: 'nope' })).toThrow(
      /expected the name of a shared model .* got 'nope'/,
    );
    expect(() => graph.sharedModelProxy({ endpointName: 'p', modelArtifact: artifact('llm'), sharedModelName: 'other' })).toThrow(
      /sharedModelName: expected 'llm', the shared model whose artifact is 'store:\/\/models\/llm', got 'other'/,
    );
    expect(() => graph.sharedModelProxy({ endpointName: 'p' })).toThrow(/a modelArtifact or a sharedModelName/);
  });

  it("refuses 'shared_executor' given by hand, a taken shared name without override, a proxy outside its graph", async () => {
    const graph = createGraph();
    expect(() => graph.addSharedModel({ name: 's', modelClass: 'Model', executionMechanism: 'shared_executor' as never })).toThrow(
      /addSharedModel\.executionMechanism: .* got 'shared_executor' \(that is what its proxies use\)/,
    );
    graph.addSharedModel({ name: 's', modelClass: 'Model', executionMechanism: 'asyncio' });
    expect(() => graph.addSharedModel({ name: 's', modelClass: 'Model', executionMechanism: 'asyncio' })).toThrow(/override: true/);
    graph.addSharedModel({ name: 's', modelClass: 'Model', executionMechanism: 'naive', override: true });
    const proxy = graph.sharedModelProxy({ endpointName: 'p', sharedModelName: 's' });
    await expect(lastValueFrom(from([1]).pipe(asEvents(), modelRunner({ models: [proxy] })))).rejects.toThrow(
      /use graph\.modelRunner\(\.\.\.\) or modelRunner\(\{ graph, \.\.\. \}\)/,
    );
    await graph.close();
  });
});

describe('graph lifecycle', () => {
  it('ready() rejects with ModelLoadError when a model cannot load', async () => {
    class Broken extends Model {
      override load() {
        throw new Error('no weights');
      }
    }
    const graph = createGraph();
    graph.addSharedModel({ name: 'b', modelClass: Broken, executionMechanism: 'asyncio' });
    await expect(graph.ready()).rejects.toSatisfy((e: unknown) => e instanceof ModelLoadError && /no weights/.test((e as Error).message));
    const other = createGraph();
    other.modelRunner({ models: [{ endpointName: 'x', modelClass: ref('NoLoad'), executionMechanism: 'dedicated_process' }] });
    await expect(other.ready()).rejects.toBeInstanceOf(ModelLoadError);
    await other.close();
    await graph.close();
  });

  it("a graph step's models are loaded once for all subscriptions and closed by graph.close()", async () => {
    loads = 0;
    closes = 0;
    const graph = createGraph();
    const op = graph.modelRunner({ models: [{ endpointName: 'c', modelClass: Counting, executionMechanism: 'naive' }] });
    await graph.ready();
    for (let i = 0; i < 3; i++) await lastValueFrom(from([{ q: i }]).pipe(asEvents(), op));
    expect([loads, closes]).toEqual([1, 0]);
    await graph.close();
    expect(closes).toBe(1);
    let completed = false;
    graph.monitoring$.subscribe({ complete: () => (completed = true) });
    expect(completed).toBe(true);
  });

  it('closing the graph with events in flight: each leaves errored or completed, none hangs, no process left', async () => {
    const before = nodeChildren();
    const graph = createGraph({ name: 'closing' });
    class Never extends Model {
      override predict() {
        return new Promise(() => undefined);
      }
    }
    graph.addSharedModel({ name: 'hang', modelClass: ref('Faulty'), executionMechanism: 'dedicated_process' });
    const proxy = graph.sharedModelProxy({ endpointName: 'proxy', sharedModelName: 'hang' });
    const source = new Subject<ServingEvent>();
    const outputs: ServingEvent[] = [];
    const done = new Promise<void>((resolve) =>
      source
        .pipe(
          graph.modelRunner({
            models: [proxy, { endpointName: 'never', modelClass: Never, executionMechanism: 'asyncio' }],
          }),
        )
        .subscribe({ next: (e) => outputs.push(e), complete: resolve }),
    );
    await graph.ready();
    for (let i = 0; i < 5; i++) source.next(toEvent({ do: 'hang' }, { id: `e${i}` }));
    await new Promise((r) => setTimeout(r, 200));
    await graph.close();
    source.next(toEvent({ do: 'hang' }, { id: 'late' }));
    source.complete();
    await done;
    expect(outputs.map((e) => e.id)).toEqual(['e0', 'e1', 'e2', 'e3', 'e4', 'late']);
    for (const e of outputs) {
      expect(e.error).toBeInstanceOf(ModelRunnerError);
      expect(String((e.body as Record<string, { error: string }>).never.error)).toMatch(
        /graph 'closing' was closed|model 'never' is closed/,
      );
    }
    await settleChildren(before);
    expect(nodeChildren()).toBe(before);
  });

  it('validates its options', () => {
    expect(() => createGraph({ nme: 'x' } as never)).toThrow(ConfigError);
    const graph = createGraph();
    expect(() => graph.configurePoolResource({ maxThreads: -1 })).toThrow(
      /graph\.configurePoolResource\.maxThreads: expected a positive integer/,
    );
  });
});
