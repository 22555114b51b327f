import { serialize } from 'node:v8';
import { describe, expect, it } from 'vitest';
import { decodeBatch, encodeBatch, flatten, unflatten, type WireBatch } from './protocol.js';
import { packBatch } from '../../onnx/wire.js';

// V8's serializer writes a packed array densely (tag 'A') and a holey one (what `new Array(n)`
// makes) as a sparse array (tag 'a'), a property lookup per element on each side of the boundary.
const DENSE = 'A'.charCodeAt(0);
const tagOf = (value: unknown): number => serialize(value)[2];

describe('the batch wire form', () => {
  const batch: WireBatch = {
    specs: ['{"m":1}'],
    calls: [
      {
        id: 7,
        spec: 0,
        input: [{ a: 1 }, { a: 2 }],
        eventId: 'e1',
        origin: 'o',
        batch: [
          { eventId: 'e1', origin: 'o', listen: false },
          { eventId: 'e2', origin: 'o', path: 'p', listen: true },
        ],
      },
    ],
  };

  it('is made of packed arrays, which cross densely, and decodes to the same batch', () => {
    const flat = encodeBatch(batch, () => 0);
    expect(tagOf(flat)).toBe(DENSE);
    expect(tagOf(flat[6])).toBe(DENSE);
    const { batch: back } = decodeBatch(structuredClone(flat), ['{"m":1}']);
    expect(back.calls[0]).toMatchObject({ id: 7, eventId: 'e1', input: [{ a: 1 }, { a: 2 }] });
    expect(back.calls[0].batch).toEqual([
      { eventId: 'e1', origin: 'o', path: undefined, listen: false },
      { eventId: 'e2', origin: 'o', path: 'p', listen: true },
    ]);
  });

  it('replies with a packed flat array', () => {
    const flat = flatten([
      { ok: true, value: 1 },
      { ok: false, error: { name: 'TypeError', message: 'no' } },
    ]);
    expect(tagOf(flat)).toBe(DENSE);
    expect(unflatten(flat)).toEqual([
      { ok: true, value: 1 },
      { ok: false, error: { name: 'TypeError', message: 'no' } },
    ]);
  });

  it("packs OnnxModel bodies into a packed list (the elements go into the batch's list)", () => {
    const body = { inputs: [{ name: 'x', shape: [1, 2], datatype: 'FP32', data: [1, 2] }] };
    const { bodies } = packBatch([body, 'not a body', body]);
    expect(tagOf(bodies)).toBe(DENSE);
    expect(bodies).toEqual([0, undefined, 1]);
  });
});
