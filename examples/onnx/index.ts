// OnnxModel: a real ONNX model served on thread_pool with dynamic batching, OIP tensors in and out,
// then over HTTP with serve() on the Open Inference Protocol infer path.
// The model is a small MLP (x [batch, 16] → y [batch, 4]) written by onnxBuilder.mjs, a tiny
// hand-written ONNX encoder in this folder; no model file is shipped or downloaded.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { from, lastValueFrom, toArray } from 'rxjs';
import { asEvents, modelRunner, router, serve, v2ModelName, type ModelEntry, type OnnxResponse } from 'rxserve';
// @ts-expect-error a plain .mjs module without types
import { writeMlpModel } from './onnxBuilder.mjs';

const modelPath: string = writeMlpModel(join(mkdtempSync(join(tmpdir(), 'rxserve-onnx-example-')), 'mlp.onnx'), [16, 32, 32, 4]);

// A /v2/models/mlp/infer request body: one or more rows, nested or flat data.
const request = (i: number) => ({
  inputs: [{ name: 'x', shape: [1, 16], datatype: 'FP32', data: [Array.from({ length: 16 }, (_, k) => Math.sin(i + k))] }],
});
const requests = Array.from({ length: 64 }, (_, i) => request(i));

const mlp = (extra: Partial<ModelEntry>): ModelEntry => ({
  endpointName: 'mlp',
  modelClass: 'OnnxModel',
  executionMechanism: 'asyncio',
  params: { modelPath },
  ...extra,
});
const runAll = (entry: ModelEntry) =>
  lastValueFrom(from(requests).pipe(asEvents(), modelRunner({ models: [entry], pool: { maxThreads: 2 } }), toArray())).then((out) =>
    out.map((e) => e.body as OnnxResponse),
  );

// Reference: one call at a time on the main thread.
const reference = await runAll(mlp({}));
// Served: two worker threads, each loading the model once (one intra-op thread each); calls that
// arrive within 2 ms of each other run as one batch of up to 16 rows.
const started = performance.now();
const batched = await runAll(mlp({ executionMechanism: 'thread_pool', batching: { maxBatchSize: 16, maxWaitMs: 2 } }));
const ms = performance.now() - started;

console.log('first response:', JSON.stringify(batched[0]));
const close = batched.every(
  (r, i) =>
    r.outputs[0].data instanceof Array &&
    (r.outputs[0].data as number[]).every((v, k) => Math.abs(v - (reference[i].outputs[0].data as number[])[k]) < 1e-5),
);
console.log(`${batched.length} requests on thread_pool with batching in ${ms.toFixed(0)} ms; outputs equal to unbatched: ${close}`);

// A wrong input fails its own call with a TypeError that says what the model expects.
const [bad] = await lastValueFrom(
  from([{ inputs: [{ name: 'x', shape: [1, 3], datatype: 'FP32', data: [1, 2, 3] }] }]).pipe(
    asEvents(),
    modelRunner({ models: [mlp({})], raiseException: false }),
    toArray(),
  ),
);
console.log('bad input:', (bad.body as { error: string }).error);
if (!close || !(bad.body as { error: string }).error.includes("expects inputs 'x' (FP32 [-1, 16])")) process.exit(1);

// Over HTTP: the same entry behind serve(), on the Open Inference Protocol infer path.
const server = await serve(
  router({
    key: v2ModelName,
    routes: { mlp: modelRunner({ models: [mlp({ executionMechanism: 'thread_pool', batching: { maxBatchSize: 16, maxWaitMs: 2 } })] }) },
  }),
  { port: 0 },
);
try {
  const answers = await Promise.all(
    requests.slice(0, 8).map((body) =>
      fetch(`${server.url}/v2/models/mlp/infer`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      }).then(async (r) => ({ status: r.status, body: (await r.json()) as OnnxResponse })),
    ),
  );
  const same = answers.every(
    (a, i) =>
      a.status === 200 &&
      (a.body.outputs[0].data as number[]).every((v, k) => Math.abs(v - (reference[i].outputs[0].data as number[])[k]) < 1e-5),
  );
  const wrong = await fetch(`${server.url}/v2/models/mlp/infer`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ inputs: [] }),
  });
  console.log(
    `POST /v2/models/mlp/infer × ${answers.length}: status ${answers[0].status}, outputs equal: ${same}; a body without 'x': ${wrong.status} ${JSON.stringify(await wrong.json())}`,
  );
  if (!same || wrong.status !== 400) process.exitCode = 1;
} finally {
  await server.close();
}
