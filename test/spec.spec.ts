// Declarative graphs (docs/design.md §14): every field through loadGraph, the same graph by hand, bad specs, the JSON Schema.
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { from, lastValueFrom, pipe, toArray } from 'rxjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { ConfigError, createGraph, loadArtifact, loadGraph, onError, step, toEvent, type ServingEvent } from '../src/index.js';
import { MONITORING } from '../src/monitoring/monitor.js';
import { readSpec } from '../src/spec/load.js';
import { finite, type StrictType } from '../src/decode.js';
import { PoolOptionsCodec } from '../src/execution/poolOptions.js';
import { GraphOptionsCodec, MonitoringOptionsCodec, ProxyCodec, SharedModelCodec } from '../src/graph/graphOptions.js';
import { ModelEntryCodec } from '../src/model/entry.js';
import { ModelRunnerConfigCodec } from '../src/operators/modelRunner.js';
import { OnErrorOptionsCodec } from '../src/operators/onError.js';
import { RouterConfigCodec } from '../src/operators/router.js';
import { StepOptionsCodec } from '../src/operators/step.js';
import { ServeOptionsCodec } from '../src/serve/serve.js';
import {
  BatchHttpRequestsSpec,
  FunctionStepSpec,
  GraphSpec,
  ModelRunnerSpec,
  ModelSpec,
  OnErrorSpec,
  ProxySpec,
  QueueStepSpec,
  RemoteStepSpec,
  SharedModelSpec,
  specSchema,
} from '../src/spec/graphSpec.js';
import { RedisStreamOptionsCodec } from '../src/streams/options.js';
import { HttpStepOptionsCodec } from '../src/operators/internal/http.js';
import { QueueStepOptionsCodec } from '../src/streams/queueStep.js';

const fixtures = fileURLToPath(new URL('./fixtures/spec/', import.meta.url));
let dir: string;

beforeAll(() => {
  // A copy: the spec's registryPath (relative to the spec) is written when the graph closes.
  dir = mkdtempSync(join(tmpdir(), 'rxserve-spec-'));
  cpSync(fixtures, dir, { recursive: true });
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const events = () => [
  toEvent({ x: 3 }, { id: 'a', headers: { 'x-route': 'high' } }), // small, high
  toEvent({ x: 20 }, { id: 'b', headers: { 'x-route': 'low' } }), // big (shared), low
  toEvent({ x: 'oops' }, { id: 'c', headers: { 'x-route': 'high' } }), // fails in prepare, recovered
  toEvent({ x: 5 }, { id: 'd' }), // no route: the default route
];

const run = async (pipeline: (s: any) => any) => {
  const out: ServingEvent[] = await lastValueFrom(from(events()).pipe(pipeline, toArray()));
  return out.map((e) => ({ id: e.id, body: e.body, error: e.error?.message })).sort((a, b) => a.id.localeCompare(b.id));
};

/** A spec written to a file in the copy; returns its path. */
const specFile = (name: string, text: string) => {
  const file = join(dir, name);
  writeFileSync(file, text);
  return file;
};

/** The ConfigError a spec is rejected with. */
const rejection = async (spec: string | object, options = {}): Promise<ConfigError> => {
  try {
    const { graph } = await loadGraph(spec, options);
    await graph.close();
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error('the spec was accepted');
};

describe('loadGraph: every field of a spec', () => {
  it('builds the graph the YAML file describes, and the same graph written by hand behaves identically', async () => {
    const { graph, pipeline } = await loadGraph(join(dir, 'full.yaml'));
    expect(graph.name).toBe('scoring');
    await graph.ready();
    // Endpoints: the models and the proxy (not the router's routes), with what each model entry said.
    expect(
      graph
        .endpointNames()
        .map((u) => u.endpointName)
        .sort(),
    ).toEqual(['big', 'small']);
    expect(graph.endpoint('small')).toMatchObject({
      step: 'scorers',
      executionMechanism: 'naive',
      inputs: ['x'],
      outputs: ['y'],
      labels: { team: 'risk' },
      modelClass: `${pathToFileURL(join(dir, 'models.mjs')).href}#Times`,
    });
    expect(graph.endpoint('big')).toMatchObject({ executionMechanism: 'shared_executor', labels: ['big'], inputs: ['x'], outputs: ['y'] });
    expect(graph.endpoint('high')).toBeUndefined();
    expect(graph[MONITORING].describe().routers).toEqual([{ step: 'by-route', routes: ['high', 'low'] }]);
    const fromSpec = await run(pipeline);
    await graph.close();
    // monitoring.registryPath is relative to the spec's folder.
    expect(existsSync(join(dir, 'endpoints.json'))).toBe(true);

    // The same graph by hand.
    const fns = await import(pathToFileURL(join(dir, 'functions.mjs')).href);
    const times = { module: pathToFileURL(join(dir, 'models.mjs')).href, export: 'Times' };
    const byHand = createGraph({ name: 'scoring', monitoring: { samplingPercentage: 100, registryPath: join(dir, 'by-hand.json') } });
    byHand.configurePoolResource({ maxThreads: 2, maxProcesses: 1, poolFactor: 1 });
    byHand.addSharedModel({
      name: 'shared-times',
      modelClass: times,
      executionMechanism: 'asyncio',
      modelArtifact: await loadArtifact(join(dir, 'scaler.artifact.json')),
      inputs: ['x'],
      outputs: ['y'],
      inputPath: 'x',
      resultPath: 'y',
      params: { factor: 100 },
      maxInFlight: 4,
    });
    const handPipeline = pipe(
      step(fns.prepare, { name: 'prepare', inputPath: 'x', resultPath: 'x', maxInFlight: 2, maxQueue: 10, ordered: true }),
      byHand.modelRunner({
        name: 'scorers',
        selector: fns.BySize,
        selectorParams: { threshold: 10 },
        raiseException: true,
        ordered: true,
        maxInFlight: 8,
        maxQueue: 100,
        pool: { maxThreads: 1, maxProcesses: 1, poolFactor: 1, maxBatch: 4, cancelGraceMs: 100 },
        models: [
          {
            endpointName: 'small',
            modelClass: times,
            executionMechanism: 'naive',
            modelArtifact: { key: 'small', modelUrl: 'mock://' },
            labels: { team: 'risk' },
            creationStrategy: 'inplace',
            inputs: ['x'],
            outputs: ['y'],
            inputPath: 'x',
            resultPath: 'y',
            params: { factor: 2 },
            maxInFlight: 2,
            timeoutMs: 5000,
          },
          byHand.sharedModelProxy({ endpointName: 'big', sharedModelName: 'shared-times', labels: ['big'], creationStrategy: 'overwrite' }),
        ],
      }),
      byHand.router({
        name: 'by-route',
        key: (e) => e.headers?.['x-route'],
        routes: { high: step(fns.tagHigh), low: step(fns.tagLow) },
        defaultRoute: 'low',
        idleMs: 60000,
      }),
      onError(fns.recover, { name: 'recover' }),
    );
    await byHand.ready();
    const byHandOut = await run(handPipeline);
    await byHand.close();

    expect(fromSpec).toEqual(byHandOut);
    expect(fromSpec).toEqual([
      { id: 'a', body: { small: { x: 4, y: 8 }, tag: 'high' }, error: undefined },
      { id: 'b', body: { big: { x: 21, y: 2100 }, tag: 'low' }, error: undefined },
      { id: 'c', body: { recovered: 'TypeError: x must be a number, got "oops"', origin: 'prepare' }, error: undefined },
      { id: 'd', body: { small: { x: 6, y: 12 }, tag: 'low' }, error: undefined },
    ]);
  });

  it('reads serve: and source: (used by the rxserve command)', async () => {
    const { spec } = await readSpec(join(dir, 'full.yaml'));
    expect(spec.serve).toEqual({
      port: 0,
      host: '127.0.0.1',
      maxBodyBytes: 1048576,
      timeoutMs: 10000,
      models: ['small', 'big'],
      apiKeys: ['secret'],
    });
    expect(spec.source).toEqual({
      redis: {
        url: 'redis://127.0.0.1:6379',
        stream: 'requests',
        group: 'scorers',
        consumer: 'c1',
        field: 'body',
        maxBodyDepth: 64,
        startId: '0',
        maxInFlight: 16,
        batchSize: 8,
        blockMs: 100,
        claimIdleMs: 1000,
        maxDeliveries: 3,
        deadLetterStream: 'requests-dead',
        closeTimeoutMs: 1000,
      },
      output: 'scores',
    });
  });

  it('takes a spec object, its relative modules resolved against baseDir; a JSON file too', async () => {
    const spec = {
      steps: [
        { step: { module: './functions.mjs', export: 'tagLow' } },
        { router: { key: { module: './functions.mjs', export: 'routeOf' }, routes: { r: [] } } },
      ],
    };
    const { graph, pipeline } = await loadGraph(spec, { baseDir: dir });
    const out = await lastValueFrom(from([toEvent({ n: 1 }, { headers: { 'x-route': 'r' } })]).pipe(pipeline, toArray()));
    expect(out.map((e) => e.body)).toEqual([{ n: 1, tag: 'low' }]);
    await graph.close();
    const json = specFile('graph.json', JSON.stringify(spec));
    const loaded = await loadGraph(json);
    expect((await lastValueFrom(from([toEvent({ n: 2 })]).pipe(loaded.pipeline, toArray())))[0].error?.name).toBe('RouteNotFoundError');
    await loaded.graph.close();
  });

  it("a router's key path that names an object or array fails that event naming the path, not RouteNotFoundError for '[object Object]'", async () => {
    const spec = { steps: [{ router: { key: 'body.route', routes: { a: [], '[object Object]': [] } } }] };
    const { graph, pipeline } = await loadGraph(spec, { baseDir: dir });
    const bodies = [{ route: { nested: 1 } }, { route: ['a'] }, { route: 'a' }, { route: 7 }];
    const out = await lastValueFrom(from(bodies.map((b) => toEvent(b))).pipe(pipeline, toArray()));
    expect(out.map((e) => [e.error?.name, e.error?.message])).toEqual([
      ['TypeError', "steps[0].router.key: 'body.route' names an object in the event, not a route key (a string, number or boolean)"],
      ['TypeError', "steps[0].router.key: 'body.route' names an array in the event, not a route key (a string, number or boolean)"],
      [undefined, undefined],
      ['RouteNotFoundError', "router 'router': no route for key '7'; available routes: 'a', '[object Object]'"],
    ]);
    await graph.close();
  });
});

describe('loadGraph: dynamic batching', () => {
  it('a model entry takes batching (the spec said nothing of it before): batches form; a bad value names its path', async () => {
    const batchModels = fileURLToPath(new URL('./fixtures/batchModels.mjs', import.meta.url));
    const spec = {
      steps: [
        {
          modelRunner: {
            models: [
              {
                endpointName: 'd',
                modelClass: { module: batchModels, export: 'Doubler' },
                executionMechanism: 'asyncio',
                batching: { maxBatchSize: 4, maxWaitMs: 20 },
              },
            ],
          },
        },
      ],
    };
    const { graph, pipeline } = await loadGraph(spec);
    const out = await lastValueFrom(from([1, 2, 3, 4].map((x) => toEvent({ x }))).pipe(pipeline, toArray()));
    expect(out.map((e) => (e.body as { y: number; size: number }).y)).toEqual([2, 4, 6, 8]);
    expect(out.map((e) => (e.body as { size: number }).size)).toEqual([4, 4, 4, 4]);
    await graph.close();
    const bad = {
      steps: [{ modelRunner: { models: [{ ...spec.steps[0].modelRunner.models[0], batching: { maxBatchSize: 0, maxWaitMs: 1 } }] } }],
    };
    await expect(loadGraph(bad)).rejects.toThrow(/steps\[0\]\.modelRunner\.models\[0\]\.batching\.maxBatchSize/);
  });
});

describe('loadGraph from the built package', () => {
  it("require('rxserve').loadGraph imports a spec's .mjs modules too (the CommonJS build)", () => {
    const root = fileURLToPath(new URL('..', import.meta.url));
    const out = execFileSync(
      process.execPath,
      [
        '-e',
        `const { loadGraph, toEvent } = require('rxserve');
         const { from, lastValueFrom } = require('rxjs');
         loadGraph({ steps: [{ step: { module: './functions.mjs', export: 'tagLow' } }] }, { baseDir: ${JSON.stringify(fixtures)} })
           .then(async ({ graph, pipeline }) => {
             const out = await lastValueFrom(from([toEvent({ n: 1 })]).pipe(pipeline));
             console.log(JSON.stringify(out.body));
             await graph.close();
           });`,
      ],
      { cwd: root, encoding: 'utf8' },
    );
    expect(JSON.parse(out)).toEqual({ n: 1, tag: 'low' });
  });
});

describe('loadGraph: bad specs name the path inside the file', () => {
  const base = (models: string) => `name: bad
steps:
  - modelRunner:
      models:
${models}`;

  it('an unknown key, with its YAML line', async () => {
    const file = specFile(
      'unknown.yaml',
      base(`        - endpointName: a
          modelClass: { module: ./models.mjs, export: Times }
          executionMechanism: naive
          parms: { factor: 2 }
`),
    );
    const error = await rejection(file);
    expect(error.path).toBe('steps[0].modelRunner.models[0].parms');
    expect(error.message).toContain('unknown.yaml: line 8: steps[0].modelRunner.models[0].parms: unknown field');
  });

  it('a wrong type, with its YAML line', async () => {
    const file = specFile(
      'type.yaml',
      base(`        - { endpointName: a, modelClass: { module: ./models.mjs, export: Times }, executionMechanism: naive }
        - endpointName: b
          modelClass: { module: ./models.mjs, export: Times }
          executionMechanism: threads
`),
    );
    const error = await rejection(file);
    expect(error.path).toBe('steps[0].modelRunner.models[1].executionMechanism');
    expect(error.message).toContain('line 8: steps[0].modelRunner.models[1].executionMechanism: expected');
    expect(error.message).toContain('got "threads"');
  });

  it('every failing path at once, deep inside a router route', async () => {
    const error = await rejection(
      {
        name: '',
        steps: [
          { step: { module: './functions.mjs', export: 'tagLow' } },
          {
            router: {
              key: 'body.route',
              routes: {
                low: [{ modelRunner: { models: [{ endpointName: 'm', modelClass: 'X', executionMechanism: 'naive', params: 3 }] } }],
              },
            },
          },
        ],
      },
      { baseDir: dir },
    );
    expect(error.issues.map((i) => i.path).sort()).toEqual(['name', 'steps[1].router.routes.low[0].modelRunner.models[0].params']);
  });

  it('a step that is two kinds at once, or none', async () => {
    const two = await rejection(
      { steps: [{ step: { module: './functions.mjs' }, onError: { module: './functions.mjs' } }] },
      { baseDir: dir },
    );
    expect(two.message).toContain(
      'steps[0]: a step is exactly one of modelRunner, router, modelRouter, parallelRun, votingEnsemble, step, onError, remoteStep, batchHttpRequests, queueStep; got step and onError',
    );
    const typo = await rejection({ steps: [{ modelRuner: { models: [] } }] }, { baseDir: dir });
    expect(typo.path).toBe('steps[0].modelRuner');
  });

  it('a missing module, a missing export, an export that is not a function', async () => {
    const missing = await rejection({ steps: [{ step: { module: './nope.mjs', export: 'f' } }] }, { baseDir: dir });
    expect(missing.path).toBe('steps[0].step.module');
    expect(missing.message).toContain("'./nope.mjs'");
    const modelModule = await rejection(
      { steps: [{ modelRunner: { models: [{ endpointName: 'a', modelClass: { module: './gone.mjs' }, executionMechanism: 'naive' }] } }] },
      { baseDir: dir },
    );
    expect(modelModule.path).toBe('steps[0].modelRunner.models[0].modelClass.module');
    const noExport = await rejection({ steps: [{ step: { module: './functions.mjs', export: 'nothing' } }] }, { baseDir: dir });
    expect(noExport.path).toBe('steps[0].step.export');
    expect(noExport.message).toContain('prepare');
    const notFn = await rejection({ steps: [{ onError: { module: './functions.mjs', export: 'notAFunction' } }] }, { baseDir: dir });
    expect(notFn.path).toBe('steps[0].onError.export');
  });

  it('an unknown selector name', async () => {
    const error = await rejection({
      steps: [
        {
          modelRunner: {
            selector: 'NoSuchSelector',
            models: [{ endpointName: 'a', modelClass: 'LLModel', executionMechanism: 'asyncio' }],
          },
        },
      ],
    });
    expect(error.path).toBe('steps[0].modelRunner.selector');
    expect(error.message).toContain("'NoSuchSelector'");
  });

  it('duplicate endpoint names, naming both places', async () => {
    const model = { endpointName: 'a', modelClass: { module: './models.mjs', export: 'Times' }, executionMechanism: 'naive' };
    const error = await rejection(
      { steps: [{ modelRunner: { models: [model] } }, { router: { key: 'path', routes: { b: [{ modelRunner: { models: [model] } }] } } }] },
      { baseDir: dir },
    );
    expect(error.path).toBe('steps[1].router.routes.b[0].modelRunner.models[0].endpointName');
    expect(error.message).toContain("'a', already used at steps[0].modelRunner.models[0].endpointName");
  });

  it("what the graph refuses is reported at the spec's path (an unknown shared model, a default route that is no route)", async () => {
    const proxy = await rejection({ steps: [{ modelRunner: { models: [{ endpointName: 'p', sharedModelName: 'nope' }] } }] });
    expect(proxy.path.startsWith('steps[0].modelRunner.models[0]')).toBe(true);
    const route = await rejection({ steps: [{ router: { key: 'path', routes: { a: [] }, defaultRoute: 'b' } }] });
    expect(route.path).toBe('steps[0].router.defaultRoute');
  });

  it('YAML that does not parse, and a file that does not exist', async () => {
    const error = await rejection(specFile('broken.yaml', 'name: x\nsteps: [\n  - a: b\n'));
    expect(error.message).toMatch(/broken\.yaml: line \d+: not valid YAML/);
    const gone = await rejection(join(dir, 'gone.yaml'));
    expect(gone.message).toContain('gone.yaml');
  });
});

describe('loadGraph: flow: instead of steps: (docs/design.md §17)', () => {
  const fn = (name: string) => ({ module: './functions.mjs', export: name });
  const steps = (...more: object[]) => [{ name: 'draft', step: fn('draft') }, ...more];

  it('builds the flow the YAML file describes: entry, choice, cycle with its bound, responder, side branch, the flow’s handler', async () => {
    const { graph, pipeline } = await loadGraph(join(dir, 'flow.yaml'));
    const input = [toEvent({ goodAt: 1 }, { id: 'a' }), toEvent({ goodAt: 3 }, { id: 'b' }), toEvent({ goodAt: 9 }, { id: 'c' })];
    const out: ServingEvent[] = await lastValueFrom(from(input).pipe(pipeline, toArray()));
    expect(Object.fromEntries(out.map((e) => [e.id, e.body]))).toEqual({
      a: { answer: 'draft 1' },
      b: { answer: 'draft 3' },
      c: { answer: 'fallback', attempts: 3, why: 'CycleLimitError' },
    });
    const [shape] = graph.describe().flows!;
    expect(shape!.flow).toBe('answer');
    expect(shape!.steps).toEqual([
      { step: 'draft', kind: 'step', entry: true, maxIterations: 3 },
      { step: 'judge', kind: 'choice' },
      { step: 'reply', kind: 'step', responder: true },
      { step: 'scale', kind: 'step' },
      { step: 'fallback', kind: 'errorHandler' },
    ]);
    expect(shape!.edges).toContainEqual({ from: 'judge', to: 'draft', kind: 'cycle' });
    expect(graph.endpoint('times')?.step).toBe('model_runner');
    await graph.close();
  });

  it('a choice by field, entries with after: [], a step’s handler with before', async () => {
    const { graph, pipeline } = await loadGraph(
      {
        flow: {
          steps: [
            { name: 'route', choice: { field: 'body.to' } },
            { name: 'parse', step: fn('prepare'), errorHandler: { name: 'recover', before: 'reply', step: fn('tagLow') } },
            { name: 'tag', step: fn('tagHigh'), after: 'route' },
            { name: 'reply', step: fn('tagHigh'), after: ['parse', 'tag'], respond: true },
          ],
        },
      },
      { baseDir: dir },
    );
    // route → parse (its after is the previous step): 'x' is no number, so parse fails and recover answers via reply.
    expect(await run2(pipeline, [{ to: 'tag' }, { to: 'parse', x: 1 }])).toEqual([
      { to: 'tag', tag: 'high' },
      { to: 'parse', x: 1, tag: 'high' },
    ]);
    await graph.close();
  });

  it('names the path of a bad edge: an unknown after, cycleTo or before; a before upstream; an unbounded cycle; two responders', async () => {
    const cases: [object[], string][] = [
      [
        steps({ name: 'b', step: fn('draft'), after: 'nope' }),
        "flow.steps[1].after: 'nope' is not a step of the flow (steps: 'draft', 'b')",
      ],
      [
        steps({ name: 'b', step: fn('draft'), cycleTo: 'nope' }),
        "flow.steps[1].cycleTo: 'nope' is not a step of the flow (steps: 'draft', 'b')",
      ],
      [
        steps({ name: 'b', step: fn('draft'), errorHandler: { name: 'h', before: 'nope', step: fn('draft') } }),
        "flow.steps[1].errorHandler.before: 'nope' is not a step of the flow",
      ],
      [
        steps({ name: 'b', step: fn('draft'), errorHandler: { name: 'h', before: ['draft'], step: fn('draft') } }),
        "flow.steps[1].errorHandler.before: 'draft' is upstream of 'b'",
      ],
      [steps({ name: 'b', choice: fn('judge'), cycleTo: 'draft' }), 'flow.steps[1].cycleTo: the cycle draft → b → draft has no bound'],
      [
        steps({ name: 'b', step: fn('draft'), respond: true }, { name: 'c', step: fn('draft'), respond: true }),
        "flow.steps[2].respond: 'b' already responds; a flow has one responder",
      ],
      [
        steps({ name: 'draft', step: fn('draft') }),
        "flow.steps[1].name: 'draft' is already the name of flow.steps[0]; step names are unique in a flow",
      ],
      [steps({ name: 'b', step: fn('draft'), maxIterations: 0 }), 'flow.steps[1].maxIterations: expected a positive integer, got 0'],
    ];
    for (const [flowSteps, message] of cases) {
      const error = await rejection({ flow: { steps: flowSteps } }, { baseDir: dir });
      expect(error.message, message).toContain(message);
    }
  });

  it('refuses a spec with both steps: and flow: or neither, a flow step of two kinds or none, a bad choice; YAML mistakes carry their line', async () => {
    expect((await rejection({ steps: [], flow: { steps: steps() } })).message).toBe(
      'spec: a spec has steps: (piped in order) or flow: (a flow of named steps), exactly one; got both',
    );
    expect((await rejection({ name: 'x' })).message).toContain('exactly one; got neither');
    expect((await rejection({ flow: { steps: [{ name: 'a', step: fn('draft'), onError: fn('recover') }] } })).message).toBe(
      'flow.steps[0]: a flow step is exactly one of modelRunner, router, modelRouter, parallelRun, votingEnsemble, step, onError, remoteStep, batchHttpRequests, queueStep, choice; got step and onError',
    );
    expect((await rejection({ flow: { steps: [{ name: 'a' }] } })).message).toContain('flow.steps[0]: a flow step is exactly one of');
    expect((await rejection({ flow: { steps: [{ name: 'a', choice: { field: 'a..b' } }] } })).path).toBe('flow.steps[0].choice.field');
    expect((await rejection({ flow: { steps: [{ name: 'a', step: { module: './functions.mjs', exprt: 'x' } }] } })).path).toBe(
      'flow.steps[0].step.exprt',
    );
    const file = specFile(
      'bad-flow.yaml',
      'flow:\n  steps:\n    - name: a\n      step: { module: ./functions.mjs, export: draft }\n    - name: b\n      step: { module: ./functions.mjs, export: draft }\n      cycleTo: zzz\n',
    );
    expect((await rejection(file)).message).toMatch(/^bad-flow\.yaml: line 7: flow\.steps\[1\]\.cycleTo: 'zzz' is not a step of the flow/);
  });
});

/** Bodies out of a pipeline, in input order. */
async function run2(pipeline: (s: any) => any, bodies: object[]): Promise<unknown[]> {
  const out: ServingEvent[] = await lastValueFrom(from(bodies.map((b, i) => toEvent(b, { id: String(i) }))).pipe(pipeline, toArray()));
  return out.sort((a, b) => a.id.localeCompare(b.id)).map((e) => (e.error ? `${e.error.name}: ${e.error.message}` : e.body));
}

describe('the JSON Schema', () => {
  const ajv = new Ajv2020({ strict: false, allErrors: true });
  const validate = ajv.compile(specSchema());
  const yaml = async (file: string) => (await import('yaml')).parse(readFileSync(file, 'utf8'));

  it('is draft 2020-12 and the built copy is the same', () => {
    expect(specSchema().$schema).toBe('https://json-schema.org/draft/2020-12/schema');
    const built = new URL('../dist/spec/rxserve.schema.json', import.meta.url);
    // The global setup (test/support/freshBuild.ts) builds when dist/ is missing or stale, so the
    // built copy is always there to compare: a missing one fails instead of skipping silently.
    expect(existsSync(built)).toBe(true);
    expect(JSON.parse(readFileSync(built, 'utf8'))).toEqual(specSchema());
  });

  it('accepts the good specs (the fixture with every field, the example)', async () => {
    for (const file of [join(fixtures, 'full.yaml'), fileURLToPath(new URL('../examples/spec/graph.yaml', import.meta.url))]) {
      expect(validate(await yaml(file)), JSON.stringify(validate.errors)).toBe(true);
    }
  });

  it('accepts a flow spec and rejects bad ones: steps and flow both, a flow step of two kinds or none, an unknown field', async () => {
    const flowSpec = await yaml(join(fixtures, 'flow.yaml'));
    expect(validate(flowSpec), JSON.stringify(validate.errors)).toBe(true);
    const one = { name: 'a', step: { module: './f.mjs' } };
    expect(validate({ flow: { steps: [one], errorHandler: { name: 'h', step: { module: './f.mjs' } } } })).toBe(true);
    expect(validate({ flow: { steps: [{ name: 'a', choice: { field: 'body.to' } }] } })).toBe(true);
    expect(validate({ flow: { steps: [one] }, steps: [] })).toBe(false);
    expect(validate({ flow: { steps: [{ ...one, onError: { module: './f.mjs' } }] } })).toBe(false);
    expect(validate({ flow: { steps: [{ name: 'a' }] } })).toBe(false);
    expect(validate({ flow: { steps: [{ ...one, nxet: 'b' }] } })).toBe(false);
    expect(
      validate({
        flow: { steps: [{ ...one, errorHandler: { name: 'h', before: 'b', step: { module: './f.mjs' }, choice: { field: 'x' } } }] },
      }),
    ).toBe(false);
  });

  it('rejects bad ones: an unknown key, a wrong type, a step of two kinds, a proxy with a model class', () => {
    const good = { steps: [{ step: { module: './f.mjs' } }] };
    expect(validate(good)).toBe(true);
    expect(validate({ ...good, nmae: 'x' })).toBe(false);
    expect(validate({ steps: [{ step: { module: './f.mjs', maxInFlight: 0 } }] })).toBe(false);
    expect(validate({ steps: [{ step: { module: './f.mjs' }, onError: { module: './f.mjs' } }] })).toBe(false);
    expect(
      validate({ steps: [{ modelRunner: { models: [{ endpointName: 'p', sharedModelName: 's', executionMechanism: 'naive' }] } }] }),
    ).toBe(false);
    expect(validate({ steps: [{ router: { key: 'body.route', routes: { a: [{ bogus: {} }] } } }] })).toBe(false);
  });
});

// The spec's codecs are built from the runtime's, so a field added to the runtime reaches the spec
// (commit a34c9df fixed `batching`, forgotten by a spec codec written beside the runtime's). Each
// runtime field is in the spec with the runtime's own codec (or its finite form: JSON has no
// Infinity) unless listed below, with why. A new runtime field the spec cannot take goes here.
describe('the spec follows the runtime', () => {
  type Strict = StrictType<any>;
  type Case = {
    runtime: Strict;
    spec: Strict;
    /** Runtime fields a spec leaves out. */
    excluded?: Record<string, string>;
    /** Runtime fields whose spec form differs. */
    overridden?: Record<string, string>;
  };
  const named = 'named (registered, or { module, export }): never a class or an instance';
  const mechanism = "any but 'shared_executor' (a proxy is written { endpointName, sharedModelName })";
  const artifact = "an object or a file path relative to the spec's folder";
  const serve = GraphSpec.optional.serve;
  const cases: Record<string, Case> = {
    'model entry': {
      runtime: ModelEntryCodec,
      spec: ModelSpec,
      excluded: { sharedModelName: 'a proxy of a shared model is written as a proxy (ProxySpec)' },
      overridden: { modelClass: named, executionMechanism: mechanism, modelArtifact: artifact },
    },
    'shared model': {
      runtime: SharedModelCodec,
      spec: SharedModelSpec,
      excluded: { override: "a spec builds a new graph: its shared models are all in the spec's list" },
      overridden: { modelClass: named, executionMechanism: mechanism, modelArtifact: artifact },
    },
    'shared model proxy': { runtime: ProxyCodec, spec: ProxySpec, overridden: { modelArtifact: artifact } },
    'graph options': {
      runtime: GraphOptionsCodec,
      spec: GraphSpec,
      overridden: { monitoring: 'the same fields (below), under the name Monitoring' },
    },
    monitoring: { runtime: MonitoringOptionsCodec, spec: GraphSpec.optional.monitoring },
    'graph pool': {
      runtime: PoolOptionsCodec,
      spec: GraphSpec.optional.pool,
      excluded: {
        piscina: 'a pool instance, not data',
        maxBatch: 'graph.configurePoolResource() takes maxThreads, maxProcesses and poolFactor only',
        cancelGraceMs: 'graph.configurePoolResource() takes maxThreads, maxProcesses and poolFactor only',
      },
    },
    'step pool': { runtime: PoolOptionsCodec, spec: ModelRunnerSpec.optional.pool, excluded: { piscina: 'a pool instance, not data' } },
    modelRunner: {
      runtime: ModelRunnerConfigCodec,
      spec: ModelRunnerSpec,
      excluded: { executor: 'an object, not data', graph: "the spec's own graph" },
      overridden: { models: 'model entries and proxies as a spec writes them', selector: named, pool: 'without piscina (above)' },
    },
    step: { runtime: StepOptionsCodec, spec: FunctionStepSpec },
    onError: { runtime: OnErrorOptionsCodec, spec: OnErrorSpec },
    serve: {
      runtime: ServeOptionsCodec,
      spec: serve,
      excluded: { graph: "the spec's own graph" },
    },
    remoteStep: {
      runtime: HttpStepOptionsCodec,
      spec: RemoteStepSpec,
      overridden: {
        urlExpression: "a template ('{body.user}'), compiled to a function",
        bodyExpression: "a template ('{body.user}'), compiled to a function",
      },
    },
    batchHttpRequests: {
      runtime: HttpStepOptionsCodec,
      spec: BatchHttpRequestsSpec,
      overridden: {
        urlExpression: "a template ('{item.id}'), compiled to a function",
        bodyExpression: "a template ('{item.id}'), compiled to a function",
      },
    },
    queueStep: {
      runtime: QueueStepOptionsCodec,
      spec: QueueStepSpec,
      overridden: { redis: 'a URL (a spec names the server; queueStep() also takes a client)' },
    },
    'Redis source': {
      runtime: RedisStreamOptionsCodec,
      spec: GraphSpec.optional.source.required.redis,
      excluded: {
        redis: 'written url (a spec names the server; redisStream() also takes a client)',
        metrics: 'a prom-client registry, not data',
      },
    },
  };

  const fields = (codec: Strict) => ({ ...codec.required, ...codec.optional });

  it.each(Object.entries(cases))("%s: every runtime field is in the spec, with the runtime's codec, or listed", (_, c) => {
    const runtime = fields(c.runtime);
    const spec = fields(c.spec);
    for (const [key, codec] of Object.entries(runtime)) {
      if (c.excluded?.[key] !== undefined) {
        expect(spec, `'${key}' is listed as left out`).not.toHaveProperty(key);
      } else {
        expect(spec, `the spec has no '${key}': take the runtime's, or list it as left out`).toHaveProperty(key);
        if (c.overridden?.[key] !== undefined) expect(spec[key], `'${key}' is listed as overridden`).not.toBe(finite(codec));
        else expect(spec[key], `'${key}' is not the runtime's codec: take it, or list it as overridden`).toBe(finite(codec));
      }
    }
    for (const key of [...Object.keys(c.excluded ?? {}), ...Object.keys(c.overridden ?? {})]) expect(runtime).toHaveProperty(key);
  });

  it("router: every runtime field is in the spec's schema", () => {
    const router = (specSchema().$defs as Record<string, { properties: { router: { properties: object } } }>).Step.properties.router
      .properties;
    expect(Object.keys(router).sort()).toEqual(Object.keys(fields(RouterConfigCodec)).sort());
  });
});
