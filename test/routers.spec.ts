// The router family over real HTTP (serve() on loopback, port 0) with models on worker mechanisms
// (docs/design.md §18): votes of thread_pool classifiers, the V2 operations and metadata, GET /v2 and
// /v2/models, readiness, and every bad request with its status and a message naming what was wrong.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  createGraph,
  modelRouter,
  modelRunner,
  parallelRun,
  registerModel,
  serve,
  unregisterModel,
  votingEnsemble,
  type ExecutionMechanism,
  type ModelEntry,
  type Server,
} from '../src/index.js';
// @ts-expect-error a plain .mjs module without types (the example's encoder)
import { writeMlpModel } from '../examples/onnx/onnxBuilder.mjs';

const fixture = new URL('./fixtures/routerModels.mjs', import.meta.url).href;
const ref = (name: string) => ({ module: fixture, export: name });

/** A route of one model. */
const route = (endpointName: string, modelClass: string, executionMechanism: ExecutionMechanism, extra: Partial<ModelEntry> = {}) =>
  modelRunner({
    name: endpointName,
    models: [{ endpointName, modelClass, executionMechanism, ...extra }],
    pool: { maxThreads: 1, maxProcesses: 1 },
  });

let server: Server | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});
beforeAll(() => {
  registerModel('Threshold', ref('Threshold'));
  registerModel('Explained', ref('Explained'));
  registerModel('PredictOnly', ref('PredictOnly'));
  registerModel('Field', ref('Field'));
});
afterAll(() => {
  for (const name of ['Threshold', 'Explained', 'PredictOnly', 'Field']) unregisterModel(name);
});

async function call(method: 'GET' | 'POST', path: string, body?: unknown): Promise<{ status: number; body: any }> {
  const response = await fetch(`${server!.url}${path}`, {
    method,
    ...(body !== undefined ? { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } } : {}),
  });
  return { status: response.status, body: await response.json() };
}

// Three classifiers over rows [f0, f1, f2]: class 1 when their feature is above 0.5.
const ROWS = [
  [0.9, 0.9, 0.1], // a 1, b 1, c 0 → 1
  [0.1, 0.2, 0.9], // a 0, b 0, c 1 → 0
  [0.9, 0.1, 0.1], // a 1, b 0, c 0 → 0
  [0.9, 0.1, 0.8], // a 1, b 0, c 1 → 1
];

describe('votingEnsemble of thread_pool classifiers over HTTP', () => {
  const classifiers = (fail = false) => ({
    a: route('a', 'Threshold', 'thread_pool', { params: { feature: 0 }, inputs: ['f0', 'f1', 'f2'], outputs: ['label'] }),
    b: route('b', 'Threshold', 'thread_pool', { params: { feature: 1, fail } }),
    c: route('c', 'Threshold', 'thread_pool', { params: { feature: 2 } }),
  });

  it('votes per row, runs one route alone, lists, describes, and refuses bad requests with the §18 statuses, losing nothing', async () => {
    server = await serve(votingEnsemble({ name: 'forest', routes: classifiers() }), { port: 0 });
    const vote = await call('POST', '/v2/models/forest/infer', { inputs: ROWS });
    expect(vote).toEqual({ status: 200, body: { id: expect.any(String), model_name: 'forest', outputs: [1, 0, 0, 1] } });
    // the classifiers' own answers, checked against the rule by hand
    const alone = await call('POST', '/v2/models/a/infer', { inputs: ROWS });
    expect(alone.body).toMatchObject({ model_name: 'a', outputs: [1, 0, 1, 1], timestamp: expect.stringMatching(/^\d{4}-\d\d-\d\dT/) });
    expect((await call('POST', '/v2/models/infer', { inputs: ROWS })).body.outputs).toEqual([1, 0, 0, 1]);

    expect(await call('GET', '/v2')).toEqual({ status: 200, body: { name: 'VotingEnsemble', version: 'v2', extensions: [] } });
    expect(await call('GET', '/v2/models')).toEqual({ status: 200, body: { models: ['a', 'b', 'c', 'forest'] } });
    expect(await call('GET', '/v2/models/a')).toEqual({
      status: 200,
      body: { name: 'a', version: '', inputs: ['f0', 'f1', 'f2'], outputs: ['label'] },
    });
    expect(await call('POST', '/v2/models', {})).toEqual({
      status: 200,
      body: { models: ['a', 'b', 'c', 'forest'], weights: { a: 1 / 3, b: 1 / 3, c: 1 / 3 } },
    });

    const bad = [
      [
        await call('POST', '/v2/models/forest/infer', { inputs: 'rows' }),
        400,
        "TypeError: router 'forest': a V2 'infer' request to 'forest' needs 'inputs' as a list in its body; got inputs a string",
      ],
      [
        await call('POST', '/v2/models/forest/infer', { instances: ROWS }),
        400,
        "TypeError: router 'forest': a V2 'infer' request to 'forest' needs 'inputs' as a list in its body; got inputs missing",
      ],
      [
        await call('POST', '/v2/models/oak/infer', { inputs: ROWS }),
        404,
        "RouteNotFoundError: router 'forest': no route for key 'oak'; available routes: 'a', 'b', 'c', 'forest'",
      ],
      [
        await call('GET', '/v2/models/oak'),
        404,
        "RouteNotFoundError: router 'forest': no route for key 'oak'; available routes: 'a', 'b', 'c', 'forest'",
      ],
      [
        await call('POST', '/score', { inputs: ROWS }),
        404,
        "RouteNotFoundError: router 'forest': path '/score' is not under its prefix '/v2/models'; available routes: 'a', 'b', 'c'",
      ],
      [
        await call('POST', '/v2/models/forest/explain', { inputs: ROWS }),
        400,
        "TypeError: voting ensemble 'forest' answers infer, predict, metadata and ready; 'explain' needs one of its routes: /v2/models/<route>/explain (routes: 'a', 'b', 'c')",
      ],
      [
        await call('POST', '/v2/models/a/explain', { inputs: ROWS }),
        400,
        "ModelRunnerError: step 'a': a failed (TypeError: model 'a' has no explain() method, so it cannot answer 'explain'; its operations: infer, predict, metadata, ready)",
      ],
      [
        await call('POST', '/v2/models/a/prune', {}),
        400,
        "ModelRunnerError: step 'a': a failed (TypeError: model 'a' has no operation 'prune' (a method op_prune(body, ctx)); its operations: infer, predict, metadata, ready)",
      ],
      [
        await call('POST', '/v2/models/a/not-an-op', {}),
        400,
        "TypeError: router 'forest': 'not-an-op' is not an operation of 'a'; operations are infer, predict, explain, metadata, ready, or a custom operation's name (letters, digits, _) that calls the model's op_<name>",
      ],
    ] as const;
    for (const [reply, status, error] of bad) expect(reply).toEqual({ status, body: { error } });
    // nothing stuck: the ensemble answers as before
    expect((await call('POST', '/v2/models/forest/infer', { inputs: ROWS })).body.outputs).toEqual([1, 0, 0, 1]);
  });

  it('weights, and a failing route left out and named in errors', async () => {
    server = await serve(votingEnsemble({ name: 'forest', routes: classifiers(true), weights: { a: 2, b: 1, c: 1 } }), { port: 0 });
    const vote = await call('POST', '/v2/models/forest/infer', { inputs: ROWS });
    // b fails: a (2) against c (1) per row → a's class
    expect(vote).toEqual({
      status: 200,
      body: { id: expect.any(String), model_name: 'forest', outputs: [1, 0, 1, 1], errors: { b: 'RangeError: b refuses' } },
    });
  });
});

describe('modelRouter over HTTP', () => {
  it('infer, explain, custom operations, metadata (OnnxModel tensors), and ready: 408 while loading, 200 once loaded', async () => {
    const onnx = writeMlpModel(join(mkdtempSync(join(tmpdir(), 'rxserve-routers-')), 'mlp.onnx'), [3, 4, 2]) as string;
    const graph = createGraph({ name: 'v2' });
    const routes = {
      slow: graph.modelRunner({
        name: 'slow',
        models: [{ endpointName: 'slow', modelClass: 'Explained', executionMechanism: 'process_pool', params: { loadMs: 1_500 } }],
      }),
      'mlp:v1': graph.modelRunner({
        name: 'mlp',
        models: [{ endpointName: 'mlp', modelClass: 'OnnxModel', executionMechanism: 'thread_pool', params: { modelPath: onnx } }],
      }),
    };
    server = await serve(modelRouter({ name: 'models', routes }), { port: 0, graph });
    const early = await call('POST', '/v2/models/slow/ready', {});
    expect(early).toEqual({ status: 408, body: { error: "ModelNotReadyError: step 'slow': model 'slow' not ready (still loading)" } });
    await graph.ready();
    expect(await call('POST', '/v2/models/slow/ready', {})).toEqual({ status: 200, body: { name: 'slow', ready: true } });
    expect(await call('POST', '/v2/models/slow/infer', { inputs: [1, 2] })).toMatchObject({
      status: 200,
      body: { model_name: 'slow', outputs: { outputs: [2, 4] } },
    });
    expect(await call('POST', '/v2/models/slow/explain', { inputs: [1, 2] })).toEqual({
      status: 200,
      body: { id: expect.any(String), model_name: 'slow', outputs: { importance: [0.5, 0.5], operation: 'explain' } },
    });
    expect(await call('POST', '/v2/models/slow/hello', { who: 'http' })).toEqual({
      status: 200,
      body: { hello: 'http', operation: 'hello', origin: 'slow' },
    });

    const tensor = { name: 'x', shape: [2, 3], datatype: 'FP32', data: [1, 2, 3, 4, 5, 6] };
    const inferred = await call('POST', '/v2/models/mlp/versions/v1/infer', { inputs: [tensor] });
    expect(inferred.status).toBe(200);
    expect(inferred.body).toMatchObject({
      model_name: 'mlp',
      model_version: 'v1',
      outputs: [{ name: 'y', shape: [2, 2], datatype: 'FP32' }],
    });
    expect(await call('GET', '/v2/models/mlp/versions/v1')).toEqual({
      status: 200,
      body: {
        name: 'mlp',
        version: 'v1',
        inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 3] }],
        outputs: [{ name: 'y', datatype: 'FP32', shape: [-1, 2] }],
      },
    });
    expect(await call('GET', '/v2')).toEqual({ status: 200, body: { name: 'ModelRouter', version: 'v2', extensions: [] } });
    expect(await call('GET', '/v2/models')).toEqual({ status: 200, body: { models: ['slow', 'mlp:v1'] } });
    expect(await call('GET', '/v2/models/slow/ready')).toEqual({ status: 200, body: { name: 'slow', ready: true } });
  });
});

describe('parallelRun over HTTP', () => {
  it('merges the answers of process_pool and asyncio routes; a failed route is a 400 naming it', async () => {
    const routes = (fail: boolean) => ({
      double: route('double', 'Field', 'process_pool', { params: { key: 'double' } }),
      twice: route('twice', 'Field', 'asyncio', { params: { key: 'twice', delayMs: 20, fail } }),
    });
    server = await serve(parallelRun({ name: 'fan', routes: routes(false), extendEvent: true }), { port: 0 });
    expect(await call('POST', '/anything', { x: 21 })).toEqual({ status: 200, body: { x: 21, double: 42, twice: 42 } });
    expect(await call('GET', '/v2')).toEqual({ status: 200, body: { name: 'ParallelRun', version: 'v2', extensions: [] } });
    expect(await call('GET', '/v2/models')).toEqual({ status: 200, body: { models: ['double', 'twice'] } });
    await server.close();
    server = await serve(parallelRun({ name: 'fan', routes: routes(true) }), { port: 0 });
    expect(await call('POST', '/anything', { x: 1 })).toEqual({
      status: 400,
      body: { error: "ModelRunnerError: step 'fan': twice failed (RangeError: twice refuses)" },
    });
  });
});
