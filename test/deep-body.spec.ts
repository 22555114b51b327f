// Issue 22, High 1: one deep JSON body stopped a worker-mechanism model for good (a RangeError in a
// recursive walk, thrown inside the lane's `run`, kept the lane's slot). Now the edges refuse
// bodies deeper than maxBodyDepth (400 over HTTP, a TypeError answer from invoker()), nothing in
// rxserve recurses on a body's depth, and a throw on the way to a worker frees its slot.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createGraph, invoker, serve, type ModelEntry } from '../src/index.js';

const fixture = new URL('./fixtures/chaosModels.mjs', import.meta.url).href;
const MECHANISMS = ['thread_pool', 'process_pool', 'dedicated_process'] as const;

/** `{"a":{"a":...1...}}` nested `depth` levels, as text (a body JSON.stringify could not build). */
const deepText = (depth: number): string => '{"a":'.repeat(depth) + '1' + '}'.repeat(depth);
const deepValue = (depth: number): unknown => {
  let value: unknown = 1;
  for (let i = 0; i < depth; i++) value = { a: value };
  return value;
};
/** How deep the echo of a `deepValue` is (counted without recursion). */
const depthOf = (value: unknown): number => {
  let depth = 0;
  while (typeof value === 'object' && value !== null && 'a' in value) {
    value = (value as { a: unknown }).a;
    depth++;
  }
  return depth;
};

function graphWithEchoes() {
  const graph = createGraph({ name: 'deep' });
  graph.configurePoolResource({ maxThreads: 1, maxProcesses: 1 });
  // One slot per model: a slot kept by a failed call would stall every later request.
  const models: ModelEntry[] = MECHANISMS.map((mechanism) => ({
    endpointName: mechanism,
    modelClass: { module: fixture, export: 'Echo' },
    executionMechanism: mechanism,
    maxInFlight: 1,
    timeoutMs: 10_000,
  }));
  return { graph, pipeline: graph.modelRunner({ name: 'echoes', models }) };
}

describe('a deep body over HTTP (serve)', () => {
  let server: Awaited<ReturnType<typeof serve>>;
  beforeAll(async () => {
    const { graph, pipeline } = graphWithEchoes();
    server = await serve(pipeline, { graph, port: 0, timeoutMs: 15_000 });
    await graph.ready();
  });
  afterAll(() => server?.close());

  const post = (text: string) =>
    fetch(`${server.url}/score`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: text });

  it('is a 400 naming the limit, and every later request to each worker model is answered', async () => {
    for (let round = 0; round < 2; round++) {
      const refused = await post(deepText(5_000));
      expect(refused.status).toBe(400);
      expect(await refused.json()).toEqual({
        error: expect.stringMatching(/^TypeError: body is nested deeper than 256 levels \(at body\.a\.a\.a.*; the limit is maxBodyDepth$/),
      });
    }
    const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => post(JSON.stringify({ n: i }))));
    expect(answers.map((r) => r.status)).toEqual(Array(20).fill(200));
    const bodies = (await Promise.all(answers.map((r) => r.json()))) as Record<string, { echo: { n: number } }>[];
    bodies.forEach((body, i) => {
      for (const mechanism of MECHANISMS) expect(body[mechanism].echo).toEqual({ n: i });
    });
    expect((await fetch(`${server.url}/v2/health/ready`)).status).toBe(200);
  });

  it('a body at the limit (256 levels) goes through every mechanism and comes back whole', async () => {
    const answer = await post(deepText(255).replace(/^/, '{"x":') + '}');
    expect(answer.status).toBe(200);
    const body = (await answer.json()) as Record<string, { echo: { x: unknown } }>;
    for (const mechanism of MECHANISMS) expect(depthOf(body[mechanism].echo.x)).toBe(255);
  });
});

describe('a deep body through invoker()', () => {
  it('is answered at once with a TypeError, and the worker models keep answering', async () => {
    const { graph, pipeline } = graphWithEchoes();
    const client = invoker(pipeline, { graph, timeoutMs: 15_000 });
    try {
      for (let i = 0; i < 2; i++) {
        const refused = await client.invoke(deepValue(5_000), { id: `deep${i}` });
        expect(refused.id).toBe(`deep${i}`);
        expect(refused.error).toBeInstanceOf(TypeError);
        expect(refused.error?.message).toMatch(/^body is nested deeper than 256 levels \(at body\.a\.a/);
      }
      const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => client.test<Record<string, { echo: unknown }>>({ n: i })));
      answers.forEach((body, i) => {
        for (const mechanism of MECHANISMS) expect(body[mechanism].echo).toEqual({ n: i });
      });
    } finally {
      await client.close();
    }
  });

  it('with the limit lifted, a 5,000-deep body is answered (result or a clear error) and nothing stalls', async () => {
    const { graph, pipeline } = graphWithEchoes();
    const client = invoker(pipeline, { graph, timeoutMs: 15_000, maxBodyDepth: 1_000_000 });
    try {
      for (let i = 0; i < 2; i++) {
        const out = await client.invoke<Record<string, { echo: unknown }>>(deepValue(5_000));
        // What crosses to a worker is copied by V8 (structured clone, JSON for process IPC), which
        // may refuse a value this deep with its own error: that fails this event, never the lane.
        if (out.error === undefined) {
          for (const mechanism of MECHANISMS) expect(depthOf(out.body[mechanism].echo)).toBe(5_000);
        } else {
          expect(out.error.name).not.toBe('ModelTimeoutError');
        }
      }
      const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => client.test<Record<string, { echo: unknown }>>({ n: i })));
      expect(answers.map((b) => (b.thread_pool.echo as { n: number }).n)).toEqual(Array.from({ length: 20 }, (_, i) => i));
    } finally {
      await client.close();
    }
  });

  it('maxBodyDepth must be a positive integer', () => {
    expect(() => invoker((s) => s, { maxBodyDepth: 0 })).toThrow(/invoker\.maxBodyDepth/);
  });
});
