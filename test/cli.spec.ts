// The rxserve command end to end: the BUILT bin (dist) in a child process — validate, test, schema, serve + SIGTERM.
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { startLLMServer } from '../src/testing/index.js';
import { redisAvailable, startRedis } from './support/redis.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const bin = join(root, 'bin/rxserve.mjs');
const fixtures = join(root, 'test/fixtures/spec');
const dir = mkdtempSync(join(tmpdir(), 'rxserve-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `rxserve ...args` to its end. */
function rxserve(...args: string[]): Promise<Result> {
  return new Promise((resolve) => {
    execFile(process.execPath, [bin, ...args], { cwd: dir, timeout: 30_000 }, (error, stdout, stderr) => {
      resolve({ code: error ? ((error as { code?: number }).code ?? null) : 0, stdout, stderr });
    });
  });
}

const slowSpec = join(fixtures, 'slow.yaml');
const timesSpec = (() => {
  const file = join(dir, 'times.yaml');
  writeFileSync(
    file,
    `name: times
steps:
  - modelRunner:
      models:
        - endpointName: double
          modelClass: { module: ${JSON.stringify(join(fixtures, 'models.mjs'))}, export: Times }
          executionMechanism: naive
          params: { factor: 2 }
          inputPath: x
          resultPath: y
`,
  );
  return file;
})();

describe('rxserve validate', () => {
  it('exits 0 for a good spec', async () => {
    const result = await rxserve('validate', join(fixtures, 'full.yaml'));
    expect(result).toMatchObject({ code: 0, stderr: '' });
    expect(result.stdout).toContain('ok');
  });

  it('exits 2 with the ConfigError (path and line) on stderr, before importing any model module', async () => {
    const file = join(dir, 'bad.yaml');
    // Its model's module would throw if imported: a spec whose shape is wrong is refused first.
    writeFileSync(join(dir, 'throws.mjs'), "throw new Error('a model module was imported');\n");
    writeFileSync(
      file,
      `steps:
  - modelRunner:
      models:
        - { endpointName: a, modelClass: { module: ./throws.mjs }, executionMechanism: naive }
        - { endpointName: b, modelClass: { module: ./throws.mjs }, executionMechanism: naive, timeoutMs: -1 }
`,
    );
    const result = await rxserve('validate', file);
    expect(result.code).toBe(2);
    expect(result.stdout).toBe('');
    expect(result.stderr).toContain(
      'bad.yaml: line 5: steps[0].modelRunner.models[1].timeoutMs: expected a positive number of milliseconds, got -1',
    );
    // A well-shaped spec: validate imports the modules it names (a spec is code, docs/spec.md).
    writeFileSync(
      file,
      'steps:\n  - modelRunner:\n      models:\n        - { endpointName: a, modelClass: { module: ./throws.mjs }, executionMechanism: naive }\n',
    );
    const imported = await rxserve('validate', file);
    expect(imported.code).toBe(2);
    expect(imported.stderr).toContain(
      "bad.yaml: line 4: steps[0].modelRunner.models[0].modelClass.module: expected a module that can be imported, got './throws.mjs': Error: a model module was imported",
    );
  });

  // Issue 22, items 6 and 9: mistakes validate used to call ok, and inputs that broke it.
  const models = (entry: string) => `steps:\n  - modelRunner:\n      models:\n        - ${entry}\n`;
  it.each([
    [
      'a misspelt model class name, on a worker mechanism',
      models('{ endpointName: a, modelClass: LLMmodel, executionMechanism: thread_pool }'),
      'line 4: steps[0].modelRunner.models[0].modelClass: expected a registered model class (Model, LLModel, OnnxModel) or { module, export } (did you mean \'LLModel\'?), got "LLMmodel"',
    ],
    [
      'a missing export, on a process mechanism',
      models(
        `{ endpointName: a, modelClass: { module: ${JSON.stringify(join(fixtures, 'models.mjs'))}, export: Nope }, executionMechanism: process_pool }`,
      ),
      'line 4: steps[0].modelRunner.models[0].modelClass.export: expected an export of',
    ],
    [
      'an export that is not a model class',
      models(
        `{ endpointName: a, modelClass: { module: ${JSON.stringify(join(fixtures, 'functions.mjs'))}, export: prepare }, executionMechanism: thread_pool }`,
      ),
      'steps[0].modelRunner.models[0].modelClass.export: expected a model class (a class with a predict method), got function',
    ],
    [
      'an LLM model URL with a misspelt provider',
      models(
        "{ endpointName: a, modelClass: LLModel, executionMechanism: asyncio, modelArtifact: { key: k, modelUrl: 'opnai://gpt-4o-mini' } }",
      ),
      "steps[0].modelRunner.models[0].modelArtifact.modelUrl: expected a URL with a known provider: 'openai://<model>', 'huggingface://<org>/<model>' or 'mock://' (did you mean 'openai'?), got \"opnai://gpt-4o-mini\"",
    ],
    [
      'a YAML alias bomb',
      Array.from({ length: 8 }, (_, i) =>
        i === 0
          ? 'a0: &a0 [x, x, x, x, x, x, x, x, x]'
          : `a${i}: &a${i} [${Array(9)
              .fill(`*a${i - 1}`)
              .join(', ')}]`,
      ).join('\n') + '\nsteps: []\n',
      'not a usable YAML document: Excessive alias count',
    ],
    [
      'an artifact path naming a file that is not an artifact, whose content is never echoed',
      models('{ endpointName: a, modelClass: Model, executionMechanism: naive, modelArtifact: /etc/passwd }'),
      "steps[0].modelRunner.models[0].modelArtifact: expected a readable artifact JSON file, got '/etc/passwd': the file is not valid JSON",
    ],
  ])('exits 2 for %s, naming the path', async (_what, text, message) => {
    const file = join(dir, 'mistake.yaml');
    writeFileSync(file, text);
    const result = await rxserve('validate', file);
    expect(result).toMatchObject({ code: 2, stdout: '' });
    expect(result.stderr).toContain(message);
    expect(result.stderr).not.toMatch(/root:|ReferenceError/);
  });

  it('cuts a huge bad value in its error to about 200 characters', async () => {
    const file = join(dir, 'huge.yaml');
    writeFileSync(file, models(`{ endpointName: a, modelClass: Model, executionMechanism: "${'x'.repeat(2_000_000)}" }`));
    const result = await rxserve('validate', file);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('executionMechanism: expected');
    expect(result.stderr).toContain('… (2000000 characters)');
    expect(result.stderr.length).toBeLessThan(2_000);
  });
});

describe('rxserve with a flow: spec (docs/design.md §17)', () => {
  it('validate exits 0 for a good flow, and 2 naming the path and line of a bad edge', async () => {
    expect(await rxserve('validate', join(fixtures, 'flow.yaml'))).toMatchObject({ code: 0, stderr: '' });
    const fn = `{ module: ${JSON.stringify(join(fixtures, 'functions.mjs'))}, export: draft }`;
    const bad = (name: string, lines: string) => {
      const file = join(dir, name);
      writeFileSync(file, `flow:\n  steps:\n    - name: a\n      step: ${fn}\n    - name: b\n      step: ${fn}\n${lines}`);
      return file;
    };
    const cases: [string, string][] = [
      ['      cycleTo: nope\n', "line 7: flow.steps[1].cycleTo: 'nope' is not a step of the flow (steps: 'a', 'b')"],
      ['      after: zzz\n', "line 7: flow.steps[1].after: 'zzz' is not a step of the flow (steps: 'a', 'b')"],
      [`      errorHandler: { name: h, before: a, step: ${fn} }\n`, "line 7: flow.steps[1].errorHandler.before: 'a' is upstream of 'b'"],
      ['      cycleTo: a\n', 'line 7: flow.steps[1].cycleTo: the cycle a → b → a has no bound: give one of its steps maxIterations'],
    ];
    for (const [i, [lines, message]] of cases.entries()) {
      const result = await rxserve('validate', bad(`bad-flow-${i}.yaml`, lines));
      expect(result.code, message).toBe(2);
      expect(result.stderr, message).toContain(`bad-flow-${i}.yaml: ${message}`);
    }
  });

  it('test answers through the flow: the reviewed draft, or the handler’s fallback past the cycle’s bound', async () => {
    const good = await rxserve('test', join(fixtures, 'flow.yaml'), '{"goodAt":2}');
    expect(good).toMatchObject({ code: 0, stderr: '' });
    expect(JSON.parse(good.stdout)).toEqual({ answer: 'draft 2' });
    const bounded = await rxserve('test', join(fixtures, 'flow.yaml'), '{"goodAt":7}');
    expect(JSON.parse(bounded.stdout)).toEqual({ answer: 'fallback', attempts: 3, why: 'CycleLimitError' });
  });

  it('schema describes flow: beside steps:, exactly one of them', async () => {
    const schema = JSON.parse((await rxserve('schema')).stdout) as { properties: Record<string, unknown>; oneOf: unknown };
    expect(Object.keys(schema.properties)).toEqual(expect.arrayContaining(['steps', 'flow']));
    expect(schema.oneOf).toEqual([{ required: ['steps'] }, { required: ['flow'] }]);
  });
});

describe('rxserve test', () => {
  it('prints only the output body as JSON and exits 0', async () => {
    const result = await rxserve('test', timesSpec, '{"x":21}');
    expect(result).toMatchObject({ code: 0, stderr: '' });
    expect(JSON.parse(result.stdout)).toEqual({ x: 21, y: 42 });
  });

  it('prints {"error":"<Name>: <message>"} and exits 1 for an errored answer', async () => {
    const result = await rxserve('test', timesSpec, '{"x":"NaN"}');
    expect(result.code).toBe(1);
    expect(JSON.parse(result.stdout)).toEqual({ error: expect.stringMatching(/^ModelRunnerError: .*expected a number/) });
  });

  it('exits 2 for a request that is not JSON, or a bad spec', async () => {
    expect(await rxserve('test', timesSpec, '{x')).toMatchObject({ code: 2 });
    const missing = await rxserve('test', join(dir, 'none.yaml'), '{}');
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('none.yaml');
  });
});

describe('rxserve arguments, help and schema', () => {
  it('--help for the command and each subcommand exits 0; bad arguments exit 2', async () => {
    const helps = [['--help'], ['serve', '--help'], ['test', '-h'], ['validate', '--help'], ['schema', '--help']];
    const bad = [
      [],
      ['deploy'],
      ['serve'],
      ['serve', slowSpec, '--prot', '1'],
      ['serve', slowSpec, '--port', 'x'],
      ['validate', slowSpec, '--port', '1'],
      ['constructor'],
      ['serve', slowSpec, '--port', '65536'],
    ];
    const results = await Promise.all([...helps, ...bad].map((args) => rxserve(...args)));
    helps.forEach((args, i) => {
      expect(results[i].code, args.join(' ')).toBe(0);
      expect(results[i].stdout).toContain('Usage: rxserve');
    });
    bad.forEach((args, i) => expect(results[helps.length + i].code, args.join(' ')).toBe(2));
    expect(results[helps.length + 1].stderr).toContain("unknown command 'deploy'");
    // --port is checked by serve()'s own Port rule, once, before the graph loads: the message names the flag and the value.
    expect(results[helps.length + 4].stderr).toContain(
      'rxserve serve: --port: expected a port number (0 to 65535; 0 picks a free port), got "x"',
    );
    expect(results[helps.length + 7].stderr).toContain(
      'rxserve serve: --port: expected a port number (0 to 65535; 0 picks a free port), got 65536',
    );
    // A name every object has is not a command either.
    expect(results[helps.length + 6].stderr).toContain("unknown command 'constructor'");
  });

  it('schema prints the JSON Schema (draft 2020-12)', async () => {
    const result = await rxserve('schema');
    expect(result.code).toBe(0);
    const schema = JSON.parse(result.stdout);
    expect(schema.$schema).toBe('https://json-schema.org/draft/2020-12/schema');
    expect(schema.oneOf).toEqual([{ required: ['steps'] }, { required: ['flow'] }]); // steps: or flow: (docs/design.md §17)
  });
});

describe('rxserve serve', () => {
  it('prints the URL once ready, answers HTTP, and on SIGTERM answers the request in flight and exits 0', async () => {
    const child = spawn(process.execPath, [bin, 'serve', slowSpec, '--port', '0', '--host', '127.0.0.1'], {
      cwd: dir,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const exited = once(child, 'exit');
    let stderr = '';
    child.stderr!.on('data', (chunk) => (stderr += chunk));
    try {
      const [first] = (await once(createInterface({ input: child.stdout! }), 'line')) as [string];
      expect(first).toMatch(/^rxserve listening on http:\/\/127\.0\.0\.1:\d+$/);
      const url = first.slice('rxserve listening on '.length);

      const quick = await fetch(`${url}/score`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"ms":0}' });
      expect(quick.status).toBe(200);
      expect(await quick.json()).toEqual({ slept: 0 });
      expect(await (await fetch(`${url}/v2/models`)).json()).toMatchObject({ models: ['slow'] });

      // A request in flight when SIGTERM arrives is answered.
      const inFlight = fetch(`${url}/score`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"ms":600}' });
      await new Promise((resolve) => setTimeout(resolve, 150));
      child.kill('SIGTERM');
      const answer = await inFlight;
      expect(answer.status).toBe(200);
      expect(await answer.json()).toEqual({ slept: 600 });
      const [code] = (await exited) as [number | null];
      expect(code, stderr).toBe(0);
    } finally {
      child.kill('SIGKILL');
    }
  });

  it("serve: { dashboard, openai } in the spec: the live page and the OpenAI-compatible /v1 over the spec's LLModel endpoint", async () => {
    const llm = await startLLMServer({ answer: ({ model, messages }) => `${model} says: ${String(messages?.at(-1)?.content)}` });
    const spec = join(dir, 'front.yaml');
    writeFileSync(
      spec,
      `name: front
steps:
  - modelRunner:
      models:
        - endpointName: chat
          modelClass: LLModel
          executionMechanism: asyncio
          modelArtifact: { key: gpt, modelUrl: 'openai://gpt-4o-mini', providerOptions: { apiKey: upstream-key, baseURL: '${llm.openaiBaseURL}' } }
serve:
  port: 0
  dashboard: true
  openai: { models: { gpt-x: chat } }
`,
    );
    const child = spawn(process.execPath, [bin, 'serve', spec], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    const exited = once(child, 'exit');
    let stderr = '';
    child.stderr!.on('data', (chunk) => (stderr += chunk));
    try {
      // A spec the command refuses exits at once: fail with its stderr instead of waiting for a line.
      const [first] = (await Promise.race([
        once(createInterface({ input: child.stdout! }), 'line'),
        exited.then(([code]) => Promise.reject(new Error(`rxserve serve exited with ${String(code)}: ${stderr}`))),
      ])) as [string];
      const url = first.slice('rxserve listening on '.length);
      expect(await (await fetch(`${url}/v1/models`)).json()).toMatchObject({ object: 'list', data: [{ id: 'gpt-x', object: 'model' }] });
      const completion = await fetch(`${url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'gpt-x', messages: [{ role: 'user', content: 'hello' }] }),
      });
      expect(completion.status, stderr).toBe(200);
      expect(((await completion.json()) as { choices: { message: unknown }[] }).choices[0].message).toMatchObject({
        role: 'assistant',
        content: 'gpt-4o-mini says: hello',
      });
      const page = await fetch(`${url}/dashboard`);
      expect(page.status).toBe(200);
      expect(page.headers.get('content-type')).toMatch(/^text\/html/);
      child.kill('SIGTERM');
      const [code] = (await exited) as [number | null];
      expect(code, stderr).toBe(0);
    } finally {
      child.kill('SIGKILL');
      await llm.close();
    }
  });

  it('a port already in use is a runtime failure: exit 1', async () => {
    const blocker = spawn(process.execPath, [bin, 'serve', slowSpec, '--port', '0'], { cwd: dir, stdio: ['ignore', 'pipe', 'ignore'] });
    try {
      const [first] = (await once(createInterface({ input: blocker.stdout! }), 'line')) as [string];
      const port = new URL(first.slice('rxserve listening on '.length)).port;
      const result = await rxserve('serve', slowSpec, '--port', port);
      expect(result.code).toBe(1);
      expect(result.stderr).toContain('EADDRINUSE');
    } finally {
      blocker.kill('SIGTERM');
      await once(blocker, 'exit');
    }
  });
});

describe.runIf(redisAvailable('rxserve serve with a source (test/cli.spec.ts)'))('rxserve serve with a Redis source', () => {
  it('a Redis source that fails ends the command with exit 1, saying why', async () => {
    const redis = await startRedis();
    const client = new Redis(redis.url);
    // The request stream's key holds a string: the consumer group cannot be created on it.
    await client.set('taken', 'not a stream');
    const file = join(dir, 'bad-source.yaml');
    writeFileSync(
      file,
      `steps:
  - modelRunner:
      models:
        - { endpointName: double, modelClass: { module: ${JSON.stringify(join(fixtures, 'models.mjs'))}, export: Times }, executionMechanism: naive, params: { factor: 2 } }
source:
  redis: { url: ${redis.url}, stream: taken, group: doublers, blockMs: 100 }
  output: answers
`,
    );
    const child = spawn(process.execPath, [bin, 'serve', file], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    const exited = once(child, 'exit');
    let stderr = '';
    child.stderr!.on('data', (chunk) => (stderr += chunk));
    try {
      const [code] = (await exited) as [number | null];
      expect(code, stderr).toBe(1);
      expect(stderr).toMatch(/the Redis source failed: .*WRONGTYPE/);
    } finally {
      child.kill('SIGKILL');
      client.disconnect();
      await redis.stop();
    }
  });

  it('consumes the request stream, commits answers to the output stream, and exits 0 on SIGTERM', async () => {
    const redis = await startRedis();
    const client = new Redis(redis.url);
    const file = join(dir, 'source.yaml');
    writeFileSync(
      file,
      `steps:
  - modelRunner:
      models:
        - { endpointName: double, modelClass: { module: ${JSON.stringify(join(fixtures, 'models.mjs'))}, export: Times }, executionMechanism: naive, params: { factor: 2 } }
source:
  redis: { url: ${redis.url}, stream: requests, group: doublers, blockMs: 100 }
  output: answers
`,
    );
    const child = spawn(process.execPath, [bin, 'serve', file], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    const exited = once(child, 'exit');
    let stderr = '';
    child.stderr!.on('data', (chunk) => (stderr += chunk));
    try {
      const [first] = (await once(createInterface({ input: child.stdout! }), 'line')) as [string];
      // Only a source: no HTTP, the Redis URL instead.
      expect(first).toBe(`rxserve listening on ${redis.url} (stream requests, group doublers)`);
      const id = await client.xadd('requests', '*', 'body', '21');
      const reply = (await client.xread('BLOCK', 10_000, 'STREAMS', 'answers', '0')) as [string, [string, string[]][]][] | null;
      const fields = reply?.[0][1][0][1] ?? [];
      expect(fields).toEqual(['id', id, 'body', '42']);
      child.kill('SIGTERM');
      const [code] = (await exited) as [number | null];
      expect(code, stderr).toBe(0);
    } finally {
      child.kill('SIGKILL');
      client.disconnect();
      await redis.stop();
    }
  });
});
