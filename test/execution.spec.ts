// The worker mechanisms end to end, through the public operator: same results everywhere, errors
// rebuilt across the boundary, crashes, hangs, load failures, transfer, sizing and shutdown.
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { firstValueFrom, from, lastValueFrom, Subject, toArray } from 'rxjs';
import { Piscina } from 'piscina';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nodeChildren } from './support/processes.js';
import {
  ConfigError,
  ModelLoadError,
  ModelRunnerError,
  asEvents,
  modelRunner,
  registerModel,
  toEvent,
  unregisterModel,
  type ExecutionMechanism,
  type ModelEntry,
  type ModelRunnerConfig,
  type ServingEvent,
} from '../src/index.js';

const fixture = new URL('./fixtures/workerModels.mjs', import.meta.url).href;
const ref = (name: string) => ({ module: fixture, export: name });
const WORKER_MECHANISMS = ['thread_pool', 'process_pool', 'dedicated_process'] as const;
const ALL_MECHANISMS = ['naive', 'asyncio', ...WORKER_MECHANISMS] as const;

const run = (bodies: unknown[], config: ModelRunnerConfig) => lastValueFrom(from(bodies).pipe(asEvents(), modelRunner(config), toArray()));

beforeAll(() => {
  registerModel('Affine', ref('Affine'));
});
afterAll(() => {
  unregisterModel('Affine');
});

describe('the same model on every mechanism', () => {
  const bodies = [{ x: 1, models: ['a', 'b'] }, { x: 2, models: ['b'] }, { x: 3 }, { x: 4, models: [] }];
  const expected = [
    { a: { y: 7 }, b: { x: 1, models: ['a', 'b'], pred: { y: 1 } } },
    { b: { x: 2, models: ['b'], pred: { y: 2 } } },
    { a: { y: 19 }, b: { x: 3, pred: { y: 3 } } },
    {},
  ];
  const selector = (e: ServingEvent) => (e.body as { models?: string[] }).models ?? null;
  const entries = (ma: ExecutionMechanism, mb: ExecutionMechanism): ModelEntry[] => [
    { endpointName: 'a', modelClass: 'Affine', executionMechanism: ma, params: { a: 6, b: 1 } },
    { endpointName: 'b', modelClass: ref('Affine'), executionMechanism: mb, resultPath: 'pred' },
  ];
  const bodiesOf = (out: ServingEvent[]) => out.map((e) => e.body);

  it.each(ALL_MECHANISMS)('%s gives the same results, with a selector and a resultPath', async (mechanism) => {
    expect(bodiesOf(await run(bodies, { models: entries(mechanism, mechanism), selector }))).toEqual(expected);
  });

  it('two models on different mechanisms in one step (thread_pool + dedicated_process, process_pool + naive)', async () => {
    expect(bodiesOf(await run(bodies, { models: entries('thread_pool', 'dedicated_process'), selector }))).toEqual(expected);
    expect(bodiesOf(await run(bodies, { models: entries('process_pool', 'naive'), selector }))).toEqual(expected);
  });
});

describe.each(WORKER_MECHANISMS)('%s', (mechanism) => {
  const faulty: ModelEntry = { endpointName: 'f', modelClass: ref('Faulty'), executionMechanism: mechanism };

  it('rebuilds a thrown error with its class, message, fields and cause; other events unaffected', async () => {
    const out = await run([{ do: 'throw', value: 7 }, { value: 1 }], { models: [faulty], raiseException: false });
    expect(out[0].body).toEqual({ error: 'RangeError: bad value 7' });
    expect(out[1].body).toEqual({ ok: 1 });
    const raised = await run([{ do: 'throw', value: 7 }], { models: [faulty, { ...faulty, endpointName: 'g' }] });
    expect(raised[0].error).toBeInstanceOf(ModelRunnerError);
    // the error object itself, through a stream of calls that keeps the class
    const direct = await firstValueFrom(
      from([toEvent({ do: 'throw', value: 2 })]).pipe(modelRunner({ models: [faulty], raiseException: false })),
    );
    expect(direct.body).toEqual({ error: 'RangeError: bad value 2' });
  });

  it('a crashing worker fails only its calls with WorkerCrashedError; later calls succeed', async () => {
    for (const how of ['crash', 'exit']) {
      const subject = new Subject<ServingEvent>();
      const outputs: ServingEvent[] = [];
      const done = new Promise<void>((resolve) =>
        subject
          .pipe(modelRunner({ models: [faulty], raiseException: false, ordered: false }))
          .subscribe({ next: (e) => outputs.push(e), complete: resolve }),
      );
      subject.next(toEvent({ do: how }, { id: 'boom' }));
      // the next event goes in once the crash has been seen (sent earlier, it could reach the dying worker)
      while (outputs.length === 0) await new Promise((r) => setTimeout(r, 10));
      subject.next(toEvent({ value: 'after' }, { id: 'after' }));
      subject.complete();
      await done;
      const byId = Object.fromEntries(outputs.map((e) => [e.id, e.body]));
      expect(byId.boom).toEqual({ error: expect.stringMatching(/^WorkerCrashedError: /) });
      expect(byId.after).toEqual({ ok: 'after' });
    }
  });

  it('a hanging call times out (ModelTimeoutError), is cancelled cooperatively, the worker keeps serving', async () => {
    const out = await run([{ do: 'pid' }, { do: 'hang' }, { do: 'pid' }], {
      models: [{ ...faulty, timeoutMs: 200 }],
      raiseException: false,
      maxInFlight: 1,
      pool: { cancelGraceMs: 5_000 },
    });
    expect(out[1].body).toEqual({ error: "ModelTimeoutError: model 'f' timed out after 200 ms" });
    expect((out[2].body as { pid: number }).pid).toBe((out[0].body as { pid: number }).pid);
  });

  it('a call that ignores cancellation gets its worker terminated after the grace period; later calls succeed', async () => {
    const subject = new Subject<ServingEvent>();
    const outputs: ServingEvent[] = [];
    const done = new Promise<void>((resolve) =>
      subject
        .pipe(modelRunner({ models: [{ ...faulty, timeoutMs: 100 }], raiseException: false, pool: { cancelGraceMs: 200 } }))
        .subscribe({ next: (e) => outputs.push(e), complete: resolve }),
    );
    subject.next(toEvent({ do: 'pid' }, { id: 'pid' }));
    subject.next(toEvent({ do: 'spin' }, { id: 'spin' }));
    while (outputs.length < 2) await new Promise((r) => setTimeout(r, 10));
    // the spinning worker (the 60 s loop ignores its signal) is terminated after the grace period;
    // its replacement needs a moment to start and load, and a call's 100 ms timeout includes that
    // wait: on a loaded machine the first calls after it may time out, so ask until one answers.
    let next: unknown;
    const deadline = Date.now() + 15_000;
    for (let i = 0; next === undefined && Date.now() < deadline; i++) {
      await new Promise((r) => setTimeout(r, 300));
      const id = `next${i}`;
      subject.next(toEvent({ do: 'pid' }, { id }));
      while (!outputs.some((e) => e.id === id)) await new Promise((r) => setTimeout(r, 10));
      const body = outputs.find((e) => e.id === id)!.body as { pid?: number };
      if (typeof body.pid === 'number') next = body;
    }
    subject.complete();
    await done;
    const byId = Object.fromEntries(outputs.map((e) => [e.id, e.body]));
    expect(byId.spin).toEqual({ error: "ModelTimeoutError: model 'f' timed out after 100 ms" });
    expect(next).toEqual({ pid: expect.any(Number) });
    byId.next = next;
    if (mechanism !== 'thread_pool') expect((byId.next as { pid: number }).pid).not.toBe((byId.pid as { pid: number }).pid);
  });

  it('a model that cannot load errors the stream with ModelLoadError naming it', async () => {
    await expect(
      run([{}], { models: [{ endpointName: 'broken', modelClass: ref('NoLoad'), executionMechanism: mechanism }] }),
    ).rejects.toSatisfy(
      (e: unknown) => e instanceof ModelLoadError && /model 'broken' could not be loaded: weights not found/.test((e as Error).message),
    );
    await expect(
      run([{}], { models: [{ endpointName: 'missing', modelClass: { module: '/no/such/module.mjs' }, executionMechanism: mechanism }] }),
    ).rejects.toThrow(/model 'missing' could not be loaded: cannot import module '\/no\/such\/module\.mjs'/);
  });

  it("runs each model's close() in its worker when the pipeline completes", async () => {
    const log = join(mkdtempSync(join(tmpdir(), 'rxserve-')), 'close.log');
    await run([{}, {}], { models: [{ endpointName: 'c', modelClass: ref('Closer'), executionMechanism: mechanism, params: { log } }] });
    const deadline = Date.now() + 5_000;
    while (!existsSync(log) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(readFileSync(log, 'utf8')).toMatch(/^(closed c\n)+$/);
  });

  it('a name registered to a class is refused with a ConfigError saying how to register a module', async () => {
    class Local {}
    registerModel('LocalOnly', Local as never);
    await expect(run([{}], { models: [{ endpointName: 'l', modelClass: 'LocalOnly', executionMechanism: mechanism }] })).rejects.toThrow(
      ConfigError,
    );
    unregisterModel('LocalOnly');
  });
});

describe('processes', () => {
  it('a process killed from outside (SIGKILL) fails its calls; it is replaced and later calls succeed', async () => {
    for (const mechanism of ['process_pool', 'dedicated_process'] as const) {
      const subject = new Subject<ServingEvent>();
      const outputs: ServingEvent[] = [];
      const done = new Promise<void>((resolve) =>
        subject
          .pipe(
            modelRunner({
              models: [{ endpointName: 'f', modelClass: ref('Faulty'), executionMechanism: mechanism }],
              raiseException: false,
              ordered: false,
            }),
          )
          .subscribe({ next: (e) => outputs.push(e), complete: resolve }),
      );
      subject.next(toEvent({ do: 'pid' }, { id: 'pid' }));
      while (outputs.length === 0) await new Promise((r) => setTimeout(r, 10));
      const pid = (outputs[0].body as { pid: number }).pid;
      subject.next(toEvent({ do: 'hang' }, { id: 'victim' }));
      await new Promise((r) => setTimeout(r, 100));
      process.kill(pid, 'SIGKILL');
      await new Promise((r) => setTimeout(r, 100));
      subject.next(toEvent({ do: 'pid' }, { id: 'after' }));
      subject.complete();
      await done;
      const byId = Object.fromEntries(outputs.map((e) => [e.id, e.body]));
      expect(byId.victim).toEqual({ error: expect.stringMatching(/^WorkerCrashedError: the process of .* was killed by SIGKILL/) });
      expect((byId.after as { pid: number }).pid).not.toBe(pid);
    }
  });

  it('a dedicated process whose load() keeps failing after a crash surfaces ModelLoadError instead of restarting forever', async () => {
    const marker = join(mkdtempSync(join(tmpdir(), 'rxserve-')), 'broken');
    const subject = new Subject<ServingEvent>();
    const outputs: ServingEvent[] = [];
    const failed = new Promise<unknown>((resolve) =>
      subject
        .pipe(
          modelRunner({
            models: [{ endpointName: 'flaky', modelClass: ref('FlakyLoad'), executionMechanism: 'dedicated_process', params: { marker } }],
            raiseException: false,
          }),
        )
        .subscribe({ next: (e) => outputs.push(e), error: resolve }),
    );
    subject.next(toEvent({}, { id: 'first' }));
    while (outputs.length === 0) await new Promise((r) => setTimeout(r, 10));
    writeFileSync(marker, 'x');
    subject.next(toEvent({ do: 'exit' }, { id: 'crash' }));
    const error = await failed;
    expect(error).toBeInstanceOf(ModelLoadError);
    expect((error as Error).message).toMatch(/failed to start 3 times in a row \(last: .*\); not restarting/);
    expect(outputs.map((e) => e.id)).toContain('crash'); // the crashed call itself was answered
  });

  it('pool sizing follows MLRun: min(models × poolFactor, maxProcesses); one process per dedicated model', async () => {
    const where = (n: number, mechanism: ExecutionMechanism): ModelEntry[] =>
      Array.from({ length: n }, (_, i) => ({ endpointName: `w${i}`, modelClass: ref('Where'), executionMechanism: mechanism }));
    // one registered model: the body is its output; several: keyed by endpoint name
    const pidsOf = (out: ServingEvent[]) =>
      new Set(
        out.flatMap((e) => {
          const body = e.body as Record<string, unknown>;
          if (typeof body.pid === 'number') return [body.pid];
          return Object.values(body as Record<string, { pid: number }>).map((v) => v.pid);
        }),
      );
    const many = Array.from({ length: 40 }, () => ({}));
    expect(pidsOf(await run(many, { models: where(2, 'process_pool'), pool: { maxProcesses: 1 } })).size).toBe(1);
    expect(pidsOf(await run(many, { models: where(1, 'process_pool'), pool: { poolFactor: 2, maxProcesses: 4 } })).size).toBe(2);
    const dedicated = await run([{}], { models: where(3, 'dedicated_process') });
    expect(pidsOf(dedicated).size).toBe(3);
    // each dedicated process loaded its model exactly once
    expect(Object.values(dedicated[0].body as Record<string, { loads: number }>).map((v) => v.loads)).toEqual([1, 1, 1]);
  });

  it('completing or unsubscribing releases every process', async () => {
    // processes of earlier tests may still be closing: start from a settled count
    const settle = async (target: number) => {
      const deadline = Date.now() + 5_000;
      while (nodeChildren() > target && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    };
    await settle(0);
    const before = nodeChildren();
    await run([{}], {
      models: [
        { endpointName: 'a', modelClass: ref('Where'), executionMechanism: 'process_pool' },
        { endpointName: 'b', modelClass: ref('Where'), executionMechanism: 'dedicated_process' },
      ],
    });
    const subject = new Subject<ServingEvent>();
    const sub = subject
      .pipe(modelRunner({ models: [{ endpointName: 'h', modelClass: ref('Faulty'), executionMechanism: 'dedicated_process' }] }))
      .subscribe();
    subject.next(toEvent({ do: 'hang' }));
    await new Promise((r) => setTimeout(r, 500));
    expect(nodeChildren()).toBeGreaterThan(before);
    sub.unsubscribe();
    await settle(before);
    expect(nodeChildren()).toBe(before);
  });
});

describe('threads', () => {
  it('TypedArray inputs and outputs cross by transfer (the worker sees its previous output detached)', async () => {
    const values = new Float32Array([1, 2, 3]);
    const out = await run([{ values }, { values }], {
      models: [{ endpointName: 'arr', modelClass: ref('Arrays'), executionMechanism: 'thread_pool' }],
      maxInFlight: 1,
    });
    const first = out[0].body as { out: Float64Array; inputType: string; previousDetached: boolean | null };
    expect(first.out).toBeInstanceOf(Float64Array);
    expect([...first.out]).toEqual([2, 4, 6]);
    expect(first.inputType).toBe('Float32Array');
    expect((out[1].body as { previousDetached: boolean }).previousDetached).toBe(true);
    expect([...values]).toEqual([1, 2, 3]); // the event's own array is untouched
  });

  it('a thread running one batch is given the next one at once (no wait for the answer to reach the main thread)', async () => {
    // One model, one thread, two batch slots: 'wait' runs until 'mark' has run on the same thread.
    // Before, piscina kept the second batch on the main side until the first one answered, so
    // 'wait' gave up after 3 s without seeing it (and a busy pool paid a round trip per batch).
    const entry: ModelEntry = { endpointName: 'o', modelClass: ref('Overlap'), executionMechanism: 'thread_pool' };
    const subject = new Subject<ServingEvent>();
    const outputs: ServingEvent[] = [];
    const done = new Promise<void>((resolve) =>
      subject.pipe(modelRunner({ models: [entry], ordered: false })).subscribe({ next: (e) => outputs.push(e), complete: resolve }),
    );
    // The thread is loaded before the two calls go: the first call must not be the one that waits for it.
    subject.next(toEvent({ do: 'wait', ms: 0 }, { id: 'warm' }));
    while (outputs.length === 0) await new Promise((r) => setTimeout(r, 10));
    subject.next(toEvent({ do: 'wait', ms: 3_000 }, { id: 'wait' }));
    subject.next(toEvent({ do: 'mark' }, { id: 'mark' }));
    subject.complete();
    await done;
    const byId = Object.fromEntries(outputs.map((e) => [e.id, e.body]));
    expect(byId.mark).toEqual({ marked: true });
    expect(byId.wait).toEqual({ sawMark: true });
  });

  it("uses the user's own piscina pool and leaves it running", async () => {
    const { workerEntry } = await import('../src/execution/workerEntry.js');
    const piscina = new Piscina({ filename: workerEntry('threadWorker'), maxThreads: 1 });
    const out = await run([{ x: 2 }], {
      models: [{ endpointName: 'a', modelClass: 'Affine', executionMechanism: 'thread_pool', params: { a: 3 } }],
      pool: { piscina },
    });
    expect(out[0].body).toEqual({ y: 6 });
    expect(piscina.completed).toBeGreaterThan(0);
    await piscina.destroy();
  });

  it('validates pool options, naming the field', () => {
    expect(() =>
      modelRunner({ models: [{ endpointName: 'a', modelClass: 'Affine', executionMechanism: 'thread_pool' }], pool: { maxThreads: 0 } }),
    ).toThrow(/modelRunner\.pool\.maxThreads: expected a positive integer, got 0/);
  });
});
