// MLRun's add_model / ModelRunnerStep arguments rxserve takes as MLRun does: a model instance as
// modelClass, an artifact named by a path or file: URL, and a selector object never given
// selectorParams. Wrong uses are ConfigErrors naming the field.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { pathToFileURL } from 'node:url';
import { from, lastValueFrom, toArray, type OperatorFunction } from 'rxjs';
import { afterAll, describe, expect, it } from 'vitest';
import {
  ConfigError,
  Model,
  ModelLoadError,
  ModelSelector,
  createGraph,
  modelRunner,
  selectModels,
  toEvent,
  type PredictContext,
  type ServingEvent,
} from '../src/index.js';

async function run(bodies: unknown[], operator: OperatorFunction<ServingEvent, ServingEvent>): Promise<ServingEvent[]> {
  return lastValueFrom(from(bodies.map((b, i) => toEvent(b, { id: `e${i}` }))).pipe(operator, toArray()));
}

function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error('expected a ConfigError, nothing was thrown');
}

/** Counts its lifecycle; answers with its own state, so a test sees which instance ran. */
class Counter extends Model<{ x: number }, { y: number; calls: number }> {
  loads = 0;
  closes = 0;
  calls = 0;
  override async load() {
    await new Promise((r) => setTimeout(r, 5));
    this.loads++;
  }
  override predict(body: { x: number }, _ctx: PredictContext) {
    return { y: body.x * (this.params.factor as number), calls: ++this.calls };
  }
  override close() {
    this.closes++;
  }
}

describe('modelClass: a Model instance (MLRun model_class may be one)', () => {
  it.each(['naive', 'asyncio'] as const)(
    '%s: the step uses that instance, loaded once across steps and subscriptions, never closed by them',
    async (mechanism) => {
      const model = new Counter({ name: 'counter', factor: 3 });
      const entry = { endpointName: 'counter', modelClass: model, executionMechanism: mechanism };
      const first = modelRunner({ models: [entry] });
      const second = modelRunner({ name: 'second', models: [entry] });
      const [a, b] = await Promise.all([run([{ x: 1 }, { x: 2 }], first), run([{ x: 3 }], second)]);
      const again = await run([{ x: 4 }], first); // a new subscription of the first step
      expect([...a, ...b, ...again].map((e) => (e.body as { y: number }).y).sort((p, q) => p - q)).toEqual([3, 6, 9, 12]);
      expect(model.calls).toBe(4);
      expect(model.loads).toBe(1);
      expect(model.closes).toBe(0);
    },
  );

  it('a load that fails fails the subscription (ModelLoadError) and is tried again by the next one', async () => {
    let attempts = 0;
    class Flaky extends Model {
      override load() {
        if (++attempts === 1) throw new Error('not yet');
      }
    }
    const step = modelRunner({
      models: [{ endpointName: 'flaky', modelClass: new Flaky({ name: 'flaky' }), executionMechanism: 'naive' }],
    });
    await expect(run([1], step)).rejects.toSatisfy(
      (e: unknown) => e instanceof ModelLoadError && /flaky.*not yet/.test((e as Error).message),
    );
    expect((await run([1], step)).map((e) => e.body)).toEqual([1]);
    expect(attempts).toBe(2);
  });

  it('serves as a graph shared model (in process) behind proxies', async () => {
    const graph = createGraph();
    const model = new Counter({ name: 'shared', factor: 10 });
    graph.addSharedModel({ name: 'shared', modelClass: model, executionMechanism: 'asyncio' });
    const proxy = graph.sharedModelProxy({ endpointName: 'p', sharedModelName: 'shared' });
    const out = await run([{ x: 2 }], graph.modelRunner({ models: [proxy] }));
    await graph.close();
    expect(out[0].body).toMatchObject({ y: 20 });
    expect(model.loads).toBe(1);
  });

  it.each(['thread_pool', 'process_pool', 'dedicated_process'] as const)(
    '%s: a ConfigError saying to register the class or give a module reference',
    (mechanism) => {
      const error = configError(() =>
        modelRunner({ models: [{ endpointName: 'c', modelClass: new Counter({ name: 'c' }), executionMechanism: mechanism }] }),
      );
      expect(error.path).toBe('modelRunner.models[0].modelClass');
      expect(error.message).toMatch(
        new RegExp(`executionMechanism '${mechanism}'.*an instance cannot be sent to it.*registerModel\\('Counter', \\{ module`),
      );
      expect(error.message).toMatch(/got a Counter instance/);
    },
  );

  it('params or modelArtifact beside an instance, or another name, are ConfigErrors (it is built already)', () => {
    const model = new Counter({ name: 'c', factor: 2 });
    const params = configError(() =>
      modelRunner({ models: [{ endpointName: 'c', modelClass: model, executionMechanism: 'naive', params: { factor: 5 } }] }),
    );
    expect(params.path).toBe('modelRunner.models[0].params');
    expect(params.message).toMatch(
      /nothing when modelClass is a Model instance .*new Counter\(\{ name, \.\.\.params \}\).*got \["factor"\]/,
    );
    const artifact = configError(() =>
      modelRunner({
        models: [{ endpointName: 'c', modelClass: model, executionMechanism: 'naive', modelArtifact: { key: 'k', modelUrl: 'mock://' } }],
      }),
    );
    expect(artifact.path).toBe('modelRunner.models[0].modelArtifact');
    const named = configError(() => modelRunner({ models: [{ endpointName: 'other', modelClass: model, executionMechanism: 'naive' }] }));
    expect(named.path).toBe('modelRunner.models[0].modelClass');
    expect(named.message).toMatch(/a Model named 'other' \(the endpointName\), got a Counter named "c"/);
  });
});

describe('modelArtifact: a path or file: URL of an artifact JSON (MLRun model_artifact may be a URI)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'rxserve-artifacts-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const write = (name: string, content: unknown) => {
    const path = join(dir, name);
    writeFileSync(path, typeof content === 'string' ? content : JSON.stringify(content));
    return path;
  };
  const model = write('model.json', { key: 'mock-llm', modelUrl: 'mock://' });
  const prompt = write('prompt.json', {
    key: 'advisor',
    model: { key: 'mock-llm', modelUrl: 'mock://' },
    promptTemplate: [{ role: 'user', content: 'As an advisor: {question}' }],
  });
  const llm = (modelArtifact: string, executionMechanism: 'asyncio' | 'thread_pool' = 'asyncio') =>
    modelRunner({ models: [{ endpointName: 'advisor', modelClass: 'LLModel', executionMechanism, modelArtifact, resultPath: 'out' }] });

  it('reads it when the step is configured: absolute path, file: URL and relative path all serve', async () => {
    for (const artifact of [prompt, pathToFileURL(prompt).href, relative(process.cwd(), prompt), model]) {
      // A model artifact has no template: the input brings the messages.
      const body = artifact === model ? { messages: [{ role: 'user', content: 'Bonds?' }] } : { question: 'Bonds?' };
      const [event] = await run([body], llm(artifact));
      expect(event.error, artifact).toBeUndefined();
      expect((event.body as { out: { answer: string } }).out.answer).toMatch(/mock model provider/);
    }
  });

  it('a worker mechanism receives the artifact read on the main thread', async () => {
    const [event] = await run([{ question: 'Bonds?' }], llm(prompt, 'thread_pool'));
    expect(event.error).toBeUndefined();
    expect((event.body as { out: { answer: string } }).out.answer).toMatch(/mock model provider/);
  });

  it('a shared model given an artifact path is found by its URI from a proxy', async () => {
    const graph = createGraph();
    graph.addSharedModel({ name: 'llm', modelClass: 'LLModel', executionMechanism: 'asyncio', modelArtifact: model });
    const proxy = graph.sharedModelProxy({
      endpointName: 'p',
      modelArtifact: { key: 'mock-llm', uri: 'store://models/mock-llm', modelUrl: 'mock://' },
    });
    expect(proxy.sharedModelName).toBe('llm');
    await graph.close();
  });

  it('what cannot be read is a ConfigError naming the field, the file and why', () => {
    const missing = join(dir, 'missing.json');
    const cases: [string, string, RegExp][] = [
      [
        missing,
        'modelRunner.models[0].modelArtifact',
        new RegExp(`readable artifact JSON file, got '${missing.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}' \\(ENOENT`),
      ],
      [
        write('broken.json', '{ "key": '),
        'modelRunner.models[0].modelArtifact',
        /readable artifact JSON file, got '.*broken\.json' \(.*JSON/,
      ],
      [write('no-url.json', { key: 'k' }), 'modelRunner.models[0].modelArtifact.modelUrl', /expected a non-empty string, got undefined/],
      [
        write('bad-prompt.json', { key: 'p', model: { key: 'm' } }),
        'modelRunner.models[0].modelArtifact.model.modelUrl',
        /non-empty string/,
      ],
      [
        'store://models/project/gpt',
        'modelRunner.models[0].modelArtifact',
        /the path or file: URL of its JSON file \(rxserve has no artifact store\), got 'store:\/\/models\/project\/gpt'/,
      ],
    ];
    for (const [artifact, path, message] of cases) {
      const error = configError(() => llm(artifact));
      expect(error.path, artifact).toBe(path);
      expect(error.message, artifact).toMatch(message);
    }
  });
});

describe('selectorParams beside a selector object or function (MLRun: MLRunInvalidArgumentError)', () => {
  class OnlyA extends ModelSelector {
    override select() {
      return ['a'];
    }
  }
  const models = [
    { endpointName: 'a', modelClass: 'Model', executionMechanism: 'naive' },
    { endpointName: 'b', modelClass: 'Model', executionMechanism: 'naive' },
  ] as const;

  it.each([
    ['a selector object', new OnlyA(), /model_runner\.selector is a selector object \(OnlyA\)/],
    ['a selector function', () => ['a'], /model_runner\.selector is a selector function/],
  ])('%s with selectorParams errors the stream with a ConfigError naming both fields', async (_label, selector, what) => {
    await expect(run([{}], modelRunner({ models: [...models], selector, selectorParams: { threshold: 1 } }))).rejects.toSatisfy(
      (e: unknown) => {
        expect(e).toBeInstanceOf(ConfigError);
        expect((e as ConfigError).path).toBe('model_runner.selectorParams');
        expect((e as Error).message).toMatch(what);
        expect((e as Error).message).toMatch(/constructor parameters.*got \{ threshold \}/);
        return true;
      },
    );
  });

  it('selectModels refuses the same', async () => {
    await expect(
      lastValueFrom(from([toEvent({})]).pipe(selectModels(new OnlyA(), [...models], { selectorParams: { x: 1 } }), toArray())),
    ).rejects.toSatisfy((e: unknown) => e instanceof ConfigError && e.path === 'model_runner.selectorParams');
  });

  it('a selector class with selectorParams still works (they go to its constructor)', async () => {
    class Pick extends ModelSelector {
      constructor(private readonly params: { only: string }) {
        super();
      }
      override select() {
        return [this.params.only];
      }
    }
    const [event] = await run([{ v: 1 }], modelRunner({ models: [...models], selector: Pick as never, selectorParams: { only: 'b' } }));
    expect(event.body).toEqual({ b: { v: 1 } }); // keyed: the step has two models, as MLRun does
  });
});
