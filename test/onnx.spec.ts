// OnnxModel against ONNX's own backend test cases (Debian package libonnx-testdata), on every
// in-process and pool mechanism, plus bad input per datatype and shape and a missing model file.
import { existsSync, mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { from, lastValueFrom, toArray } from 'rxjs';
import { describe, expect, it } from 'vitest';
import {
  ModelLoadError,
  asEvents,
  modelRunner,
  type ExecutionMechanism,
  type ModelEntry,
  type OipTensor,
  type ServingEvent,
} from '../src/index.js';
import { readTensorProto } from './support/tensorProto.js';
// @ts-expect-error a plain .mjs module without types (the example's encoder)
import { writeMlpModel } from '../examples/onnx/onnxBuilder.mjs';

const DATA = '/usr/share/libonnx-testdata/data/node';
const present = existsSync(DATA);
if (!present) {
  if (process.env.RXSERVE_REQUIRE_ONNX_TESTDATA === '1') throw new Error(`${DATA} is missing: apt-get install libonnx-testdata`);
  console.warn(`onnx conformance skipped: ${DATA} not found (apt-get install libonnx-testdata)`);
}

/** A dozen operators over the datatypes: each case's model, inputs and expected outputs. */
const CASES = [
  'test_add', // FP32
  'test_relu',
  'test_gemm_default_matrix_bias',
  'test_softmax_example',
  'test_cast_FLOAT_to_DOUBLE', // FP64 out
  'test_cast_FLOAT_to_FLOAT16', // FP16 out
  'test_and2d', // BOOL
  'test_equal', // INT32 in, BOOL out
  'test_argmax_default_axis_example', // INT64 out
  'test_mod_int64_fmod', // INT64
  'test_mul_uint8', // UINT8
  'test_min_int8', // INT8
  'test_mod_mixed_sign_int16', // INT16
  'test_mod_uint16', // UINT16
  'test_cast_FLOAT_to_STRING', // BYTES out
  'test_min_uint32', // UINT32
  'test_bitshift_right_uint64', // UINT64
  'test_where_example', // BOOL + FP32
];

const MECHANISMS: ExecutionMechanism[] = ['asyncio', 'thread_pool', 'process_pool'];

function loadCase(name: string) {
  const dir = join(DATA, name, 'test_data_set_0');
  const files = readdirSync(dir).sort();
  const inputs = files.filter((f) => f.startsWith('input_')).map((f) => readTensorProto(join(dir, f)));
  const outputs = files.filter((f) => f.startsWith('output_')).map((f) => readTensorProto(join(dir, f)));
  return { model: join(DATA, name, 'model.onnx'), inputs, outputs };
}

const close = (actual: unknown[], expected: unknown[], datatype: string) => {
  expect(actual).toHaveLength(expected.length);
  if (datatype.startsWith('FP')) {
    const tolerance = datatype === 'FP16' ? 1e-2 : 1e-5;
    actual.forEach((a, i) =>
      expect(Math.abs((a as number) - (expected[i] as number))).toBeLessThanOrEqual(
        tolerance * Math.max(1, Math.abs(expected[i] as number)),
      ),
    );
  } else if (datatype === 'BYTES' && expected.every((e) => !Number.isNaN(Number(e)))) {
    // Cast to STRING: onnxruntime prints floats with more digits than ONNX's reference does.
    actual.forEach((a, i) => expect(Number(a)).toBeCloseTo(Number(expected[i]), 5));
  } else expect(actual).toEqual(expected);
};

describe.skipIf(!present).each(MECHANISMS)('OnnxModel conformance on %s (libonnx-testdata)', (mechanism) => {
  it(`${CASES.length} node cases give the expected outputs`, async () => {
    const cases = CASES.map((name) => ({ name, ...loadCase(name) }));
    const models: ModelEntry[] = cases.map((c) => ({
      endpointName: c.name,
      modelClass: 'OnnxModel',
      executionMechanism: mechanism,
      params: { modelPath: c.model },
    }));
    const bodies = cases.map((c) => ({ inputs: c.inputs, models: [c.name] }));
    const out: ServingEvent[] = await lastValueFrom(
      from(bodies).pipe(
        asEvents(),
        modelRunner({ models, selector: (e) => (e.body as { models: string[] }).models, pool: { maxThreads: 2, maxProcesses: 2 } }),
        toArray(),
      ),
    );
    // Every case answered (a forEach over a short list would check nothing).
    expect(out).toHaveLength(cases.length);
    out.forEach((event, n) => {
      const c = cases[n];
      const body = (event.body as Record<string, { model_name: string; outputs: OipTensor[] }>)[c.name];
      expect(event.error, c.name).toBeUndefined();
      expect(body.model_name).toBe(c.name);
      expect(body.outputs.map((o) => [o.name, o.datatype, o.shape])).toEqual(c.outputs.map((o) => [o.name, o.datatype, o.shape]));
      body.outputs.forEach((o, k) => close(o.data as unknown[], c.outputs[k].data as unknown[], o.datatype));
    });
  });
});

// Batches cross to pool workers in a wire form of their own (TypedArrays, src/onnx/wire.ts): each
// case's body twice, so its model's lane makes a batch of two (the calls of a batch are concatenated
// only when the model's first dimension is dynamic; these run call by call in predictBatch).
describe.skipIf(!present).each(['thread_pool', 'process_pool'] as const)(
  'OnnxModel conformance in batches on %s (libonnx-testdata)',
  (mechanism) => {
    it(`${CASES.length} node cases give the expected outputs, as plain arrays`, async () => {
      const cases = CASES.map((name) => ({ name, ...loadCase(name) }));
      const models: ModelEntry[] = cases.map((c) => ({
        endpointName: c.name,
        modelClass: 'OnnxModel',
        executionMechanism: mechanism,
        params: { modelPath: c.model },
        batching: { maxBatchSize: 2, maxWaitMs: 50 },
      }));
      const bodies = cases.flatMap((c) => [0, 1].map(() => ({ inputs: c.inputs, models: [c.name] })));
      const out: ServingEvent[] = await lastValueFrom(
        from(bodies).pipe(
          asEvents(),
          modelRunner({ models, selector: (e) => (e.body as { models: string[] }).models, pool: { maxThreads: 2, maxProcesses: 2 } }),
          toArray(),
        ),
      );
      expect(out).toHaveLength(2 * cases.length);
      out.forEach((event, n) => {
        const c = cases[Math.floor(n / 2)];
        const body = (event.body as Record<string, { model_name: string; outputs: OipTensor[] }>)[c.name];
        expect(event.error, c.name).toBeUndefined();
        expect(body.model_name).toBe(c.name);
        expect(body.outputs.map((o) => [o.name, o.datatype, o.shape])).toEqual(c.outputs.map((o) => [o.name, o.datatype, o.shape]));
        body.outputs.forEach((o, k) => {
          expect(Array.isArray(o.data), `${c.name} ${o.name}`).toBe(true);
          close(o.data as unknown[], c.outputs[k].data as unknown[], o.datatype);
        });
      });
      // The caller's bodies are not touched: their data are still the JSON arrays they were.
      for (const c of cases) for (const t of c.inputs) expect(Array.isArray(t.data)).toBe(true);
    });
  },
);

// A model this test builds: x [batch, 4] FP32 → y [batch, 3].
const dir = mkdtempSync(join(tmpdir(), 'rxserve-onnx-'));
const mlp = writeMlpModel(join(dir, 'mlp.onnx'), [4, 8, 3]);
const mlpEntry = (extra: Partial<ModelEntry> = {}): ModelEntry => ({
  endpointName: 'mlp',
  modelClass: 'OnnxModel',
  executionMechanism: 'asyncio',
  params: { modelPath: mlp },
  ...extra,
});
const x = (rows: number, start = 0) => ({
  name: 'x',
  shape: [rows, 4],
  datatype: 'FP32',
  data: Array.from({ length: rows }, (_, r) => [start + r, 1, 2, 3]),
});
const runMlp = (bodies: unknown[], extra: Partial<ModelEntry> = {}) =>
  lastValueFrom(
    from(bodies).pipe(asEvents(), modelRunner({ models: [mlpEntry(extra)], raiseException: false, pool: { maxThreads: 1 } }), toArray()),
  );

describe('OnnxModel on a model with a dynamic batch dimension', () => {
  it('batched calls (concatenated along the first dimension) give the outputs of unbatched ones, on asyncio and the pools', async () => {
    // Nested and flat data (flat numbers cross to a pool's workers as TypedArrays).
    const flat = (rows: number, start: number) => ({ ...x(rows, start), data: x(rows, start).data.flat() });
    const bodies = [
      { inputs: [x(1, 0)] },
      { inputs: [flat(3, 10)] },
      { inputs: [x(2, 20)] },
      { inputs: [flat(1, 30)] },
      { inputs: [flat(2, 40)] },
    ];
    const plain = (await runMlp(bodies)).map((e) => e.body);
    expect(plain[1]).toMatchObject({ model_name: 'mlp', outputs: [{ name: 'y', datatype: 'FP32', shape: [3, 3] }] });
    for (const executionMechanism of ['asyncio', 'thread_pool', 'process_pool'] as const) {
      const batched = (await runMlp(bodies, { executionMechanism, batching: { maxBatchSize: 5, maxWaitMs: 20 } })).map((e) => e.body);
      expect(batched, executionMechanism).toEqual(plain);
      for (const body of batched) expect(Array.isArray((body as { outputs: OipTensor[] }).outputs[0].data)).toBe(true);
    }
  });

  it('a wrong input in a batch fails that call with a TypeError naming it and what the model expects; the others are served', async () => {
    const bodies = [
      { inputs: [x(1)] },
      { inputs: [{ ...x(1), name: 'z' }] },
      { inputs: [{ ...x(1), shape: [1, 5], data: [1, 2, 3, 4, 5] }] },
      { inputs: [{ ...x(1), datatype: 'FP64', data: [1, 2, 3, 4] }] },
      { inputs: [{ ...x(2), data: [1, 2, 3] }] },
      { inputs: [{ ...x(1), data: [[1, 2, 'three', 4]] }] },
      { inputs: [] },
      { rows: [1, 2, 3, 4] },
      { inputs: [x(2)] },
      { inputs: [x(1), x(1)] },
      { inputs: [{ ...x(1), shape: [1, -4] }] },
      { inputs: [7] },
    ];
    const expects = "; model 'mlp' expects inputs 'x' (FP32 [-1, 4])";
    // The same on pools, where the bodies of flat numbers (2 to 4) cross as TypedArrays and the
    // others as they are: the worker's checks, the same messages.
    for (const executionMechanism of ['asyncio', 'thread_pool', 'process_pool'] as const) {
      const out = (await runMlp(bodies, { executionMechanism, batching: { maxBatchSize: 12, maxWaitMs: 20 } })).map(
        (e) => (e.body as { error?: string }).error ?? 'ok',
      );
      expect(out, executionMechanism).toEqual([
        'ok',
        `TypeError: input 'z' is not an input of the model${expects}`,
        `TypeError: input 'x' has shape [1, 5], the model takes [-1, 4]${expects}`,
        `TypeError: input 'x' has datatype "FP64", the model takes FP32${expects}`,
        `TypeError: input 'x' has 3 values, its shape [2, 4] needs 8${expects}`,
        `TypeError: input 'x' data[2] is "three", FP32 data are numbers${expects}`,
        `TypeError: input 'x' missing${expects}`,
        `TypeError: the body is not an Open Inference Protocol request ({ inputs: [{ name, shape, datatype, data }] })${expects}`,
        'ok',
        `TypeError: input 'x' is given twice${expects}`,
        `TypeError: input 'x' has shape [1,-4], not a list of non-negative integers${expects}`,
        `TypeError: inputs[0] is not a tensor ({ name, shape, datatype, data })${expects}`,
      ]);
    }
  });

  it('a TypedArray of the datatype goes in as it is, also across to a worker thread', async () => {
    const data = new Float32Array([0, 1, 2, 3]);
    const [typed] = await runMlp([{ inputs: [{ ...x(1), data }] }], { executionMechanism: 'thread_pool' });
    const [plain] = await runMlp([{ inputs: [x(1)] }]);
    expect(typed.body).toEqual(plain.body);
  });

  it('a missing model file is a ModelLoadError naming the path', async () => {
    const missing = join(dir, 'nope.onnx');
    await expect(runMlp([{ inputs: [x(1)] }], { params: { modelPath: missing } })).rejects.toThrow(
      new ModelLoadError('mlp', `the ONNX model file '${missing}' does not exist`).message,
    );
    await expect(
      runMlp([{ inputs: [x(1)] }], { params: {}, modelArtifact: { key: 'm', modelUrl: pathToFileURL(missing).href } }),
    ).rejects.toBeInstanceOf(ModelLoadError);
  });
});

describe.skipIf(!present)('OnnxModel bad input per datatype (libonnx-testdata models)', () => {
  const cases: [string, unknown, RegExp][] = [
    [
      'test_and2d',
      { name: 'x', shape: [3, 4], datatype: 'BOOL', data: Array(12).fill(1) },
      /input 'x' data\[0\] is 1, BOOL data are true or false/,
    ],
    [
      'test_mod_int64_fmod',
      { name: 'x', shape: [6], datatype: 'INT64', data: [1, 2, 3, 4, 5, 2 ** 60] },
      /input 'x' data\[5\] is 1152921504606847000, not a INT64 \(an integer from -9007199254740991 to 9007199254740991\)/,
    ],
    [
      'test_mul_uint8',
      { name: 'x', shape: [3, 4, 5], datatype: 'UINT8', data: Array(60).fill(256) },
      /input 'x' data\[0\] is 256, not a UINT8 \(an integer from 0 to 255\)/,
    ],
    ['test_min_int8', { name: 'data_0', shape: [3], datatype: 'INT8', data: [1.5, 2, 3] }, /input 'data_0' data\[0\] is 1.5, not a INT8/],
    [
      'test_cast_FLOAT_to_STRING',
      { name: 'input', shape: [3, 4], datatype: 'FP32', data: Array(12).fill(true) },
      /input 'input' data\[0\] is true, FP32 data are numbers/,
    ],
    [
      'test_add',
      { name: 'x', shape: [3, 4], datatype: 'FP32', data: Array(12).fill(0) },
      /input 'x' has shape \[3, 4\], the model takes \[3, 4, 5\]/,
    ],
  ];
  it.each(cases)('%s: %j', async (name, bad, message) => {
    const { inputs } = loadCase(name);
    const badInputs = inputs.map((i) => (i.name === (bad as { name: string }).name ? bad : i));
    const [event] = await lastValueFrom(
      from([{ inputs: badInputs }]).pipe(
        asEvents(),
        modelRunner({
          models: [
            {
              endpointName: name,
              modelClass: 'OnnxModel',
              executionMechanism: 'asyncio',
              params: { modelPath: join(DATA, name, 'model.onnx') },
            },
          ],
          raiseException: false,
        }),
        toArray(),
      ),
    );
    expect((event.body as { error: string }).error).toMatch(/^TypeError: /);
    expect((event.body as { error: string }).error).toMatch(message);
    expect((event.body as { error: string }).error).toContain(`model '${name}' expects inputs`);
  });
});
