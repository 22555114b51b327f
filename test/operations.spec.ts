// The V2 operations of a model call (docs/design.md §18) on every mechanism: an event's metadata.operation
// reaches the model as explain(), metadata(), op_<x>() through modelRunner, worker hosts included,
// with timeouts and cancellation as predict; wrong operations fail with a message that names them.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { firstValueFrom, from, lastValueFrom, Subject, toArray } from 'rxjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createGraph,
  Model,
  ModelNotReadyError,
  ModelRunnerError,
  modelRunner,
  registerModel,
  toEvent,
  unregisterModel,
  type ExecutionMechanism,
  type ModelEntry,
  type ModelRunnerConfig,
  type ServingEvent,
} from '../src/index.js';
// @ts-expect-error a plain .mjs module without types (the example's encoder)
import { writeMlpModel } from '../examples/onnx/onnxBuilder.mjs';

const fixture = new URL('./fixtures/routerModels.mjs', import.meta.url).href;
const ref = (name: string) => ({ module: fixture, export: name });
const MECHANISMS = ['naive', 'asyncio', 'thread_pool', 'process_pool', 'dedicated_process'] as const;

const op = (operation: string | undefined, body: unknown, id?: string): ServingEvent =>
  toEvent(body, { ...(id ? { id } : {}), metadata: operation === undefined ? {} : { operation } });
const run = (events: ServingEvent[], config: ModelRunnerConfig) => lastValueFrom(from(events).pipe(modelRunner(config), toArray()));
const entry = (mechanism: ExecutionMechanism, extra: Partial<ModelEntry> = {}): ModelEntry => ({
  endpointName: 'm',
  modelClass: 'Explained',
  executionMechanism: mechanism,
  inputs: ['f0'],
  outputs: ['y'],
  ...extra,
});

beforeAll(() => {
  registerModel('Explained', ref('Explained'));
  registerModel('PredictOnly', ref('PredictOnly'));
});
afterAll(() => {
  unregisterModel('Explained');
  unregisterModel('PredictOnly');
});

describe('operations reach the model on every mechanism', () => {
  it.each(MECHANISMS)('%s: predict, explain, op_hello and metadata, each with ctx.operation', async (mechanism) => {
    const out = await run(
      [
        op(undefined, { inputs: [1, 2] }),
        op('infer', { inputs: [3] }),
        op('explain', { inputs: [1, 2, 3, 4] }),
        op('hello', { who: 'rx' }),
        op('metadata', {}),
      ],
      { models: [entry(mechanism)] },
    );
    expect(out.map((e) => e.error)).toEqual([undefined, undefined, undefined, undefined, undefined]);
    expect(out.map((e) => e.body)).toEqual([
      { outputs: [2, 4], operation: null },
      { outputs: [6], operation: null },
      { importance: [0.25, 0.25, 0.25, 0.25], operation: 'explain' },
      { hello: 'rx', operation: 'hello', origin: 'm' },
      // the model's own inputs win; its outputs are not reported, so the entry's names answer
      { inputs: [{ name: 'x', datatype: 'FP64', shape: [-1] }], outputs: ['y'] },
    ]);
  });

  it.each(MECHANISMS)('%s: an unknown operation and explain without explain() fail with messages naming them', async (mechanism) => {
    const out = await run([op('nope', {}), op('explain', { inputs: [] }), op(undefined, { inputs: [7] })], {
      models: [entry(mechanism), entry(mechanism, { endpointName: 'p', modelClass: 'PredictOnly' })],
      // one model per event: the step has two, so the selector picks by body
      selector: (e: ServingEvent) => ((e.body as { inputs?: unknown[] }).inputs?.length === 0 ? ['p'] : ['m']),
    });
    // a step of two models answers infer only: operations need a route of one model
    expect((out as ServingEvent[])[0].error).toBeInstanceOf(TypeError);
    expect((out as ServingEvent[])[0].error!.message).toMatch(/has 2 models \('m', 'p'\): operation 'nope' needs a route of one model/);

    const single = await run([op('nope', {}), op('explain', { inputs: [] })], { models: [entry(mechanism)] });
    const unknown = single[0].error as ModelRunnerError;
    expect(unknown).toBeInstanceOf(ModelRunnerError);
    expect(unknown.modelsErrors.m).toMatch(
      /^TypeError: model 'm' has no operation 'nope' \(a method op_nope\(body, ctx\)\); its operations: infer, predict, explain, metadata, ready, hello, sleep$/,
    );
    expect(single[1].error).toBeUndefined();

    const predictOnly = await run([op('explain', { inputs: [1] }), op(undefined, { inputs: [1] })], {
      models: [entry(mechanism, { endpointName: 'p', modelClass: 'PredictOnly' })],
    });
    expect((predictOnly[0].error as ModelRunnerError).modelsErrors.p).toMatch(
      /^TypeError: model 'p' has no explain\(\) method, so it cannot answer 'explain'; its operations: infer, predict, metadata, ready$/,
    );
    // nothing lost: the next event is answered
    expect(predictOnly[1].body).toEqual({ outputs: [1] });
  });

  it("a shared model dispatches its proxies' operations", async () => {
    const graph = createGraph({ name: 'ops' });
    graph.addSharedModel({ name: 'shared', modelClass: 'Explained', executionMechanism: 'thread_pool' });
    const proxy = graph.sharedModelProxy({ endpointName: 'proxy', sharedModelName: 'shared' });
    const step = graph.modelRunner({ models: [proxy] });
    await graph.ready();
    try {
      const out = await lastValueFrom(from([op('hello', { who: 'p' }), op('explain', { inputs: [1] })]).pipe(step, toArray()));
      expect(out.map((e) => e.body)).toEqual([
        { hello: 'p', operation: 'hello', origin: 'proxy' },
        { importance: [1], operation: 'explain' },
      ]);
    } finally {
      await graph.close();
    }
  });
});

describe("OnnxModel's metadata", () => {
  it.each(['asyncio', 'thread_pool'] as const)(
    "%s: its tensors' names, OIP datatypes and shapes (-1: symbolic), over the entry's names",
    async (mechanism) => {
      const path = writeMlpModel(join(mkdtempSync(join(tmpdir(), 'rxserve-ops-')), 'mlp.onnx'), [4, 5, 3]) as string;
      const [meta] = await run([op('metadata', {})], {
        models: [
          { endpointName: 'mlp', modelClass: 'OnnxModel', executionMechanism: mechanism, params: { modelPath: path }, inputs: ['a', 'b'] },
        ],
      });
      expect(meta.body).toEqual({
        inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 4] }],
        outputs: [{ name: 'y', datatype: 'FP32', shape: [-1, 3] }],
      });
    },
  );
});

describe('operations with timeouts, cancellation and batching', () => {
  it.each(['asyncio', 'thread_pool', 'process_pool'] as const)(
    '%s: a custom operation past timeoutMs fails with ModelTimeoutError and frees its slot',
    async (mechanism) => {
      const out = await run([op('sleep', { ms: 5_000 }), op('sleep', { ms: 10 })], {
        models: [entry(mechanism, { timeoutMs: 200, maxInFlight: 1 })],
        pool: { maxThreads: 1, maxProcesses: 1 },
      });
      expect((out[0].error as ModelRunnerError).modelsErrors.m).toBe("ModelTimeoutError: model 'm' timed out after 200 ms");
      expect(out[1].body).toEqual({ slept: 10 });
    },
  );

  it.each(['asyncio', 'thread_pool', 'process_pool'] as const)(
    '%s: cancelling an event aborts its operation in the model, and the lane goes on',
    async (mechanism) => {
      const input = new Subject<ServingEvent>();
      const results: ServingEvent[] = [];
      const done = new Promise<void>((resolve) =>
        input.pipe(modelRunner({ models: [entry(mechanism, { maxInFlight: 1 })], pool: { maxThreads: 1, maxProcesses: 1 } })).subscribe({
          next: (e) => results.push(e),
          complete: resolve,
        }),
      );
      const controller = new AbortController();
      const started = Date.now();
      input.next(toEvent({ ms: 20_000 }, { id: 'long', metadata: { operation: 'sleep' }, signal: controller.signal }));
      input.next(op('hello', { who: 'after' }, 'next'));
      setTimeout(() => controller.abort(new Error('client left')), 300);
      input.complete();
      await done;
      expect(Date.now() - started).toBeLessThan(10_000);
      expect(results.map((e) => e.id)).toEqual(['long', 'next']);
      expect(results[0].error!.message).toMatch(/client left/);
      expect(results[1].body).toEqual({ hello: 'after', operation: 'hello', origin: 'm' });
    },
  );

  it.each(['naive', 'thread_pool'] as const)('%s with batching: predicts batch, an operation among them runs alone', async (mechanism) => {
    const events = [
      op(undefined, { inputs: [1] }),
      op('hello', { who: 'b' }),
      op(undefined, { inputs: [2] }),
      op('explain', { inputs: [5, 5] }),
    ];
    const out = await run(events, { models: [entry(mechanism, { batching: { maxBatchSize: 4, maxWaitMs: 20 } })] });
    expect(out.map((e) => e.body)).toEqual([
      { outputs: [2], operation: null },
      { hello: 'b', operation: 'hello', origin: 'm' },
      { outputs: [4], operation: null },
      { importance: [0.5, 0.5], operation: 'explain' },
    ]);
  });
});

describe("the 'ready' operation", () => {
  it.each(['asyncio', 'thread_pool'] as const)(
    '%s: 408-style ModelNotReadyError while loading, { ready: true } once loaded; other events wait',
    async (mechanism) => {
      const input = new Subject<ServingEvent>();
      const results: ServingEvent[] = [];
      const done = new Promise<void>((resolve) =>
        input.pipe(modelRunner({ models: [entry(mechanism, { params: { loadMs: 400 } })], pool: { maxThreads: 1 } })).subscribe({
          next: (e) => results.push(e),
          complete: resolve,
        }),
      );
      input.next(op(undefined, { inputs: [1] }, 'early'));
      input.next(op('ready', {}, 'probe1'));
      // answered at once, before the event that came first (which waits for the load)
      expect(results.map((e) => e.id)).toEqual(['probe1']);
      expect(results[0].error).toBeInstanceOf(ModelNotReadyError);
      expect(results[0].error!.message).toBe("step 'model_runner': model 'm' not ready (still loading)");
      // once the event that waited for the load is answered, the model is loaded
      for (let i = 0; i < 300 && results.length < 2; i++) await new Promise((r) => setTimeout(r, 20));
      input.next(op('ready', {}, 'probe2'));
      input.complete();
      await done;
      expect(results.map((e) => e.id)).toEqual(['probe1', 'early', 'probe2']);
      expect(results[1].body).toEqual({ outputs: [2], operation: null });
      expect(results[2].body).toEqual({ ready: true });
    },
  );

  it("a graph's step whose models loaded before it was subscribed answers a ready probe that comes first, at once", async () => {
    const graph = createGraph({ name: 'loaded-early' });
    const step = graph.modelRunner({ models: [entry('thread_pool')], pool: { maxThreads: 1 } });
    await graph.ready();
    try {
      // the probe arrives synchronously with the subscription, before any promise callback could run
      const out = await firstValueFrom(from([op('ready', {})]).pipe(step));
      expect(out.error).toBeUndefined();
      expect(out.body).toEqual({ ready: true });
    } finally {
      await graph.close();
    }
  });

  it('a model that loads synchronously is ready at once', async () => {
    class Sync extends Model {}
    const out = await firstValueFrom(from([op('ready', {})]).pipe(modelRunner({ models: [entry('naive', { modelClass: Sync })] })));
    expect(out.body).toEqual({ ready: true });
  });
});
