// Bad input on every public entry. Each mistake gives a clear error that names what was wrong:
// at configuration time (ConfigError with the field's path), at subscription (the stream errors
// naming the model), or on that event only (an errored event naming the model or step and the
// reason) while every other event of the stream comes out fine, with no worker left broken.
import { from, lastValueFrom, toArray, type OperatorFunction } from 'rxjs';
import { describe, expect, it } from 'vitest';
import {
  ConfigError,
  Model,
  ModelLoadError,
  ModelRunnerError,
  ModelSelector,
  RouteNotFoundError,
  SelectorError,
  createGraph,
  llmPromptArtifact,
  modelArtifact,
  modelRunner,
  onError,
  prometheusExporter,
  registerSelector,
  router,
  rxservePlugin,
  selectModels,
  serve,
  step,
  toEvent,
  traceGraph,
  type ModelEntry,
  type ServingEvent,
} from '../src/index.js';

const fixture = new URL('./fixtures/chaosModels.mjs', import.meta.url).href;
const ref = (name: string) => ({ module: fixture, export: name });
const ok: ModelEntry = { endpointName: 'm', modelClass: 'Model', executionMechanism: 'naive' };
const identity: OperatorFunction<ServingEvent, ServingEvent> = (s) => s;
const WORKER_MECHANISMS = ['thread_pool', 'process_pool', 'dedicated_process'] as const;

/** Runs bodies through a pipeline, with a bound so a hang fails the test instead of stalling it. */
async function run(bodies: unknown[], operator: OperatorFunction<ServingEvent, ServingEvent>): Promise<ServingEvent[]> {
  const events = bodies.map((body, i) => toEvent(body, { id: `e${i}` }));
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      lastValueFrom(from(events).pipe(operator, toArray())),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error('the pipeline did not finish within 20 s')), 20_000);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** `fn` throws a ConfigError whose first path is `path` and whose message matches `message`. */
function expectConfigError(fn: () => unknown, path: string, message: RegExp): void {
  let thrown: unknown;
  try {
    fn();
  } catch (error) {
    thrown = error;
  }
  expect(thrown, 'a ConfigError').toBeInstanceOf(ConfigError);
  expect((thrown as ConfigError).path).toBe(path);
  expect((thrown as Error).message).toMatch(message);
}

// ---- configuration ---------------------------------------------------------------------------

describe('modelRunner configuration: ConfigError naming the field', () => {
  const cases: [string, () => unknown, string, RegExp][] = [
    ['no config', () => modelRunner(undefined as never), 'modelRunner', /expected ModelRunnerConfig, got undefined/],
    ['a number for a config', () => modelRunner(42 as never), 'modelRunner', /got 42/],
    ['no models', () => modelRunner({} as never), 'modelRunner.models', /non-empty array of model entries, got undefined/],
    ['empty models', () => modelRunner({ models: [] }), 'modelRunner.models', /got \[\]/],
    ['models as an object', () => modelRunner({ models: {} as never }), 'modelRunner.models', /got object/],
    ['a null entry', () => modelRunner({ models: [null as never] }), 'modelRunner.models[0]', /expected ModelEntry, got null/],
    [
      'missing endpointName',
      () => modelRunner({ models: [{ ...ok, endpointName: undefined as never }] }),
      'modelRunner.models[0].endpointName',
      /non-empty string, got undefined/,
    ],
    [
      'endpointName of the wrong type',
      () => modelRunner({ models: [{ ...ok, endpointName: 5 as never }] }),
      'modelRunner.models[0].endpointName',
      /got 5/,
    ],
    [
      'modelClass of the wrong type',
      () => modelRunner({ models: [{ ...ok, modelClass: 42 as never }] }),
      'modelRunner.models[0].modelClass',
      /a registered name, a Model class, \{ module, export\? \}, or a Model instance, got 42/,
    ],
    [
      'a module reference with a typo',
      () => modelRunner({ models: [{ ...ok, modelClass: { module: fixture, exports: 'Echo' } as never }] }),
      'modelRunner.models[0].modelClass',
      /\{ module, export\? \}/,
    ],
    [
      'a relative module path',
      () => modelRunner({ models: [{ ...ok, modelClass: { module: './models.mjs' } }] }),
      'modelRunner.models[0].modelClass.module',
      /absolute path, a file: URL or a package name.*got "\.\/models\.mjs"/,
    ],
    [
      'a class that is not a model',
      () => modelRunner({ models: [{ ...ok, modelClass: class NotAModel {} as never }] }),
      'modelRunner.models[0].modelClass',
      /a Model class \(with a predict method\), got class NotAModel/,
    ],
    [
      'a bare class on a worker mechanism',
      () => modelRunner({ models: [{ ...ok, modelClass: Model, executionMechanism: 'thread_pool' }] }),
      'modelRunner.models[0].modelClass',
      /loaded inside a worker\): registerModel\('Model'/,
    ],
    [
      'an unknown mechanism',
      () => modelRunner({ models: [{ ...ok, executionMechanism: 'gpu' as never }] }),
      'modelRunner.models[0].executionMechanism',
      /'naive' \| 'asyncio' \| 'thread_pool' .*got "gpu"/,
    ],
    [
      'a missing mechanism',
      () => modelRunner({ models: [{ endpointName: 'm', modelClass: 'Model' } as never] }),
      'modelRunner.models[0].executionMechanism',
      /got undefined/,
    ],
    [
      'a negative timeout',
      () => modelRunner({ models: [{ ...ok, timeoutMs: -1 }] }),
      'modelRunner.models[0].timeoutMs',
      /positive number of milliseconds, got -1/,
    ],
    [
      'a timeout as a string',
      () => modelRunner({ models: [{ ...ok, timeoutMs: '5' as never }] }),
      'modelRunner.models[0].timeoutMs',
      /got "5"/,
    ],
    [
      'a zero lane limit',
      () => modelRunner({ models: [{ ...ok, maxInFlight: 0 }] }),
      'modelRunner.models[0].maxInFlight',
      /positive integer or Infinity, got 0/,
    ],
    [
      'a bad inputPath',
      () => modelRunner({ models: [{ ...ok, inputPath: 'a..b' }] }),
      'modelRunner.models[0].inputPath',
      /dot path like 'a\.b\.c', got "a\.\.b"/,
    ],
    [
      'labels of the wrong type',
      () => modelRunner({ models: [{ ...ok, labels: 5 as never }] }),
      'modelRunner.models[0].labels',
      /Record<string, string> \| string\[\], got 5/,
    ],
    [
      'an unknown creation strategy',
      () => modelRunner({ models: [{ ...ok, creationStrategy: 'replace' as never }] }),
      'modelRunner.models[0].creationStrategy',
      /'inplace' \| 'overwrite' \| 'archive' \| 'skip', got "replace"/,
    ],
    [
      'a params.name other than the endpoint',
      () => modelRunner({ models: [{ ...ok, params: { name: 'x' } }] }),
      'modelRunner.models[0].params.name',
      /'m' \(the endpointName\) or nothing, got "x"/,
    ],
    [
      'a duplicate endpoint',
      () => modelRunner({ models: [ok, ok] }),
      'modelRunner.models[1].endpointName',
      /already used by modelRunner\.models\[0\]/,
    ],
    [
      'an unknown entry field',
      () => modelRunner({ models: [{ ...ok, timeout: 5 } as never] }),
      'modelRunner.models[0].timeout',
      /unknown field 'timeout' \(known fields: .*timeoutMs/,
    ],
    [
      'a function in params for a worker',
      () => modelRunner({ models: [{ ...ok, executionMechanism: 'thread_pool', params: { f: () => 1 } }] }),
      'modelRunner.models[0].params.f',
      /JSON data \(executionMechanism 'thread_pool' sends it to workers as JSON\)/,
    ],
    [
      'circular params for a worker',
      () => modelRunner({ models: [{ ...ok, executionMechanism: 'process_pool', params: circularTwice() }] }),
      'modelRunner.models[0].params.a',
      /JSON data/,
    ],
    ['maxInFlight 0', () => modelRunner({ models: [ok], maxInFlight: 0 }), 'modelRunner.maxInFlight', /positive integer, got 0/],
    ['a fractional maxInFlight', () => modelRunner({ models: [ok], maxInFlight: 1.5 }), 'modelRunner.maxInFlight', /got 1\.5/],
    [
      'a negative maxQueue',
      () => modelRunner({ models: [ok], maxQueue: -1 }),
      'modelRunner.maxQueue',
      /non-negative integer or Infinity, got -1/,
    ],
    [
      'ordered as a string',
      () => modelRunner({ models: [ok], ordered: 'yes' as never }),
      'modelRunner.ordered',
      /expected boolean, got "yes"/,
    ],
    [
      'raiseException as a string',
      () => modelRunner({ models: [ok], raiseException: 'no' as never }),
      'modelRunner.raiseException',
      /got "no"/,
    ],
    ['an empty step name', () => modelRunner({ models: [ok], name: '' }), 'modelRunner.name', /non-empty string, got ""/],
    ['an unknown option', () => modelRunner({ models: [ok], order: true } as never), 'modelRunner.order', /unknown field 'order'/],
    [
      'a bad pool size',
      () => modelRunner({ models: [ok], pool: { maxThreads: 'x' as never } }),
      'modelRunner.pool.maxThreads',
      /positive integer, got "x"/,
    ],
    [
      'an unknown pool option',
      () => modelRunner({ models: [ok], pool: { threads: 1 } as never }),
      'modelRunner.pool.threads',
      /unknown field 'threads'/,
    ],
    [
      'a negative cancel grace',
      () => modelRunner({ models: [ok], pool: { cancelGraceMs: -5 } }),
      'modelRunner.pool.cancelGraceMs',
      /non-negative integer, got -5/,
    ],
    ['an executor that is not one', () => modelRunner({ models: [ok], executor: {} as never }), 'modelRunner.executor', /an Executor/],
    [
      'a graph that is not one',
      () => modelRunner({ models: [ok], graph: {} as never }),
      'modelRunner.graph',
      /a graph made by createGraph\(\)/,
    ],
    [
      'a selector of the wrong type',
      () => modelRunner({ models: [ok], selector: 42 as never }),
      'modelRunner.selector',
      /a ModelSelector, a selector function or a registered selector name, got 42/,
    ],
    ['an object without select()', () => modelRunner({ models: [ok], selector: {} as never }), 'modelRunner.selector', /got \{\}/],
    [
      'selectorParams of the wrong type',
      () => modelRunner({ models: [ok], selectorParams: 5 as never }),
      'modelRunner.selectorParams',
      /got 5/,
    ],
    [
      'a Model instance for a worker mechanism',
      () => modelRunner({ models: [{ ...ok, executionMechanism: 'process_pool', modelClass: new Model({ name: 'm' }) }] }),
      'modelRunner.models[0].modelClass',
      /an instance cannot be sent to it\): registerModel\('Model'/,
    ],
    [
      'params beside a Model instance',
      () => modelRunner({ models: [{ ...ok, modelClass: new Model({ name: 'm' }), params: { a: 1 } }] }),
      'modelRunner.models[0].params',
      /nothing when modelClass is a Model instance/,
    ],
    [
      'an artifact file that does not exist',
      () => modelRunner({ models: [{ ...ok, modelArtifact: '/nonexistent/artifact.json' }] }),
      'modelRunner.models[0].modelArtifact',
      /readable artifact JSON file, got '\/nonexistent\/artifact\.json' \(ENOENT/,
    ],
    [
      'an artifact store URI',
      () => modelRunner({ models: [{ ...ok, modelArtifact: 'store://models/p/m' }] }),
      'modelRunner.models[0].modelArtifact',
      /rxserve has no artifact store\), got 'store:\/\/models\/p\/m'/,
    ],
  ];
  it.each(cases)('%s', (_label, fn, path, message) => expectConfigError(fn, path, message));
});

describe('modelRunner: mistakes found at subscription error the stream, naming the model or field', () => {
  it('an unregistered selector name is a ConfigError listing the registered ones', async () => {
    await expect(run([{}], modelRunner({ models: [ok], selector: 'NoSuchSelector' }))).rejects.toSatisfy(
      (e: unknown) =>
        e instanceof ConfigError && e.path === 'model_runner.selector' && /a registered selector .*got 'NoSuchSelector'/.test(e.message),
    );
  });

  it('a selector class whose constructor throws is a ConfigError naming the selector', async () => {
    class Broken extends ModelSelector {
      constructor() {
        super();
        throw new Error('no threshold given');
      }
    }
    registerSelector('BrokenSelector', Broken);
    for (const selector of [Broken as never, 'BrokenSelector']) {
      await expect(run([{}], modelRunner({ models: [ok], selector }))).rejects.toSatisfy(
        (e: unknown) =>
          e instanceof ConfigError &&
          e.path === 'model_runner.selector' &&
          /selector class Broken could not be constructed: Error: no threshold given/.test(e.message),
      );
    }
  });

  it.each(['naive', 'thread_pool', 'process_pool'] as const)(
    'an unregistered model class name on %s is a ModelLoadError naming the model and the name',
    async (mechanism) => {
      await expect(
        run([{}], modelRunner({ models: [{ ...ok, modelClass: 'NoSuchModel', executionMechanism: mechanism }] })),
      ).rejects.toSatisfy(
        (e: unknown) =>
          e instanceof ModelLoadError &&
          /model 'm' could not be loaded: no model class is registered as 'NoSuchModel'/.test((e as Error).message),
      );
    },
  );

  it.each(['naive', 'thread_pool', 'dedicated_process'] as const)(
    'a module export that is not a model class on %s is a ModelLoadError listing the exports',
    async (mechanism) => {
      await expect(run([{}], modelRunner({ models: [{ ...ok, modelClass: ref('Nope'), executionMechanism: mechanism }] }))).rejects.toThrow(
        /model 'm' could not be loaded: export 'Nope' of module '.*chaosModels\.mjs' is not a model class .*exports: BadOutput, Chaos, Echo/,
      );
    },
  );

  it("'shared_executor' outside a graph is a ConfigError saying how to use proxies", async () => {
    await expect(run([{}], modelRunner({ models: [{ ...ok, executionMechanism: 'shared_executor' }] }))).rejects.toSatisfy(
      (e: unknown) =>
        e instanceof ConfigError && e.path === "model_runner.models['m'].executionMechanism" && /graph\.modelRunner/.test(e.message),
    );
  });
});

// ---- per event -----------------------------------------------------------------------------------

describe('bad events fail alone, naming the step or model and the reason', () => {
  const two: ModelEntry[] = [
    { endpointName: 'a', modelClass: 'Model', executionMechanism: 'naive' },
    { endpointName: 'b', modelClass: 'Model', executionMechanism: 'asyncio' },
  ];
  const selectorCases: [string, (e: ServingEvent) => unknown, RegExp][] = [
    ['returns a number', () => 5, /the selector returned number; expected an array of endpoint names, null or undefined/],
    ['returns a promise (selectors are synchronous)', async () => ['a'], /the selector returned a Promise; selectors are synchronous/],
    ['returns a non-name', () => [5], /the selector returned 5 at \[0\]; expected an endpoint name or a model entry/],
    ['names an unknown model', () => ['a', 'zz'], /the selector chose 'zz', which is not a model of the step \(models: a, b\)/],
    ['names a model twice', () => ['b', 'b'], /the selector chose 'b' more than once/],
    [
      'throws',
      () => {
        throw new RangeError('no such route');
      },
      /the selector threw RangeError: no such route/,
    ],
  ];
  it.each(selectorCases)('a selector that %s: SelectorError on that event only', async (_label, bad, message) => {
    const selector = (e: ServingEvent) => ((e.body as { bad?: boolean }).bad ? bad(e) : null);
    const out = await run(
      [{ n: 1 }, { n: 2, bad: true }, { n: 3 }],
      modelRunner({ name: 'runner', models: two, selector: selector as never }),
    );
    expect(out.map((e) => e.id)).toEqual(['e0', 'e1', 'e2']);
    expect(out[1].error).toBeInstanceOf(SelectorError);
    expect(out[1].error!.message).toMatch(new RegExp(`^step 'runner': ${message.source}`));
    expect(out[1].origin).toBe('runner');
    expect(out[1].body).toEqual({ n: 2, bad: true }); // untouched
    expect(out[0].body).toEqual({ a: { n: 1 }, b: { n: 1 } });
    expect(out[2].body).toEqual({ a: { n: 3 }, b: { n: 3 } });
  });

  it('an inputPath missing from one body fails that model on that event, naming the path and the event', async () => {
    const out = await run(
      [{ x: { v: 1 } }, { y: 2 }, { x: { v: 3 } }],
      modelRunner({ models: [{ ...two[0], inputPath: 'x' }, two[1]], raiseException: true }),
    );
    expect(out[1].error).toBeInstanceOf(ModelRunnerError);
    expect((out[1].error as ModelRunnerError).modelsErrors).toEqual({
      a: "TypeError: inputPath 'x' is not in the body of event 'e1'",
      b: null,
    });
    expect(out[0].body).toEqual({ a: { v: 1 }, b: { x: { v: 1 } } });
    expect(out[2].body).toEqual({ a: { v: 3 }, b: { x: { v: 3 } } });
  });

  it("a router key that throws, or has no route, fails that event; the router's other events flow", async () => {
    const out = await run(
      [{ r: 'x' }, { r: 'boom' }, { r: 'nowhere' }, { r: 'x' }],
      router({
        name: 'by_r',
        key: (e) => {
          const r = (e.body as { r: string }).r;
          if (r === 'boom') throw new Error('key failed');
          return r;
        },
        routes: { x: step((b: object) => ({ ...b, routed: true }), { name: 'mark' }) },
      }),
    );
    const byId = Object.fromEntries(out.map((e) => [e.id, e]));
    expect(out).toHaveLength(4);
    expect(byId.e1.error?.message).toBe('key failed');
    expect(byId.e1.origin).toBe('by_r');
    expect(byId.e2.error).toBeInstanceOf(RouteNotFoundError);
    expect(byId.e2.error!.message).toBe("router 'by_r': no route for key 'nowhere'; available routes: 'x'");
    expect(byId.e0.body).toEqual({ r: 'x', routed: true });
    expect(byId.e3.body).toEqual({ r: 'x', routed: true });
  });

  it("a step's missing inputPath or throwing function fails that event only, with the step's name as origin", async () => {
    const out = await run(
      [{ t: 'a' }, {}, { t: 'boom' }, { t: 'b' }],
      step(
        (t: string) => {
          if (t === 'boom') throw new Error('cannot upper-case boom');
          return t.toUpperCase();
        },
        { name: 'upper', inputPath: 't', resultPath: 'u' },
      ),
    );
    expect(out[1].error?.message).toBe("step 'upper': inputPath 't' is not in the body of event 'e1'");
    expect(out[2].error?.message).toBe('cannot upper-case boom');
    expect(out.slice(1, 3).map((e) => e.origin)).toEqual(['upper', 'upper']);
    expect(out[0].body).toEqual({ t: 'a', u: 'A' });
    expect(out[3].body).toEqual({ t: 'b', u: 'B' });
  });
});

// ---- other operators -----------------------------------------------------------------------------

describe('router, step, onError and selectModels configuration', () => {
  const cases: [string, () => unknown, string, RegExp][] = [
    ['router without config', () => router(undefined as never), 'router', /expected RouterConfig, got undefined/],
    [
      'router key not a function',
      () => router({ key: 'x' as never, routes: { a: identity } }),
      'router.key',
      /a function \(event\) => route key, got "x"/,
    ],
    ['router without routes', () => router({ key: () => 'a', routes: {} }), 'router.routes', /at least one route, got \{\}/],
    ['router route not an operator', () => router({ key: () => 'a', routes: { a: 5 as never } }), 'router.routes.a', /an operator, got 5/],
    [
      'router default route not a route',
      () => router({ key: () => 'a', routes: { a: identity }, defaultRoute: 'b' }),
      'router.defaultRoute',
      /one of the routes \(a\), got 'b'/,
    ],
    [
      'router idleMs 0',
      () => router({ key: () => 'a', routes: { a: identity }, idleMs: 0 }),
      'router.idleMs',
      /positive integer or Infinity, got 0/,
    ],
    [
      'router unknown field',
      () => router({ key: () => 'a', routes: { a: identity }, default: 'a' } as never),
      'router.default',
      /unknown field 'default'/,
    ],
    ['step without a function', () => step(42 as never), 'step.fn', /a function \(input, context\) => result, got 42/],
    ['step with a bad inputPath', () => step((x) => x, { inputPath: 5 as never }), 'step.options.inputPath', /dot path/],
    ['step with an unknown option', () => step((x) => x, { input: 'a' } as never), 'step.options.input', /unknown field 'input'/],
    ['step with null options', () => step((x) => x, null as never), 'step.options', /expected StepOptions, got null/],
    [
      'onError without a handler',
      () => onError(42 as never),
      'onError.handler',
      /a function \(erroredEvent, context\) => event or body, got 42/,
    ],
    ['onError with an empty name', () => onError((e) => e, { name: '' }), 'onError.options.name', /non-empty string, got ""/],
    [
      'onError with an unknown option',
      () => onError((e) => e, { maxInFlight: 2 } as never),
      'onError.options.maxInFlight',
      /unknown field 'maxInFlight'/,
    ],
    [
      'selectModels with a number as selector',
      () => selectModels(42 as never, [ok]),
      'selectModels.selector',
      /a ModelSelector, a selector function or a registered selector name/,
    ],
    ['selectModels without models', () => selectModels(undefined, []), 'selectModels.models', /non-empty array of model entries, got \[\]/],
  ];
  it.each(cases)('%s', (_label, fn, path, message) => expectConfigError(fn, path, message));
});

// ---- graph, shared models, proxies, monitoring --------------------------------------------------

describe('createGraph, addSharedModel, sharedModelProxy and monitoring options', () => {
  const withShared = () => {
    const graph = createGraph({ name: 'g' });
    graph.addSharedModel({
      name: 'llm',
      modelClass: 'Model',
      executionMechanism: 'naive',
      modelArtifact: modelArtifact({ key: 'base', modelUrl: 'mock://' }),
    });
    return graph;
  };
  const cases: [string, () => unknown, string, RegExp][] = [
    ['createGraph with a number', () => createGraph(42 as never), 'createGraph', /expected GraphOptions, got 42/],
    [
      'monitoring: true',
      () => createGraph({ monitoring: true as never }),
      'createGraph.monitoring',
      /expected MonitoringOptions, got true/,
    ],
    [
      'samplingPercentage 0',
      () => createGraph({ monitoring: { samplingPercentage: 0 } }),
      'createGraph.monitoring.samplingPercentage',
      /a percentage above 0 and at most 100, got 0/,
    ],
    [
      'samplingPercentage 150',
      () => createGraph({ monitoring: { samplingPercentage: 150 } }),
      'createGraph.monitoring.samplingPercentage',
      /got 150/,
    ],
    [
      'samplingPercentage as a string',
      () => createGraph({ monitoring: { samplingPercentage: '50' as never } }),
      'createGraph.monitoring.samplingPercentage',
      /got "50"/,
    ],
    [
      'registryPath as a number',
      () => createGraph({ monitoring: { registryPath: 5 as never } }),
      'createGraph.monitoring.registryPath',
      /non-empty string, got 5/,
    ],
    [
      'an unknown monitoring option',
      () => createGraph({ monitoring: { sampling: 5 } as never }),
      'createGraph.monitoring.sampling',
      /unknown field 'sampling' \(known fields: samplingPercentage, registryPath\)/,
    ],
    [
      'configurePoolResource with -1',
      () => createGraph().configurePoolResource({ maxThreads: -1 }),
      'graph.configurePoolResource.maxThreads',
      /positive integer, got -1/,
    ],
    [
      'addSharedModel without config',
      () => createGraph().addSharedModel(undefined as never),
      'addSharedModel',
      /expected SharedModelConfig, got undefined/,
    ],
    [
      'addSharedModel without a name',
      () => createGraph().addSharedModel({ modelClass: 'Model', executionMechanism: 'naive' } as never),
      'addSharedModel.name',
      /non-empty string, got undefined/,
    ],
    [
      "addSharedModel on 'shared_executor'",
      () => createGraph().addSharedModel({ name: 's', modelClass: 'Model', executionMechanism: 'shared_executor' as never }),
      'addSharedModel.executionMechanism',
      /that is what its proxies use/,
    ],
    [
      'addSharedModel on an unknown mechanism',
      () => createGraph().addSharedModel({ name: 's', modelClass: 'Model', executionMechanism: 'gpu' as never }),
      'addSharedModel[0].executionMechanism',
      /got "gpu"/,
    ],
    [
      'addSharedModel with a bad class',
      () => createGraph().addSharedModel({ name: 's', modelClass: 42 as never, executionMechanism: 'naive' }),
      'addSharedModel[0].modelClass',
      /got 42/,
    ],
    [
      'addSharedModel twice under one name',
      () => {
        const graph = withShared();
        graph.addSharedModel({ name: 'llm', modelClass: 'Model', executionMechanism: 'naive' });
      },
      'addSharedModel.name',
      /a name not used by another shared model \(or override: true\), got 'llm'/,
    ],
    // The entry's artifact codec (before: a codec of its own took '' and the shared model went without its artifact).
    [
      'addSharedModel with an empty artifact path',
      () => createGraph().addSharedModel({ name: 's', modelClass: 'Model', executionMechanism: 'naive', modelArtifact: '' }),
      'addSharedModel.modelArtifact',
      /an artifact, or the path or file: URL of its JSON file, got ""/,
    ],
    [
      'addSharedModel with a proxy-only field',
      () => createGraph().addSharedModel({ name: 's', modelClass: 'Model', executionMechanism: 'naive', labels: {} } as never),
      'addSharedModel.labels',
      /unknown field 'labels'/,
    ],
    [
      'a proxy without config',
      () => createGraph().sharedModelProxy(undefined as never),
      'sharedModelProxy',
      /expected SharedModelProxyConfig, got undefined/,
    ],
    [
      'a proxy naming nothing to find',
      () => withShared().sharedModelProxy({ endpointName: 'p' }),
      'sharedModelProxy',
      /a modelArtifact or a sharedModelName/,
    ],
    [
      'a proxy naming an unknown shared model',
      () => withShared().sharedModelProxy({ endpointName: 'p', sharedModelName: 'zz' }),
      'sharedModelProxy.sharedModelName',
      /the name of a shared model \(shared: 'llm' \(uri 'store:\/\/models\/base'\)\), got 'zz'/,
    ],
    [
      'a proxy with an artifact no shared model has',
      () => withShared().sharedModelProxy({ endpointName: 'p', modelArtifact: modelArtifact({ key: 'other', modelUrl: 'mock://' }) }),
      'sharedModelProxy.modelArtifact',
      /got uri 'store:\/\/models\/other'/,
    ],
    [
      'a proxy whose artifact and name disagree',
      () => {
        const graph = withShared();
        graph.addSharedModel({ name: 'other', modelClass: 'Model', executionMechanism: 'naive' });
        graph.sharedModelProxy({
          endpointName: 'p',
          modelArtifact: modelArtifact({ key: 'base', modelUrl: 'mock://' }),
          sharedModelName: 'other',
        });
      },
      'sharedModelProxy.sharedModelName',
      /'llm', the shared model whose artifact is 'store:\/\/models\/base'/,
    ],
    [
      'a proxy used in a step of another graph',
      () => {
        const proxy = withShared().sharedModelProxy({ endpointName: 'p', sharedModelName: 'llm' });
        createGraph({ name: 'other' }).modelRunner({ models: [proxy] });
      },
      "model_runner.models['p'].sharedModelName",
      /a shared model of graph 'other' \(shared: none\), got 'llm'/,
    ],
    [
      'one endpoint name in two steps of a graph',
      () => {
        const graph = createGraph({ name: 'g' });
        graph.modelRunner({ models: [ok] });
        graph.modelRunner({ name: 'second', models: [ok] });
      },
      'second.models',
      /endpoint names unique across graph 'g', got 'm' used by step 'model_runner' and by step 'second'/,
    ],
  ];
  it.each(cases)('%s', (_label, fn, path, message) => expectConfigError(fn, path, message));

  it('a step of a closed graph is refused', async () => {
    const graph = createGraph({ name: 'g' });
    await graph.close();
    expect(() => graph.modelRunner({ models: [ok] })).toThrow(/graph 'g' is closed; create a new graph/);
  });

  it('prometheusExporter and traceGraph check their graph and options', async () => {
    const graph = createGraph();
    const rejects = async (promise: Promise<unknown>, path: string, message: RegExp) => {
      const error = await promise.then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(ConfigError);
      expect((error as ConfigError).path).toBe(path);
      expect((error as Error).message).toMatch(message);
    };
    await rejects(prometheusExporter(undefined as never), 'prometheusExporter.graph', /a graph made by createGraph\(\), got undefined/);
    await rejects(
      prometheusExporter(graph, { prefix: 'bad prefix!' }),
      'prometheusExporter.options.prefix',
      /a metric name prefix .*got "bad prefix!"/,
    );
    await rejects(
      prometheusExporter(graph, { buckets: 'x' as never }),
      'prometheusExporter.options.buckets',
      /increasing positive numbers, got "x"/,
    );
    await rejects(prometheusExporter(graph, { buckets: [1, 0.5] }), 'prometheusExporter.options.buckets', /got \[1,0\.5\]/);
    await rejects(prometheusExporter(graph, { registry: {} as never }), 'prometheusExporter.options.registry', /a prom-client Registry/);
    await rejects(
      prometheusExporter(graph, { prefix: 'x_', extra: 1 } as never),
      'prometheusExporter.options.extra',
      /unknown field 'extra'/,
    );
    await rejects(traceGraph({} as never), 'traceGraph.graph', /a graph made by createGraph\(\), got \{\}/);
    await rejects(traceGraph(graph, { tracer: {} as never }), 'traceGraph.options.tracer', /an OpenTelemetry Tracer/);
    // and the good ones still work
    const exporter = await prometheusExporter(graph, { prefix: 'ok_', buckets: [0.1, 1] });
    exporter.detach();
    (await traceGraph(graph))();
  });
});

// ---- LLModel artifacts ---------------------------------------------------------------------------

describe('serve() options', () => {
  it('a port above 65535 is refused before anything listens, naming serve.port (the spec checked this; serve() did not)', async () => {
    const error = await serve((events) => events, { port: 70_000 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).issues.map((issue) => issue.path)).toEqual(['serve.port']);
    expect((error as Error).message).toMatch(/a port number \(0 to 65535; 0 picks a free port\), got 70000/);
  });

  it('metrics: true without prom-client installed (an optional peer) is a ConfigError at serve.metrics saying how to add it', async () => {
    const { execFile } = await import('node:child_process');
    const { fileURLToPath } = await import('node:url');
    const script = fileURLToPath(new URL('./fixtures/withoutPromClient.mjs', import.meta.url));
    const entry = new URL('../dist/index.js', import.meta.url).href; // the built package, as an application loads it
    const stdout = await new Promise<string>((resolve, reject) =>
      execFile(process.execPath, [script, entry], { timeout: 20_000 }, (error, out, err) =>
        error ? reject(new Error(`${error.message}\n${err}`)) : resolve(out),
      ),
    );
    const { fromServe, fromExporter } = JSON.parse(stdout) as Record<string, { name: string; path: string; message: string }>;
    expect(fromServe).toMatchObject({ name: 'ConfigError', path: 'serve.metrics' });
    expect(fromServe!.message).toMatch(
      /^serve\.metrics: expected the optional peer dependency 'prom-client' installed \(npm install prom-client@\^15\), got it cannot be loaded \(Cannot find package 'prom-client'/,
    );
    expect(fromExporter).toMatchObject({ name: 'ConfigError', path: 'prometheusExporter' });
  }, 30_000);

  it('names that are no endpoint of the graph (openai.models, models) are ConfigErrors naming the path, with a did-you-mean; nothing listens', async () => {
    const graph = createGraph({ name: 'g' });
    const pipeline = graph.modelRunner({
      name: 'llms',
      models: [
        { endpointName: 'chat', modelClass: 'Model', executionMechanism: 'naive' },
        { ...ok, endpointName: 'score' },
      ],
    });
    const typo = await serve(pipeline, { graph, port: 0, openai: { models: { x: 'chatt' } } }).catch((e: unknown) => e);
    expect(typo).toBeInstanceOf(ConfigError);
    expect((typo as ConfigError).path).toBe('serve.openai.models.x');
    expect((typo as Error).message).toBe(
      "serve.openai.models.x: expected an endpoint of graph 'g' (endpoints: 'chat', 'score'), got 'chatt' (did you mean 'chat'?)",
    );
    const ghost = await serve(pipeline, { graph, port: 0, models: ['score', 'ghost', 'Chat'] }).catch((e: unknown) => e);
    expect(ghost).toBeInstanceOf(ConfigError);
    expect((ghost as ConfigError).issues.map((i) => [i.path, i.actual])).toEqual([
      ['serve.models[1]', "'ghost'"],
      ['serve.models[2]', "'Chat' (did you mean 'chat'?)"],
    ]);
    // The same checks on the plugin, under its own name.
    const { default: Fastify } = await import('fastify');
    const app = Fastify();
    await expect(app.register(rxservePlugin, { pipeline, graph, models: ['scor'] }).ready()).rejects.toThrow(
      /rxservePlugin\.models\[0\]: expected an endpoint of graph 'g' .*got 'scor' \(did you mean 'score'\?\)/,
    );
    await app.close();
    // Right names pass.
    const server = await serve(pipeline, { graph, port: 0, models: ['score'], openai: { models: { 'gpt-x': 'chat' } } });
    await server.close();
  });
});

describe('LLModel artifacts', () => {
  const base = { key: 'gpt', modelUrl: 'mock://' };
  const cases: [string, () => unknown, string, RegExp][] = [
    ['modelArtifact without spec', () => modelArtifact(undefined as never), 'modelArtifact', /expected ModelArtifact, got undefined/],
    [
      'modelArtifact without key',
      () => modelArtifact({ modelUrl: 'mock://' } as never),
      'modelArtifact.key',
      /non-empty string, got undefined/,
    ],
    ['modelArtifact with a numeric modelUrl', () => modelArtifact({ key: 'k', modelUrl: 5 as never }), 'modelArtifact.modelUrl', /got 5/],
    [
      'modelArtifact with a numeric apiKey',
      () => modelArtifact({ ...base, providerOptions: { apiKey: 5 as never } }),
      'modelArtifact.providerOptions.apiKey',
      /expected string, got 5/,
    ],
    [
      'modelArtifact with an unknown provider option',
      () => modelArtifact({ ...base, providerOptions: { key: 'x' } as never }),
      'modelArtifact.providerOptions.key',
      /unknown field 'key'/,
    ],
    [
      'modelArtifact with defaultConfig as a string',
      () => modelArtifact({ ...base, defaultConfig: 'hot' as never }),
      'modelArtifact.defaultConfig',
      /got "hot"/,
    ],
    [
      'llmPromptArtifact without model',
      () => llmPromptArtifact({ key: 'p' } as never),
      'llmPromptArtifact.model',
      /expected ModelArtifact, got undefined/,
    ],
    [
      'llmPromptArtifact with an empty model',
      () => llmPromptArtifact({ key: 'p', model: {} as never }),
      'llmPromptArtifact.model.key',
      /non-empty string/,
    ],
    [
      'llmPromptArtifact with a bad model field',
      () => llmPromptArtifact({ key: 'p', model: { ...base, modelUrl: '' } }),
      'llmPromptArtifact.model.modelUrl',
      /non-empty string, got ""/,
    ],
    [
      'a template message without content',
      () => llmPromptArtifact({ key: 'p', model: base, promptTemplate: [{ role: 'user' } as never] }),
      'llmPromptArtifact.promptTemplate[0].content',
      /expected string, got undefined/,
    ],
    [
      'a template as a string',
      () => llmPromptArtifact({ key: 'p', model: base, promptTemplate: 'hi' as never }),
      'llmPromptArtifact.promptTemplate',
      /Array<\{ role, content \}>, got "hi"/,
    ],
    [
      'a legend field as a number',
      () => llmPromptArtifact({ key: 'p', model: base, promptLegend: { q: { field: 5 } } as never }),
      'llmPromptArtifact.promptLegend.q.field',
      /expected string, got 5/,
    ],
  ];
  it.each(cases)('%s', (_label, fn, path, message) => expectConfigError(fn, path, message));

  it.each(['asyncio', 'thread_pool'] as const)(
    'on %s, an unknown provider scheme fails the load naming the model and the URL',
    async (mechanism) => {
      const entry: ModelEntry = {
        endpointName: 'llm',
        modelClass: 'LLModel',
        executionMechanism: mechanism,
        modelArtifact: modelArtifact({ key: 'k', modelUrl: 'ftp://x' }),
      };
      await expect(run([{}], modelRunner({ models: [entry] }))).rejects.toSatisfy(
        (e: unknown) =>
          e instanceof ModelLoadError &&
          /^model 'llm' could not be loaded: LLModel 'llm'\.artifact\.modelUrl: expected a URL with a known provider.*got "ftp:\/\/x"$/.test(
            (e as Error).message,
          ),
      );
    },
  );

  it('an LLModel without an artifact says so once', async () => {
    await expect(
      run([{}], modelRunner({ models: [{ endpointName: 'llm', modelClass: 'LLModel', executionMechanism: 'asyncio' }] })),
    ).rejects.toThrow(/^model 'llm' could not be loaded: the model provider could not be determined \(no model artifact with a modelUrl\)/);
  });

  it('an input missing a placeholder fails that event naming the endpoint, prompt and field; others answer', async () => {
    const prompt = llmPromptArtifact({ key: 'p', model: base, promptTemplate: [{ role: 'user', content: 'Q: {question}' }] });
    const out = await run(
      [{ question: 'one' }, { q: 'typo' }, { question: 'three' }],
      modelRunner({
        models: [
          { endpointName: 'llm', modelClass: 'LLModel', executionMechanism: 'asyncio', modelArtifact: prompt, resultPath: 'output' },
        ],
      }),
    );
    expect((out[1].error as ModelRunnerError).modelsErrors).toEqual({
      llm: "TypeError: LLModel 'llm': prompt 'p' has placeholder {question}, but the input has no field 'question'",
    });
    expect(out[0].error).toBeUndefined();
    expect(out[2].error).toBeUndefined();
    expect((out[2].body as { output: { answer: string } }).output.answer).toEqual(expect.any(String));
  });
});

// ---- bodies that cannot be cloned to a worker ----------------------------------------------------

/** `{ a: x, b: x }` with x pointing back at the object: a cycle reached twice at every level. */
function circularTwice(): Record<string, unknown> {
  const value: Record<string, unknown> = { v: 'c' };
  value.a = value;
  value.b = value;
  return value;
}

describe('event bodies that cannot be cloned to a worker', () => {
  const bad = () => [
    { value: 1 },
    { value: 2, callback: () => 'x' },
    circularTwice(),
    { value: 4, nested: { list: [1, { tag: Symbol('t') }] } },
    { value: 5, pending: Promise.resolve(5) },
    Symbol('top'),
    { value: 7 },
    { value: 8 },
  ];
  const errorOf = (e: ServingEvent) => (e.error as ModelRunnerError | undefined)?.modelsErrors?.m;
  const where = (e: ServingEvent) => e.body as { pid: number; threadId: number };

  it.each(WORKER_MECHANISMS)('%s: each such event fails alone with a TypeError naming the model and the field', async (mechanism) => {
    // many events at once, so calls are batched while the workers are busy
    const out = await run(
      [{ value: 0 }, ...bad(), ...bad(), { value: 9 }],
      modelRunner({ models: [{ endpointName: 'm', modelClass: ref('Echo'), executionMechanism: mechanism }], maxInFlight: 32 }),
    );
    expect(out.map((e) => e.id)).toEqual(Array.from({ length: 18 }, (_, i) => `e${i}`));
    const kind = mechanism === 'thread_pool' ? 'thread' : 'process';
    for (const offset of [1, 9]) {
      const batch = out.slice(offset, offset + 8);
      expect(errorOf(batch[1])).toBe(
        `TypeError: the input of model 'm' cannot be copied to a worker ${kind}: input.callback is a function, which structured clone cannot copy`,
      );
      expect(errorOf(batch[3])).toBe(
        `TypeError: the input of model 'm' cannot be copied to a worker ${kind}: input.nested.list[1].tag is a symbol, which structured clone cannot copy`,
      );
      expect(errorOf(batch[4])).toBe(
        `TypeError: the input of model 'm' cannot be copied to a worker ${kind}: input.pending is a Promise, which structured clone cannot copy`,
      );
      expect(errorOf(batch[5])).toBe(
        `TypeError: the input of model 'm' cannot be copied to a worker ${kind}: input is a symbol, which structured clone cannot copy`,
      );
      // a cycle is fine: structured clone keeps it
      const cyclic = batch[2].body as { echo: { v: string; a: unknown; b: unknown } };
      expect(batch[2].error).toBeUndefined();
      expect(cyclic.echo.v).toBe('c');
      expect(cyclic.echo.a).toBe(cyclic.echo);
      for (const i of [0, 6, 7]) {
        expect(batch[i].error).toBeUndefined();
        expect((batch[i].body as { echo: unknown }).echo).toEqual(bad()[i]);
      }
    }
    // no worker was lost to the bad events: the last event ran in a thread or process that had served before
    const worker = (e: ServingEvent) => `${where(e).pid}/${where(e).threadId}`;
    expect(
      out
        .slice(0, 17)
        .filter((e) => !e.error)
        .map(worker),
    ).toContain(worker(out[17]));
  });

  it('thread_pool, one call at a time: bodies past the quick look (big, typed arrays, class instances) get the full inspection', async () => {
    // One call at a time, the low-load path: each input is looked at first for small plain data
    // (threadPool.ts prepareForThread); past 256 values, or anything not plain, the full
    // inspection must still name what cannot cross, and typed arrays still reach the model.
    class Point {
      x = 1;
    }
    const bodies = [
      { rows: Array.from({ length: 300 }, (_, i) => ({ i })), late: () => 1 },
      { list: [...Array.from({ length: 400 }, () => 1), Symbol('s')] },
      { plain: { a: [1, 'x', true, null] } },
      { data: new Float32Array([1, 2, 3]) },
      Object.assign(new Point(), { f: () => 0 }),
      { value: 5 },
    ];
    const out = await run(
      bodies,
      modelRunner({ models: [{ endpointName: 'm', modelClass: ref('Echo'), executionMechanism: 'thread_pool' }], maxInFlight: 1 }),
    );
    const cannot = (what: string) =>
      `TypeError: the input of model 'm' cannot be copied to a worker thread: ${what}, which structured clone cannot copy`;
    expect(errorOf(out[0])).toBe(cannot('input.late is a function'));
    expect(errorOf(out[1])).toBe(cannot('input.list[400] is a symbol'));
    expect((out[2].body as { echo: unknown }).echo).toEqual({ plain: { a: [1, 'x', true, null] } });
    expect((out[3].body as { echo: { data: Float32Array } }).echo.data).toEqual(new Float32Array([1, 2, 3]));
    expect((bodies[3] as { data: Float32Array }).data).toEqual(new Float32Array([1, 2, 3])); // the event's own array is not detached
    expect(errorOf(out[4])).toBe(cannot('input.f is a function'));
    expect((out[5].body as { echo: unknown }).echo).toEqual({ value: 5 });
  });

  it.each(['naive', 'asyncio'] as const)(
    '%s: a function or a Promise fails that event naming where; a cycle and a symbol are copied in process',
    async (mechanism) => {
      const out = await run(
        bad(),
        modelRunner({ models: [{ endpointName: 'm', modelClass: ref('Echo'), executionMechanism: mechanism }] }),
      );
      expect(out).toHaveLength(8);
      expect(errorOf(out[1])).toBe(
        'TypeError: cannot copy the model input: input.callback is a function, which structured clone cannot copy',
      );
      expect(errorOf(out[4])).toBe(
        'TypeError: cannot copy the model input: input.pending is a Promise, which structured clone cannot copy',
      );
      const cyclic = out[2].body as { echo: { a: unknown; b: unknown } };
      expect(cyclic.echo.a).toBe(cyclic.echo); // the copy keeps the cycle
      expect(cyclic.echo.b).toBe(cyclic.echo);
      for (const i of [0, 3, 5, 6, 7]) expect(out[i].error).toBeUndefined();
    },
  );

  it.each(WORKER_MECHANISMS)('%s: an output that cannot be sent back fails that call only; the worker keeps serving', async (mechanism) => {
    const out = await run(
      [{ value: 0 }, { give: 'function' }, { give: 'symbol' }, { give: 'promise' }, { value: 4 }, { value: 5 }],
      modelRunner({ models: [{ endpointName: 'm', modelClass: ref('BadOutput'), executionMechanism: mechanism }], maxInFlight: 32 }),
    );
    expect(out.map((e) => e.id)).toEqual(['e0', 'e1', 'e2', 'e3', 'e4', 'e5']);
    const kind = mechanism === 'thread_pool' ? 'thread' : 'process';
    const message = (what: string) =>
      `TypeError: the output of model 'm' cannot be copied back from its worker ${kind}: output.result is ${what}, which structured clone cannot copy`;
    expect(errorOf(out[1])).toBe(message('a function'));
    expect(errorOf(out[2])).toBe(message('a symbol'));
    expect(errorOf(out[3])).toBe(message('a Promise'));
    expect(out.filter((e) => !e.error).map((e) => e.body)).toEqual([{ echo: 0 }, { echo: 4 }, { echo: 5 }]);
  });
});
