// The wire form of OnnxModel batches between the main thread and pool workers (wire.ts).
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { OnnxModel, type OnnxRequest, type OnnxResponse } from './onnxModel.js';
import { WIRE_BATCH, packBatch, unpackBatch, unpackInputs, unpackResponse, type WireHead } from './wire.js';
import type { PredictContext } from '../model/model.js';
// @ts-expect-error a plain .mjs module without types (the example's encoder)
import { writeMlpModel } from '../../examples/onnx/onnxBuilder.mjs';

const tensor = (datatype: string, data: unknown, shape = [1, Array.isArray(data) ? data.length : 0]) => ({
  name: 'x',
  shape,
  datatype,
  data,
});

describe('packBatch (main side)', () => {
  it('turns flat numeric data into TypedArrays of the datatype, views of one buffer to transfer; the bodies given are not touched', () => {
    const bodies = [
      { inputs: [tensor('FP32', [0.5, 1, 2])], id: 7 },
      { inputs: [tensor('FP64', [1e300]), tensor('INT8', [-128, 127])] },
      { inputs: [tensor('UINT32', [4294967295])] },
    ];
    const copy = structuredClone(bodies);
    const { bodies: packed, transfer, table } = packBatch(bodies);
    expect(bodies).toEqual(copy);
    expect(transfer).toHaveLength(1);
    // The first body has a field of its own and the third another layout than the second's: new body objects.
    expect(packed[1]).toBe(0);
    expect(table).toMatchObject({ rxserveOnnxTable: 1, layout: ['x', 'FP64', 'x', 'INT8'] });
    expect(table!.buffer).toBe(transfer[0]);
    const [row] = unpackInputs([0, table]) as OnnxRequest[];
    const data = [packed[0], row, packed[2]].map((b) => (b as OnnxRequest).inputs.map((t) => t.data));
    expect(data[0][0]).toEqual(new Float32Array([0.5, 1, 2]));
    expect(data[1][0]).toEqual(new Float64Array([1e300]));
    expect(data[1][1]).toEqual(new Int8Array([-128, 127]));
    expect(data[2][0]).toEqual(new Uint32Array([4294967295]));
    for (const d of data.flat()) {
      expect((d as Float32Array).buffer).toBe(transfer[0]);
      expect((d as Float32Array).byteOffset % (d as Float32Array).BYTES_PER_ELEMENT).toBe(0);
    }
    expect(packed[0]).toMatchObject({ id: 7, inputs: [{ name: 'x', shape: [1, 3], datatype: 'FP32' }] });
    expect(row).toEqual({
      inputs: [tensor('FP64', new Float64Array([1e300]), [1, 1]), tensor('INT8', new Int8Array([-128, 127]), [1, 2])],
    });
  });

  it('sends no byte it did not write: alignment gaps and what a refused body wrote before its bad value are zero', () => {
    // The buffer is not zero-filled when made (issue 26 goal 3): packBatch zeroes what no view covers.
    const bodies = [
      { inputs: [tensor('FP32', [5])] },
      { inputs: [tensor('FP64', [7])] },
      // 1 and 2 are written before 'x' is refused; the body then goes as it is.
      { inputs: [tensor('FP32', [1, 2, 'x'])] },
    ];
    const { bodies: packed, transfer } = packBatch(bodies);
    expect(packed[2]).toBeUndefined();
    const bytes = new Uint8Array(transfer[0]);
    expect(bytes.length).toBe(28);
    expect([...bytes.subarray(0, 4)]).toEqual([...new Uint8Array(new Float32Array([5]).buffer)]);
    expect([...bytes.subarray(4, 8)]).toEqual([0, 0, 0, 0]);
    expect([...bytes.subarray(8, 16)]).toEqual([...new Uint8Array(new Float64Array([7]).buffer)]);
    expect([...bytes.subarray(16)]).toEqual(new Array(12).fill(0));
  });

  it('puts the bodies of one layout in the table, in order, and unpackInputs gives them back between the others', () => {
    const rowOf = (i: number) => ({ inputs: [tensor('FP32', [i, i + 1], [1, 2])] });
    const odd = { inputs: [{ ...tensor('FP32', [9, 9], [1, 2]), parameters: {} }] };
    const bodies = [rowOf(0), odd, rowOf(2), { inputs: [tensor('FP32', ['bad'])] }, rowOf(4), { inputs: [tensor('FP32', [1], [1.5])] }];
    const { bodies: packed, table } = packBatch(bodies);
    expect(packed.map((b) => (typeof b === 'number' ? b : b === undefined ? 'as is' : 'object'))).toEqual([
      0,
      'object',
      1,
      'as is',
      2,
      'object',
    ]);
    const list = packed.map((b, i) => b ?? bodies[i]);
    const back = unpackInputs([...list, table]) as OnnxRequest[];
    expect(back).toHaveLength(bodies.length);
    expect(back.map((b) => b.inputs.map((t) => [t.name, t.shape, t.datatype, Array.from(t.data as ArrayLike<unknown>)]))).toEqual(
      bodies.map((b) => b.inputs.map((t) => [t.name, t.shape, t.datatype, t.data])),
    );
    expect(back[1]).toMatchObject({ inputs: [{ parameters: {} }] });
    // Data lie one after another in the buffer (a refused body takes no room), so OnnxModel
    // concatenates a batch of rows without a copy.
    const views = [back[0], back[1], back[2], back[4]].map((b) => b.inputs[0].data as Float32Array);
    expect(views.map((v) => v.byteOffset)).toEqual([0, 8, 16, 24]);
    // Rows whose byte length is not a multiple of 8 (three FP32 features: 12 bytes) lie end to end too.
    const threes = packBatch([0, 1, 2].map((i) => ({ inputs: [tensor('FP32', [i, i, i], [1, 3])] })));
    const rows = (unpackInputs([...threes.bodies, threes.table]) as OnnxRequest[]).map((b) => b.inputs[0].data as Float32Array);
    expect(rows.map((v) => v.byteOffset)).toEqual([0, 12, 24]);
    // A list without a table is left as it is.
    const plain = [{ inputs: [] }];
    expect(unpackInputs(plain)).toBe(plain);
  });

  it('leaves a body as it is (undefined) when the model would refuse a value, or when its data are not flat numbers of a packed datatype', () => {
    const bodies = [
      { inputs: [tensor('INT8', [1.5])] },
      { inputs: [tensor('UINT8', [256])] },
      { inputs: [tensor('FP32', [1, 'two'])] },
      { inputs: [tensor('FP32', [[1, 2]])] },
      { inputs: [tensor('FP32', [1]), tensor('BOOL', [true])] },
      { inputs: [tensor('INT64', [1])] },
      { inputs: [tensor('FP16', [1])] },
      { inputs: [tensor('constructor', [1])] },
      { inputs: [tensor('FP32', new Float32Array([1]))] },
      { inputs: [] },
      { rows: [1] },
      null,
      { inputs: [tensor('FP32', [3])] },
    ];
    const { bodies: packed, transfer, table } = packBatch(bodies);
    expect(packed.slice(0, -1).every((b) => b === undefined)).toBe(true);
    expect(packed.at(-1)).toBe(0);
    expect((unpackInputs([0, table]) as OnnxRequest[])[0].inputs[0].data).toEqual(new Float32Array([3]));
    expect(transfer).toHaveLength(1);
    expect(packBatch([{ rows: [] }])).toEqual({ bodies: [undefined], transfer: [] });
  });
});

describe('unpackResponse (main side)', () => {
  it('makes TypedArray output data the plain arrays of the contract, per datatype; plain data stay as they are', () => {
    const out = (datatype: string, data: unknown) => ({ name: 'y', shape: [1], datatype, data });
    const value = {
      model_name: 'm',
      outputs: [
        out('FP32', new Float32Array([0.5, 2])),
        out('BOOL', new Uint8Array([1, 0])),
        out('FP16', new Uint16Array([0x3c00])),
        out('INT64', new BigInt64Array([-3n])),
        out('UINT64', new BigUint64Array([5n])),
        out('BYTES', ['a']),
      ],
    };
    const unpacked = unpackResponse(value) as OnnxResponse;
    expect(unpacked.outputs.map((o) => o.data)).toEqual([[0.5, 2], [true, false], [1], [-3], [5], ['a']]);
    for (const o of unpacked.outputs) expect(Array.isArray(o.data)).toBe(true);
    expect(unpackResponse('not a response')).toBe('not a response');
  });
});

describe('OnnxModel[WIRE_BATCH] (worker side) and unpackBatch (main side)', () => {
  // eslint-disable-next-line @typescript-eslint/no-unsafe-assignment, @typescript-eslint/no-unsafe-call -- an untyped .mjs helper of examples/
  const path = writeMlpModel(join(mkdtempSync(join(tmpdir(), 'rxserve-wire-')), 'mlp.onnx'), [4, 3]);
  const bodies = [
    { inputs: [tensor('FP32', [1, 2, 3, 4], [1, 4])] },
    { inputs: [tensor('FP32', [5, 6, 7, 8, 9, 10, 11, 12], [2, 4])] },
    { inputs: [tensor('FP32', [-1, 0.5, 2, 3], [1, 4])] },
  ] as OnnxRequest[];
  /** The contexts as the worker host gives them: made on demand, counted. */
  const onDemand = (n: number) => {
    const made = { count: 0 };
    return { made, contexts: () => (made.count++, Array.from({ length: n }, () => ({}) as PredictContext)) };
  };
  /** A batch's input list as the main side sends it. */
  const wireList = (b: readonly unknown[]): unknown[] => {
    const { bodies: packed, table } = packBatch(b);
    return [...packed.map((p, i) => p ?? b[i]), ...(table ? [table] : [])];
  };
  const load = async () => {
    const model = new OnnxModel({ name: 'mlp', modelPath: path });
    await model.load();
    return model;
  };

  it("runs a batch of table rows straight from the table: one head with the run's outputs, then row counts; unpackBatch gives predictBatch's outputs; no context is made", async () => {
    const model = await load();
    const plain = await model.predictBatch(bodies, onDemand(3).contexts());
    const { made, contexts } = onDemand(3);
    const wire = (await model[WIRE_BATCH](wireList(bodies), contexts)) as unknown[];
    expect(made.count).toBe(0);
    expect(wire[0]).toMatchObject({ rxserveOnnxHead: 1, model_name: 'mlp', rows: 1, total: 4, outputs: [{ datatype: 'FP32', tail: [3] }] });
    expect((wire[0] as WireHead).outputs[0].data).toBeInstanceOf(Float32Array);
    expect(wire.slice(1)).toEqual([2, 1]);
    unpackBatch(wire);
    expect(wire).toEqual(plain);
    await model.close();
  });

  it('rebuilds and checks the bodies one by one when a row fails (its own error, as predictBatch gives it) or a body is not a table row', async () => {
    const model = await load();
    const bad = { inputs: [tensor('FP32', [1, 2, 3, 4, 5], [1, 5])] } as unknown as OnnxRequest;
    const odd = { inputs: [{ ...tensor('FP32', [4, 3, 2, 1], [1, 4]), parameters: { k: 1 } }] } as unknown as OnnxRequest;
    for (const batch of [[bodies[0], bad, bodies[1]], [bodies[0], odd, bodies[2]], [bodies[2]]]) {
      const plain = await model.predictBatch(batch, onDemand(batch.length).contexts());
      const wire = (await model[WIRE_BATCH](wireList(batch), onDemand(batch.length).contexts)) as unknown[];
      unpackBatch(wire);
      expect(wire).toEqual(plain);
    }
    const failed = await model.predictBatch([bodies[0], bad], onDemand(2).contexts());
    expect(failed[1]).toBeInstanceOf(TypeError);
    expect((failed[1] as Error).message).toMatch(/input 'x' has shape \[1, 5\]/);
    await model.close();
  });

  it('unpackBatch fails a call whose value does not fit (rows without a head, more rows than the run had, a malformed head) with a TypeError saying so; the others are answered', () => {
    const head = (extra: object = {}) => ({
      rxserveOnnxHead: 1,
      model_name: 'm',
      rows: 1,
      total: 3,
      outputs: [{ name: 'y', datatype: 'INT64', tail: [2], data: new BigInt64Array([1n, 2n, 3n, 4n, 5n, 6n]) }],
      ...extra,
    });
    const values: unknown[] = [
      1,
      head(),
      undefined,
      1,
      2,
      head({ total: 2 }),
      head({ outputs: [{ name: 'y', datatype: 'NOPE', tail: [2], data: [] }] }),
      1,
    ];
    unpackBatch(values);
    expect((values[0] as Error).message).toBe('an OnnxModel batch answered rows before the outputs of their run');
    expect(values[1]).toEqual({ model_name: 'm', outputs: [{ name: 'y', shape: [1, 2], datatype: 'INT64', data: [1, 2] }] });
    expect(values[2]).toBeUndefined();
    expect(values[3]).toEqual({ model_name: 'm', outputs: [{ name: 'y', shape: [1, 2], datatype: 'INT64', data: [3, 4] }] });
    expect((values[4] as Error).message).toBe('an OnnxModel batch answered 2 rows where its run had 1 left');
    expect((values[5] as Error).message).toMatch(
      /^an OnnxModel batch answered a malformed head: output 'y' has 6 values for 2 rows of \[2\]/,
    );
    expect((values[6] as Error).message).toMatch(/malformed head: an output "y" of datatype "NOPE"/);
    expect((values[7] as Error).message).toBe('an OnnxModel batch answered rows before the outputs of their run');
    for (const v of values) if (v instanceof Error) expect(v).toBeInstanceOf(TypeError);
  });

  it('calls a subclass that overrides predictBatch as it is, with the bodies and the contexts', async () => {
    class Tagged extends OnnxModel {
      override predictBatch(b: readonly OnnxRequest[], c: readonly PredictContext[]): Promise<OnnxResponse[]> {
        return Promise.resolve(b.map((_, i) => ({ model_name: `tagged ${b.length}/${c.length}/${i}`, outputs: [] })));
      }
    }
    const model = new Tagged({ name: 'mlp', modelPath: path });
    const { made, contexts } = onDemand(2);
    expect(await model[WIRE_BATCH](wireList(bodies.slice(0, 2)), contexts)).toEqual([
      { model_name: 'tagged 2/2/0', outputs: [] },
      { model_name: 'tagged 2/2/1', outputs: [] },
    ]);
    expect(made.count).toBe(1);
  });
});
