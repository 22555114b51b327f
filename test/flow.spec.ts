// Flows (docs/design.md §17) on real mechanisms and real sockets: modelRunner steps on naive, asyncio and
// thread_pool; served by invoker() and serve(); cancellation reaching work inside the flow;
// close() waiting for background branches (bounded by closeTimeoutMs); a chaos run.
import { Subject } from 'rxjs';
import { afterEach, describe, expect, it } from 'vitest';
import {
  choice,
  createGraph,
  CycleLimitError,
  invoker,
  Model,
  serve,
  step,
  toEvent,
  type Graph,
  type Invoker,
  type PredictContext,
  type Server,
  type ServingEvent,
} from '../src/index.js';
import { flowRuntimeOf } from '../src/flow/runtime.js';

const workerModels = new URL('./fixtures/workerModels.mjs', import.meta.url).href;
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** What the models saw: started calls, aborted calls (by event id), finished side work. */
const probe = { aborted: [] as string[], audited: [] as string[] };

/** Writes a draft: `{ draft: '<question> #<n>', attempt: n }`; waits `body.ms` first, aborts with its signal. */
class Writer extends Model<{ question: string; attempt?: number; ms?: number }, unknown> {
  override predict(body: { question: string; attempt?: number; ms?: number }, ctx: PredictContext) {
    const attempt = (body.attempt ?? 0) + 1;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => resolve({ ...body, attempt, draft: `${body.question} #${attempt}` }), body.ms ?? 1);
      ctx.signal.addEventListener('abort', () => {
        clearTimeout(timer);
        probe.aborted.push(ctx.eventId);
        reject(ctx.signal.reason);
      });
    });
  }
}

/** Checks a draft: good once `attempt >= body.goodAt`; throws on `body.judgeFails`. */
class Judge extends Model<{ attempt: number; goodAt?: number; judgeFails?: boolean }, unknown> {
  override predict(body: { attempt: number; goodAt?: number; judgeFails?: boolean }) {
    if (body.judgeFails) throw new TypeError('judge is down');
    return { ...body, verdict: body.attempt >= (body.goodAt ?? 1) ? 'good' : 'retry' };
  }
}

/** An LLM-as-judge flow: generate (asyncio) → judge (naive) → choice → reply, an audit side branch, a fallback. */
function judgeFlow(graph: Graph, options: { auditMs?: number; maxIterations?: number } = {}) {
  const f = graph.flow({ name: 'judge-loop' });
  f.to(
    'generate',
    graph.modelRunner({ name: 'generate', models: [{ endpointName: 'writer', modelClass: Writer, executionMechanism: 'asyncio' }] }),
    {
      maxIterations: options.maxIterations ?? 3,
    },
  )
    .to('judge', graph.modelRunner({ name: 'judge', models: [{ endpointName: 'judge', modelClass: Judge, executionMechanism: 'naive' }] }))
    .errorHandler(
      'fallback',
      step(() => ({ answer: 'no verdict today' })),
    )
    .to(
      'decide',
      choice((e) => ((e.body as { verdict: string }).verdict === 'good' ? 'reply' : 'generate')),
    )
    .cycleTo('generate');
  f.add(
    'reply',
    step((b: { draft: string; attempt: number }) => ({ answer: b.draft, attempts: b.attempt })),
    { after: 'decide' },
  ).respond();
  f.add(
    'audit',
    step(
      async (b: { draft: string }, { signal }) => {
        await new Promise<void>((resolve, reject) => {
          const timer = setTimeout(resolve, options.auditMs ?? 1);
          signal.addEventListener('abort', () => (clearTimeout(timer), reject(signal.reason)));
        });
        probe.audited.push(b.draft);
        return b;
      },
      { name: 'audit' },
    ),
    { after: 'generate' },
  );
  return f.build();
}

let clients: Invoker[] = [];
let servers: Server[] = [];
afterEach(async () => {
  await Promise.all([...clients.map((c) => c.close()), ...servers.map((s) => s.close())]);
  clients = [];
  servers = [];
  probe.aborted.length = 0;
  probe.audited.length = 0;
});

describe('flows on real mechanisms', () => {
  it('an LLM-as-judge loop on asyncio and naive modelRunners, through invoker(): retries, bound, fallback, side branch', async () => {
    const graph = createGraph({ name: 'judge' });
    const pipeline = judgeFlow(graph);
    const client = invoker(pipeline, { graph });
    clients.push(client);
    await graph.ready();
    expect(await client.test({ question: 'q1', goodAt: 1 })).toEqual({ answer: 'q1 #1', attempts: 1 });
    expect(await client.test({ question: 'q2', goodAt: 3 })).toEqual({ answer: 'q2 #3', attempts: 3 });
    const limited = await client.invoke({ question: 'q3', goodAt: 9 }, { id: 'q3' });
    expect(limited.error).toBeInstanceOf(CycleLimitError);
    expect(limited.error?.message).toMatch(/^step 'generate' already ran maxIterations \(3\) times for event 'q3'/);
    const fallback = await client.invoke({ question: 'q4', judgeFails: true });
    expect(fallback.body).toEqual({ answer: 'no verdict today' });
    expect(fallback.metadata.error).toEqual({
      step: 'judge',
      error: "ModelRunnerError: step 'judge': judge failed (TypeError: judge is down)",
    });
    await client.close();
    // Every draft was audited (1 + 3 + 3 + 1), the side branch having finished before close() resolved.
    expect(probe.audited.sort()).toEqual(['q1 #1', 'q2 #1', 'q2 #2', 'q2 #3', 'q3 #1', 'q3 #2', 'q3 #3', 'q4 #1']);
    expect(flowRuntimeOf(pipeline)!.live).toBe(0);
  });

  it('a linear flow (run on counts, src/flow/linear.ts) of asyncio and naive modelRunners through invoker(): answers, fallback, timeout aborting the call', async () => {
    const graph = createGraph();
    const f = graph.flow({ name: 'straight' });
    f.to(
      'generate',
      graph.modelRunner({ name: 'generate', models: [{ endpointName: 'writer', modelClass: Writer, executionMechanism: 'asyncio' }] }),
    )
      .to(
        'judge',
        graph.modelRunner({ name: 'judge', models: [{ endpointName: 'judge', modelClass: Judge, executionMechanism: 'naive' }] }),
      )
      .errorHandler(
        'fallback',
        step(() => ({ verdict: 'unknown' })),
      )
      .respond();
    const pipeline = f.build();
    expect(flowRuntimeOf(pipeline)!.plan.linear).toBe(true);
    const client = invoker(pipeline, { graph, timeoutMs: 150 });
    clients.push(client);
    expect(await client.test({ question: 'q', goodAt: 1 })).toMatchObject({ draft: 'q #1', verdict: 'good' });
    const fallback = await client.invoke({ question: 'q', judgeFails: true });
    expect(fallback.body).toEqual({ verdict: 'unknown' });
    expect((fallback.metadata.error as { step: string }).step).toBe('judge');
    const timedOut = await client.invoke({ question: 'slow', ms: 5_000 }, { id: 'linear-timeout' });
    expect(timedOut.error?.name).toBe('ModelTimeoutError');
    await sleep(20);
    expect(probe.aborted).toEqual(['linear-timeout']);
    // The timed-out call failed in 'generate' (aborted) and passed 'judge' as nobody else's error.
    expect(
      flowRuntimeOf(pipeline)!
        .stats()
        .map((s) => [s.step, s.inFlight, s.errors]),
    ).toEqual([
      ['generate', 0, 1],
      ['judge', 0, 1],
      ['fallback', 0, 0],
    ]);
    await client.close();
    expect(flowRuntimeOf(pipeline)!.live).toBe(0);
  });

  it('a thread_pool modelRunner step inside a flow, next to naive ones, with a side branch', async () => {
    const graph = createGraph();
    const affine = (name: string, mechanism: 'thread_pool' | 'naive', params: Record<string, number>) =>
      graph.modelRunner({
        name,
        models: [{ endpointName: name, modelClass: { module: workerModels, export: 'Affine' }, executionMechanism: mechanism, params }],
      });
    const f = graph.flow();
    f.to('double', affine('double', 'thread_pool', { a: 2 }))
      .to(
        'reshape',
        step((b: { y: number }) => ({ x: b.y })),
      )
      .to('plus', affine('plus', 'naive', { b: 100 }))
      .to(
        'answer',
        step((b: { y: number }) => ({ result: b.y })),
      )
      .respond();
    const seen: number[] = [];
    f.add(
      'side',
      step((b: { y: number }) => (seen.push(b.y), b)),
      { after: 'double' },
    );
    const client = invoker(f.build(), { graph });
    clients.push(client);
    expect(await Promise.all([1, 2, 3].map((x) => client.test({ x })))).toEqual([{ result: 102 }, { result: 104 }, { result: 106 }]);
    await client.close();
    expect(seen.sort()).toEqual([2, 4, 6]);
    expect(graph.describe().flows?.[0]).toMatchObject({
      flow: 'flow',
      steps: [
        { step: 'double', entry: true },
        { step: 'reshape' },
        { step: 'plus' },
        { step: 'answer', responder: true },
        { step: 'side' },
      ],
    });
  });

  it('served over a real socket: the answer, 508 for a cycle past its bound, 404 when no branch reaches the responder', async () => {
    const graph = createGraph();
    const f = graph.flow({ name: 'http' });
    f.to(
      'route',
      choice((e) => (e.body as { to: string[] }).to),
    );
    f.add(
      'loop',
      step((b: { n?: number }) => ({ ...b, n: (b.n ?? 0) + 1 })),
      { after: 'route', maxIterations: 2 },
    )
      .to(
        'again',
        choice(() => 'loop'),
      )
      .cycleTo('loop');
    f.add(
      'reply',
      step((b) => ({ ok: b })),
      { after: ['route', 'again'] },
    ).respond();
    const server = await serve(f.build(), { graph, port: 0 });
    servers.push(server);
    const post = async (body: unknown) => {
      const res = await fetch(`${server.url}/ask`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      return { status: res.status, body: (await res.json()) as unknown };
    };
    expect(await post({ to: ['reply'] })).toEqual({ status: 200, body: { ok: { to: ['reply'] } } });
    expect(await post({ to: ['loop'] })).toMatchObject({
      status: 508,
      body: { error: expect.stringMatching(/^CycleLimitError: step 'loop' already ran maxIterations \(2\)/) },
    });
    expect(await post({ to: [] })).toMatchObject({
      status: 404,
      body: {
        error: expect.stringMatching(
          /^RouteNotFoundError: flow 'http': event '.*' never reached the responder 'reply'; it ended at 'route'$/,
        ),
      },
    });
  });

  it('an input’s cancel reaches work inside the flow: a timeout and an aborted request abort the model’s call', async () => {
    const graph = createGraph();
    const pipeline = judgeFlow(graph);
    const client = invoker(pipeline, { graph, timeoutMs: 100 });
    clients.push(client);
    const timedOut = await client.invoke({ question: 'slow', ms: 5_000 }, { id: 'timed-out' });
    expect(timedOut.error?.name).toBe('ModelTimeoutError');
    const controller = new AbortController();
    const aborted = client.invoke({ question: 'slow', ms: 5_000 }, { id: 'aborted', signal: controller.signal });
    await sleep(20);
    controller.abort(new Error('client left'));
    await expect(aborted).rejects.toThrow('client left');
    await sleep(20);
    expect(probe.aborted.sort()).toEqual(['aborted', 'timed-out']);
    expect(flowRuntimeOf(pipeline)!.live).toBe(0);
  });

  it('invoker.close() waits for background branches; past closeTimeoutMs it ends them (their work aborted)', async () => {
    const graph = createGraph();
    const client = invoker(judgeFlow(graph, { auditMs: 150 }), { graph });
    expect(await client.test({ question: 'bg' })).toEqual({ answer: 'bg #1', attempts: 1 });
    expect(probe.audited).toEqual([]);
    const t0 = Date.now();
    await client.close();
    expect(probe.audited).toEqual(['bg #1']);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(100);

    const g2 = createGraph();
    const pipeline = judgeFlow(g2, { auditMs: 10_000 });
    const short = invoker(pipeline, { graph: g2, closeTimeoutMs: 100 });
    expect(await short.test({ question: 'bg2' })).toEqual({ answer: 'bg2 #1', attempts: 1 });
    const t1 = Date.now();
    await short.close();
    expect(Date.now() - t1).toBeLessThan(2_000);
    expect(probe.audited).toEqual(['bg #1']);
    expect(flowRuntimeOf(pipeline)!.live).toBe(0);
  });

  it('graph.close() waits for the background branches of its flows (bounded by its closeTimeoutMs)', async () => {
    const graph = createGraph({ closeTimeoutMs: 5_000 });
    const pipeline = judgeFlow(graph, { auditMs: 100 });
    const source = new Subject<ServingEvent>();
    const answers: ServingEvent[] = [];
    source.pipe(pipeline).subscribe((e) => answers.push(e));
    source.next(toEvent({ question: 'g' }, { id: 'g' }));
    while (answers.length === 0) await sleep(5);
    expect(flowRuntimeOf(pipeline)!.live).toBe(1); // answered, its audit still running
    await graph.close();
    expect(probe.audited).toEqual(['g #1']);
    expect(graph.flowStats().every((s) => s.inFlight === 0)).toBe(true);

    const quick = createGraph({ closeTimeoutMs: 50 });
    const p2 = judgeFlow(quick, { auditMs: 10_000 });
    const s2 = new Subject<ServingEvent>();
    const sub = s2.pipe(p2).subscribe();
    s2.next(toEvent({ question: 'h' }, { id: 'h' }));
    await sleep(30);
    const t0 = Date.now();
    await quick.close();
    expect(Date.now() - t0).toBeLessThan(1_000);
    sub.unsubscribe();
    expect(flowRuntimeOf(p2)!.live).toBe(0);
  });
});

describe('graph.describe() and flowStats()', () => {
  it('list each flow’s steps (entry, responder, bound, kind) and edges (next, cycle, error, before)', () => {
    const graph = createGraph({ name: 'shape' });
    const f = graph.flow({ name: 'advisor' });
    const noop = step((b) => b);
    f.to('enrich', noop)
      .to('models', noop, { maxIterations: 2 })
      .errorHandler('fallback', noop, { before: 'reply' })
      .to(
        'judge',
        choice(() => 'reply'),
      )
      .cycleTo('models');
    f.add('reply', noop, { after: 'judge' }).respond();
    f.add('audit', noop, { after: 'models' });
    f.errorHandler('catch-all', noop);
    f.build();
    expect(graph.flow().name).toBe('flow');
    expect(graph.describe().flows).toEqual([
      {
        flow: 'advisor',
        steps: [
          { step: 'enrich', kind: 'step', entry: true },
          { step: 'models', kind: 'step', maxIterations: 2 },
          { step: 'judge', kind: 'choice' },
          { step: 'reply', kind: 'step', responder: true },
          { step: 'audit', kind: 'step' },
          { step: 'fallback', kind: 'errorHandler' },
          { step: 'catch-all', kind: 'errorHandler' },
        ],
        edges: [
          { from: 'enrich', to: 'models', kind: 'next' },
          { from: 'models', to: 'judge', kind: 'next' },
          { from: 'models', to: 'audit', kind: 'next' },
          { from: 'models', to: 'fallback', kind: 'error' },
          { from: 'judge', to: 'reply', kind: 'next' },
          { from: 'judge', to: 'models', kind: 'cycle' },
          { from: 'fallback', to: 'reply', kind: 'before' },
        ],
      },
    ]);
    expect(graph.flowStats().map((s) => `${s.flow}/${s.step}:${s.inFlight}`)).toEqual([
      'advisor/enrich:0',
      'advisor/models:0',
      'advisor/judge:0',
      'advisor/reply:0',
      'advisor/audit:0',
      'advisor/fallback:0',
      'advisor/catch-all:0',
    ]);
    // Flow names are unique in a graph.
    const again = graph.flow({ name: 'advisor' });
    again.to('x', noop);
    expect(() => again.build()).toThrow("flow.name: graph 'shape' already has a flow named 'advisor'");
  });
});

describe('flow chaos', () => {
  it('thousands of events with random branch errors, choices, cycles and aborts: each input answered exactly once, nothing left in the accounting', async () => {
    let seed = 23;
    const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    const work = (name: string) =>
      step(
        (b: { n: number; fail: string[]; hops?: number }, { signal }) => {
          if (b.fail.includes(name)) throw new Error(`${name} failed`);
          const ms = Math.floor(random() * 3);
          const out = { ...b, hops: (b.hops ?? 0) + 1 };
          if (ms === 0) return out;
          return new Promise((resolve, reject) => {
            const timer = setTimeout(() => resolve(out), ms);
            signal.addEventListener('abort', () => (clearTimeout(timer), reject(signal.reason)));
          });
        },
        { name, ordered: random() < 0.5, maxInFlight: 32 },
      );
    const graph = createGraph({ name: 'chaos' });
    const f = graph.flow({ name: 'chaos' });
    f.to('a', work('a')).errorHandler('a-fix', work('a-fix'));
    f.add('side', work('side'), { after: 'a' });
    f.add('loop', work('loop'), { after: 'a', maxIterations: 3 });
    f.add(
      'pick',
      choice((e) => {
        const b = e.body as { n: number; hops: number };
        if (b.n % 7 === 0) throw new Error('pick threw');
        if (b.n % 5 === 0) return [];
        if (b.n % 3 === 0 && b.hops < 6) return 'loop';
        return b.n % 2 === 0 ? ['b', 'c'] : 'b';
      }),
      { after: 'loop' },
    ).cycleTo('loop');
    f.add('b', work('b'), { after: 'pick' });
    f.add('c', work('c'), { after: 'pick' });
    f.add('reply', work('reply'), { after: ['b', 'c'] }).respond();
    f.errorHandler('catch-all', work('catch-all'));
    const pipeline = f.build();

    const total = 3_000;
    const names = ['a', 'a-fix', 'side', 'loop', 'b', 'c', 'reply', 'catch-all'];
    const answers = new Map<string, number>();
    const source = new Subject<ServingEvent>();
    let completed = false;
    const done = new Promise<void>((resolve, reject) =>
      source.pipe(pipeline).subscribe({
        next: (e) => answers.set(e.id, (answers.get(e.id) ?? 0) + 1),
        error: reject,
        complete: () => {
          completed = true;
          resolve();
        },
      }),
    );
    const controllers: AbortController[] = [];
    for (let n = 1; n <= total; n++) {
      const fail = names.filter(() => random() < 0.08);
      const controller = new AbortController();
      if (random() < 0.1) controllers.push(controller);
      source.next(toEvent({ n, fail }, { id: `e${n}`, signal: controller.signal }));
      if (n % 100 === 0) {
        await sleep(1);
        for (const c of controllers.splice(0)) c.abort(new Error('aborted'));
      }
    }
    source.complete();
    await Promise.race([done, sleep(30_000).then(() => Promise.reject(new Error('the flow did not complete')))]);
    expect(completed).toBe(true);
    expect(answers.size).toBe(total);
    expect([...answers.values()].every((count) => count === 1)).toBe(true);
    const runtime = flowRuntimeOf(pipeline)!;
    expect(runtime.live).toBe(0);
    expect(runtime.subscriptions.size).toBe(0);
    expect(runtime.stats().every((s) => s.inFlight === 0)).toBe(true);
    await graph.close();
  }, 60_000);
});
