// The spec kinds remoteStep, batchHttpRequests and queueStep (docs/design.md §14, §19): built by loadGraph
// from YAML with '{body.user}' templates, run against a loopback HTTP server and a real
// redis-server; bad templates and options named at their spec path; the JSON Schema takes them.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { from, lastValueFrom, toArray } from 'rxjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { ConfigError, loadGraph, toEvent, type ServingEvent } from '../src/index.js';
import { specSchema } from '../src/spec/graphSpec.js';
import { json, startServer, type TestServer } from './support/httpServer.js';
import { redisAvailable, withRedis, type RedisServer } from './support/redis.js';

let dir: string;
let http: TestServer;
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'rxserve-spec-remote-'));
  http = await startServer((req, res) => {
    const body = req.body === '' ? null : req.headers['content-type'] === 'application/json' ? JSON.parse(req.body) : req.body;
    json(res, 200, { method: req.method, url: req.url, body });
  });
});
afterAll(async () => {
  await http.close();
  rmSync(dir, { recursive: true, force: true });
});

const runSpec = async (spec: object, events: ServingEvent[]) => {
  const { graph, pipeline } = await loadGraph(spec, { baseDir: dir });
  try {
    return await lastValueFrom(from(events).pipe(pipeline, toArray()));
  } finally {
    await graph.close();
  }
};
const rejection = async (spec: object): Promise<ConfigError> => {
  try {
    await loadGraph(spec, { baseDir: dir });
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error('the spec was accepted');
};

describe('spec: remoteStep and batchHttpRequests with templates', () => {
  it('a YAML spec: a GET whose URL is a template (values percent-encoded), then a batch whose bodies are templates of the items', async () => {
    const file = join(dir, 'remote.yaml');
    writeFileSync(
      file,
      [
        'steps:',
        `  - remoteStep: { name: profile, urlExpression: '${http.url}/users/{body.user}?tenant={headers.x-tenant}', method: GET, resultPath: profile, timeoutMs: 5000, retries: 1 }`,
        `  - batchHttpRequests: { url: '${http.url}/city', inputPath: places, bodyExpression: '{item.id}', resultPath: cities, maxInFlight: 2 }`,
        `  - remoteStep: { url: '${http.url}', subpath: '$path', bodyExpression: '{body.profile.url}', resultPath: echo, returnJson: true }`,
      ].join('\n'),
    );
    const { graph, pipeline } = await loadGraph(file);
    try {
      const [out] = await lastValueFrom(
        from([toEvent({ user: 'a b/c', places: [{ id: 'x' }, { id: 'y' }] }, { path: '/fwd', headers: { 'x-tenant': 't&1' } })]).pipe(
          pipeline,
          toArray(),
        ),
      );
      expect(out.error).toBeUndefined();
      const body = out.body as Record<string, unknown>;
      expect(body.profile).toEqual({ method: 'GET', url: '/users/a%20b%2Fc?tenant=t%261', body: null });
      expect(body.cities).toEqual([
        { method: 'POST', url: '/city', body: 'x' },
        { method: 'POST', url: '/city', body: 'y' },
      ]);
      // A whole-value template sends the value itself (here a string, as text).
      expect(body.echo).toEqual({ method: 'POST', url: '/fwd', body: '/users/a%20b%2Fc?tenant=t%261' });
    } finally {
      await graph.close();
    }
  });

  it('a template path the event does not have fails that event with a TypeError naming the template', async () => {
    const [out] = await runSpec({ steps: [{ remoteStep: { url: http.url, bodyExpression: '{body.missing}' } }] }, [
      toEvent({ a: 1 }, { id: 'e9' }),
    ]);
    expect(out.error).toBeInstanceOf(TypeError);
    expect(out.error!.message).toBe("template '{body.missing}' (steps[0].remoteStep.bodyExpression): event 'e9' has no 'body.missing'");
  });

  it('bad templates and options are ConfigErrors at their spec path', async () => {
    expect((await rejection({ steps: [{ remoteStep: { urlExpression: 'http://x/{user}' } }] })).message).toMatch(
      /steps\[0\]\.remoteStep\.urlExpression: '\{user\}' in template 'http:\/\/x\/\{user\}' is not a dot path starting with body, path, id, headers, metadata, method/,
    );
    expect((await rejection({ steps: [{ remoteStep: { url: 'http://x', bodyExpression: '{item.id}' } }] })).path).toBe(
      'steps[0].remoteStep.bodyExpression',
    );
    expect((await rejection({ steps: [{ batchHttpRequests: { url: 'http://x', bodyExpression: '{item.}' } }] })).path).toBe(
      'steps[0].batchHttpRequests.bodyExpression',
    );
    expect((await rejection({ steps: [{ remoteStep: { url: 'http://x', retries: -1 } }] })).path).toBe('steps[0].remoteStep.retries');
    expect((await rejection({ steps: [{ remoteStep: { method: 'GET' } }] })).path).toBe('steps[0].remoteStep.url');
    expect((await rejection({ steps: [{ remoteStep: { url: 'http://x', urlExpression: '{body.u}', subpath: 'a' } }] })).path).toBe(
      'steps[0].remoteStep.subpath',
    );
    expect((await rejection({ steps: [{ queueStep: { redis: 'redis://x' } }] })).path).toBe('steps[0].queueStep.stream');
    expect((await rejection({ steps: [{ queueStep: { redis: 'redis://x', stream: 's', maxLen: 0 } }] })).path).toBe(
      'steps[0].queueStep.maxLen',
    );
  });

  it('the JSON Schema takes the three kinds and refuses their unknown fields', () => {
    const validate = new Ajv2020({ strict: false, allErrors: true }).compile(specSchema());
    const good = {
      steps: [
        { remoteStep: { url: 'http://svc:8080', subpath: '$path', headers: { 'x-a': 'b' }, backoff: { baseDelayMs: 100 }, retries: 3 } },
        { batchHttpRequests: { urlExpression: 'http://geo/{item.id}', method: 'GET' } },
        { queueStep: { redis: 'redis://127.0.0.1:6379', stream: 'requests', maxLen: 1000 } },
      ],
    };
    expect(validate(good), JSON.stringify(validate.errors)).toBe(true);
    expect(validate({ steps: [{ remoteStep: { url: 'http://x', retrys: 1 } }] })).toBe(false);
    expect(validate({ steps: [{ queueStep: { redis: 'http://x', stream: 's' } }] })).toBe(false);
  });
});

describe.runIf(redisAvailable('spec queueStep (test/spec-remote.spec.ts)'))('spec: queueStep', () => {
  let server: RedisServer;
  let redis: Redis;
  withRedis((s, r) => ((server = s), (redis = r)));

  it('writes the events to the stream the spec names', async () => {
    const out = await runSpec({ steps: [{ queueStep: { redis: server.url, stream: 'spec-jobs', name: 'hop' } }] }, [
      toEvent({ n: 1 }, { id: 's1' }),
    ]);
    expect(out[0].error).toBeUndefined();
    const [[entryId, fields]] = await redis.xrange('spec-jobs', '-', '+');
    expect(fields).toEqual(['body', '{"n":1}', 'id', 's1']);
    expect(out[0].metadata.queued).toEqual({ stream: 'spec-jobs', id: entryId });
  });
});
