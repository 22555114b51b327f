// What crosses to and from pool workers (issue 26 goal 3): partials only when someone listens, a
// single OnnxModel call in the same compact wire form as a batch (and the same outputs), and
// timeouts on that path.
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BroadcastChannel } from 'node:worker_threads';
import { Piscina } from 'piscina';
import { Subject, firstValueFrom, from, lastValueFrom, toArray } from 'rxjs';
import { afterEach, describe, expect, it } from 'vitest';
import { ModelHost } from '../src/execution/worker/modelHost.js';
import { asEvents, createGraph, invoker, modelRunner, toEvent, type ModelEntry, type ServingEvent } from '../src/index.js';
// @ts-expect-error a plain .mjs module without types (the example's encoder)
import { writeMlpModel } from '../examples/onnx/onnxBuilder.mjs';

const partialModels = new URL('./fixtures/partialModels.mjs', import.meta.url).href;
const restore: (() => void)[] = [];
afterEach(() => {
  while (restore.length > 0) restore.pop()!();
});

/** Counts the main thread's answers to a worker's partials flush: one per batch that emitted partials. */
function countFlushAcks(): { readonly count: number } {
  const counter = { count: 0 };
  const original = BroadcastChannel.prototype.postMessage;
  BroadcastChannel.prototype.postMessage = function (this: BroadcastChannel, message: unknown) {
    if (message !== null && typeof message === 'object' && 'ack' in message) counter.count++;
    return original.call(this, message);
  };
  restore.push(() => (BroadcastChannel.prototype.postMessage = original));
  return counter;
}

/** Records the tasks (and their transfer lists) piscina is given. */
function recordTasks(): { task: unknown; transfer: readonly unknown[] }[] {
  const tasks: { task: unknown; transfer: readonly unknown[] }[] = [];
  const original = Piscina.prototype.run;
  Piscina.prototype.run = function (this: Piscina, task: unknown, options?: { transferList?: readonly unknown[] }) {
    tasks.push({ task, transfer: options?.transferList ?? [] });
    return original.call(this, task, options as never);
  } as typeof original;
  restore.push(() => (Piscina.prototype.run = original));
  return tasks;
}

describe('partials cross from workers only when someone listens', () => {
  it('thread_pool: a model that emits on every call, nobody listening: no partial, no flush crosses; a listener gets them', async () => {
    const acks = countFlushAcks();
    const entry: ModelEntry = {
      endpointName: 'sync',
      modelClass: { module: partialModels, export: 'SyncCounting' },
      executionMechanism: 'thread_pool',
    };
    const out: ServingEvent[] = await lastValueFrom(
      from([{ count: 3 }, { count: 2 }, { count: 4 }]).pipe(asEvents(), modelRunner({ models: [entry] }), toArray()),
    );
    expect(out.map((e) => e.body)).toEqual([{ count: 3 }, { count: 2 }, { count: 4 }]);
    // Before: each call's three-odd partials crossed, and each batch waited for a flush round trip.
    expect(acks.count).toBe(0);

    const graph = createGraph({ name: 'listening' });
    const client = invoker(graph.modelRunner({ models: [entry] }), { graph });
    try {
      await graph.ready();
      const messages = await lastValueFrom(client.stream({ count: 3 }).pipe(toArray()));
      expect(messages.map((m) => (m.type === 'partial' ? m.data : 'result'))).toEqual([{ n: 1 }, { n: 2 }, { n: 3 }, 'result']);
      expect(acks.count).toBeGreaterThan(0);
    } finally {
      await client.close();
    }
  });

  // The host is the code both kinds of worker run (execution/worker/threadWorker.ts, processWorker.ts).
  it('the worker host gives a call a context that sends partials only when the wire call says someone listens', async () => {
    const sent: [number, unknown][] = [];
    const host = new ModelHost('process', (id, partial) => sent.push([id, partial]));
    const spec = JSON.stringify({ endpointName: 'sync', module: partialModels, export: 'SyncCounting', params: {} });
    const call = (id: number, listen: boolean) => ({ id, spec: 0, input: { count: 2 }, eventId: `e${id}`, origin: 'sync', listen });
    const batchCall = (id: number, listen: boolean[]) => ({
      id,
      spec: 0,
      input: listen.map(() => ({ count: 1 })),
      eventId: `e${id}`,
      origin: 'sync',
      batch: listen.flatMap((l, k) => [`e${id}.${k}`, 'sync', undefined, l ? 1 : 0]),
    });
    try {
      const results = await host.run({ specs: [spec], calls: [call(1, false), call(2, true), batchCall(3, [false, true, false])] });
      expect(results.every((r) => r.ok)).toBe(true);
      expect(sent).toEqual([
        [2, { n: 1 }],
        [2, { n: 2 }],
        [3, [1, { n: 1 }]],
      ]);
    } finally {
      await host.close();
    }
  });
});

describe('a malformed wire message gets a clear error, and nothing is stuck', () => {
  it('the worker host fails a batch call whose contexts or inputs are malformed, alone; the calls beside it are answered and nothing stays running', async () => {
    const host = new ModelHost('process');
    const spec = JSON.stringify({ endpointName: 'sync', module: partialModels, export: 'SyncCounting', params: {} });
    const batchCall = (id: number, batch: unknown, input: unknown = [{ count: 1 }]) => ({
      id,
      spec: 0,
      input,
      eventId: `e${id}`,
      origin: 'sync',
      batch: batch as never,
    });
    try {
      const results = await host.run({
        specs: [spec],
        calls: [
          batchCall(1, ['e1', 'sync', undefined]),
          batchCall(2, ['e2', 'sync', undefined, 0]),
          batchCall(3, [7, 'sync', undefined, 0]),
          batchCall(4, ['e4', 'sync', undefined, 0], 'not a list'),
          // A count instead of the contexts is for a wire method that reads none: this model's
          // predictBatch takes them, so the call fails alone, saying so.
          batchCall(5, 1),
          batchCall(6, -2),
          // Contexts (or a count) that do not match the inputs: refused before any model runs.
          batchCall(7, ['e7', 'sync', undefined, 0, 'e8', 'sync', undefined, 0]),
          batchCall(8, 3),
        ],
      });
      expect(results.map((r) => (r.ok ? 'ok' : r.error.message))).toEqual([
        'a malformed batch call: its contexts are 3 values, not 4 per input',
        'ok',
        'a malformed batch call: the context of input 0 is not [eventId, origin, path, listen] (strings; the path may be absent)',
        'a malformed batch call: its inputs are string, not a list',
        "a malformed batch call: its 1 input(s) came without their contexts, which this model's method reads",
        'a malformed batch call: its input count is -2',
        'a malformed batch call: 2 context(s) for 1 input(s)',
        'a malformed batch call: 3 context(s) for 1 input(s)',
      ]);
      expect(results.filter((r) => !r.ok).every((r) => !r.ok && r.error.name === 'TypeError')).toBe(true);
      expect([...host.runningIds()]).toEqual([]);
    } finally {
      await host.close();
    }
  });

  it('the thread worker entry refuses a task that is not a batch of the wire form with a TypeError naming what is wrong; the same thread then answers a good batch', async () => {
    const { workerEntry } = await import('../src/execution/workerEntry.js');
    const { encodeBatch } = await import('../src/execution/wire/protocol.js');
    const piscina = new Piscina({ filename: workerEntry('threadWorker'), maxThreads: 1 });
    try {
      const board = new SharedArrayBuffer(64);
      const spec = JSON.stringify({ endpointName: 'a', module: null, export: 'Model', params: {} });
      const good = encodeBatch(
        { specs: [spec], calls: [{ id: 1, spec: 0, input: { x: 1 }, eventId: 'e', origin: 'a' }] },
        (key) => key,
        board,
      );
      await expect(piscina.run(good.slice(0, 5))).rejects.toThrow('a malformed batch: 4 values, not 9 per call');
      await expect(piscina.run([board, 12, ...good.slice(2)])).rejects.toThrow(
        'a malformed batch: call 0 names model 12, which this worker does not know',
      );
      await expect(piscina.run([board, spec, 'one', ...good.slice(3)])).rejects.toThrow(
        'a malformed batch: call 0 has id one, not a number',
      );
      expect(await piscina.run(good)).toEqual([1, { x: 1 }]);
      expect(piscina.threads).toHaveLength(1);
    } finally {
      await piscina.destroy();
    }
  });
});

// x [batch, 4] FP32 → y [batch, 3], and a wide one whose big calls take a while.
const dir = mkdtempSync(join(tmpdir(), 'rxserve-pool-wire-'));
const mlp: string = writeMlpModel(join(dir, 'mlp.onnx'), [4, 8, 3]);
const wide: string = writeMlpModel(join(dir, 'wide.onnx'), [64, 384, 384, 64]);
const onnx = (extra: Partial<ModelEntry> = {}, path = mlp): ModelEntry => ({
  endpointName: 'mlp',
  modelClass: 'OnnxModel',
  executionMechanism: 'thread_pool',
  params: { modelPath: path },
  ...extra,
});
const body = (rows: number, start: number) => ({
  inputs: [{ name: 'x', shape: [rows, 4], datatype: 'FP32', data: Array.from({ length: rows * 4 }, (_, k) => Math.sin(start + k) * 3) }],
});
const run = (bodies: unknown[], entry: ModelEntry, pool?: object) =>
  lastValueFrom(
    from(bodies).pipe(asEvents(), modelRunner({ models: [entry], raiseException: false, pool: { maxThreads: 1, ...pool } }), toArray()),
  );

describe('OnnxModel single calls on a pool use the compact wire form of batches', () => {
  it('a single call crosses as a packed table (one transferred buffer) and answers byte for byte as a batched call and as asyncio', async () => {
    const bodies = [
      body(1, 0),
      body(3, 10),
      body(2, 20),
      { inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 'three', 4] }] },
    ];
    const tasks = recordTasks();
    const single = (await run(bodies, onnx())).map((e) => e.body);
    // [spec, id, eventId, origin, path, input, contexts, op, listen] per call: the input is a
    // batch's list — row numbers, then the table of the packed bodies — not the JSON body; the body
    // the main side cannot pack (a string among the numbers) goes as it is, for the worker to refuse.
    const calls = tasks
      .filter((t) => Array.isArray(t.task))
      .flatMap(({ task, transfer }) => {
        const flat = task as unknown[];
        return Array.from({ length: flat.length / 9 }, (_, n) => ({
          list: flat[9 * n + 5] as unknown[],
          contexts: flat[9 * n + 6],
          transfer,
        }));
      });
    expect(calls).toHaveLength(4);
    for (const { list, contexts } of calls) {
      expect(Array.isArray(list)).toBe(true);
      expect(contexts).toBe(1); // one input, its context not sent: OnnxModel's wire method reads none
    }
    const packed = calls.filter(({ list }) => (list.at(-1) as { rxserveOnnxTable?: number }).rxserveOnnxTable === 1);
    expect(packed).toHaveLength(3);
    for (const { list, transfer } of packed) {
      expect(list.slice(0, -1)).toEqual([0]);
      expect(transfer.some((b) => b instanceof ArrayBuffer)).toBe(true);
    }
    restore.pop()!();
    const batched = (await run(bodies, onnx({ batching: { maxBatchSize: 4, maxWaitMs: 20 } }))).map((e) => e.body);
    const inProcess = (await run(bodies, onnx({ executionMechanism: 'asyncio' }))).map((e) => e.body);
    expect(JSON.stringify(single)).toBe(JSON.stringify(batched));
    expect(JSON.stringify(single)).toBe(JSON.stringify(inProcess));
    expect(single[3]).toEqual({ error: expect.stringContaining(`TypeError: input 'x' data[2] is "three", FP32 data are numbers`) });
    for (const b of single.slice(0, 3)) expect(Array.isArray((b as { outputs: { data: unknown }[] }).outputs[0].data)).toBe(true);
  });

  it('a single call that outlives its timeout fails with a timeout; the pool answers the next call', async () => {
    const rows = 20_000;
    const big = {
      inputs: [{ name: 'x', shape: [rows, 64], datatype: 'FP32', data: Array.from({ length: rows * 64 }, (_, k) => (k % 7) / 7) }],
    };
    const small = { inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: Array.from({ length: 64 }, (_, k) => k / 64) }] };
    // One pipeline, one thread: the big call times out; a call to a second endpoint on the same
    // thread (no timeout) waits for the worker to finish it, and is answered.
    const input = new Subject<ServingEvent>();
    const outputs: ServingEvent[] = [];
    const next = new Subject<void>();
    const models = [onnx({ timeoutMs: 20 }, wide), { ...onnx({}, wide), endpointName: 'patient' }];
    const subscription = input
      .pipe(modelRunner({ models, selector: (e) => [(e.body as { to: string }).to], raiseException: false, pool: { maxThreads: 1 } }))
      .subscribe((e) => {
        outputs.push(e);
        next.next();
      });
    try {
      const first = firstValueFrom(next);
      input.next(toEvent({ ...big, to: 'mlp' }, { id: 'big' }));
      await first;
      expect(outputs[0].body).toEqual({ mlp: { error: "ModelTimeoutError: model 'mlp' timed out after 20 ms" } });
      const second = firstValueFrom(next);
      input.next(toEvent({ ...small, to: 'patient' }, { id: 'small' }));
      await second;
      expect(outputs[1].body).toMatchObject({
        patient: { model_name: 'patient', outputs: [{ name: 'y', shape: [1, 64], datatype: 'FP32' }] },
      });
    } finally {
      input.complete();
      subscription.unsubscribe();
    }
  }, 60_000);
});

/** Whether `value` holds the string `text` anywhere (arrays and plain objects, as structured clone copies them). */
const holds = (value: unknown, text: string): boolean =>
  value === text ||
  (Array.isArray(value)
    ? value.some((v) => holds(v, text))
    : value !== null && typeof value === 'object' && !ArrayBuffer.isView(value) && Object.values(value).some((v) => holds(v, text)));

describe("a batch's contexts cross to a worker only when its model reads them", () => {
  const ids = ['req-Alpha', 'req-Bravo', 'req-Charlie', 'req-Delta', 'req-Echo'];
  const events = () => ids.map((id, i) => toEvent(body(1, i * 4), { id }));

  it('a batched OnnxModel: each batch call carries its input count, no event id crosses; the answers are the in-process ones', async () => {
    const tasks = recordTasks();
    const batching = { batching: { maxBatchSize: 4, maxWaitMs: 20 } };
    const pooled = await lastValueFrom(
      from(events()).pipe(modelRunner({ models: [onnx(batching)], raiseException: false, pool: { maxThreads: 1 } }), toArray()),
    );
    const sent = tasks.filter((t) => Array.isArray(t.task)).map((t) => t.task as unknown[]);
    // [spec, id, eventId, origin, path, input, contexts, op, listen] per call; a batch call's own
    // id fields are its first input's, so only the contexts of the others could carry theirs.
    const counts = sent.flatMap((flat) => Array.from({ length: flat.length / 9 }, (_, n) => flat[9 * n + 6]));
    expect(counts.reduce((a: number, c) => a + (c as number), 0)).toBe(ids.length);
    for (const count of counts) expect(typeof count).toBe('number');
    for (const id of ids.slice(1))
      expect(
        sent.some((flat) =>
          holds(
            flat.filter((_, k) => k % 9 !== 2),
            id,
          ),
        ),
      ).toBe(false);
    restore.pop()!();
    const inProcess = await lastValueFrom(
      from(events()).pipe(
        modelRunner({ models: [onnx({ ...batching, executionMechanism: 'asyncio' })], raiseException: false }),
        toArray(),
      ),
    );
    expect(pooled.map((e) => e.id)).toEqual(ids);
    expect(JSON.stringify(pooled.map((e) => e.body))).toBe(JSON.stringify(inProcess.map((e) => e.body)));
  });

  it('a listener on a batched OnnxModel gets its result, and nothing is left waiting for partials', async () => {
    const graph = createGraph({ name: 'onnx-listening' });
    const client = invoker(
      graph.modelRunner({ models: [onnx({ batching: { maxBatchSize: 4, maxWaitMs: 5 } })], pool: { maxThreads: 1 } }),
      {
        graph,
      },
    );
    try {
      await graph.ready();
      const [a, b] = await Promise.all([lastValueFrom(client.stream(body(1, 0)).pipe(toArray())), client.invoke(body(1, 4))]);
      expect(a.map((m) => m.type)).toEqual(['result']);
      expect(b.body).toMatchObject({ model_name: 'mlp', outputs: [{ name: 'y', shape: [1, 3] }] });
    } finally {
      await client.close();
    }
  });

  it("a batching model of the user's own module gets every call's context in its worker", async () => {
    const entry: ModelEntry = {
      endpointName: 'echo',
      modelClass: { module: new URL('./fixtures/batchModels.mjs', import.meta.url).href, export: 'ContextEcho' },
      executionMechanism: 'thread_pool',
      batching: { maxBatchSize: 4, maxWaitMs: 20 },
    };
    const out = await lastValueFrom(from(events()).pipe(modelRunner({ models: [entry], pool: { maxThreads: 1 } }), toArray()));
    expect(out.map((e) => e.body)).toEqual(ids.map((eventId) => ({ eventId, origin: 'echo' })));
  });
});

// Idle threads wait in Atomics.wait (piscina's 'sync' atomics, issue 26 goal 4), where no message
// reaches them: the close request is one task per thread.
describe('closing a thread pool', () => {
  it("runs every thread's model close() exactly once, idle threads too", async () => {
    const log = join(mkdtempSync(join(tmpdir(), 'rxserve-close-')), 'close.log');
    const workerModels = new URL('./fixtures/workerModels.mjs', import.meta.url).href;
    const entry: ModelEntry = {
      endpointName: 'c',
      modelClass: { module: workerModels, export: 'Closer' },
      executionMechanism: 'thread_pool',
      params: { log },
    };
    const out = await lastValueFrom(
      from([{}]).pipe(asEvents(), modelRunner({ models: [entry], pool: { poolFactor: 3, maxThreads: 3 } }), toArray()),
    );
    expect(out).toHaveLength(1);
    const deadline = Date.now() + 5_000;
    while ((!existsSync(log) || readFileSync(log, 'utf8').split('\n').length < 4) && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 20));
    await new Promise((r) => setTimeout(r, 100)); // a fourth line would come now
    expect(readFileSync(log, 'utf8')).toBe('closed c\n'.repeat(3));
  });
});
