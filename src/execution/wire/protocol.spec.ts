import { serialize } from 'node:v8';
import { describe, expect, it } from 'vitest';
import { contextCount, decodeBatch, encodeBatch, flatten, type WireBatch } from './protocol.js';
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
        batch: ['e1', 'o', undefined, 0, 'e2', 'o', 'p', 1],
      },
    ],
  };

  it('is made of packed arrays, which cross densely, and decodes to the same batch', () => {
    const flat = encodeBatch(batch, () => 0);
    expect(tagOf(flat)).toBe(DENSE);
    expect(tagOf(flat[6])).toBe(DENSE);
    const { batch: back } = decodeBatch(structuredClone(flat), ['{"m":1}']);
    expect(back.calls[0]).toMatchObject({ id: 7, eventId: 'e1', input: [{ a: 1 }, { a: 2 }] });
    expect(back.calls[0].batch).toEqual(['e1', 'o', undefined, 0, 'e2', 'o', 'p', 1]);
    expect(contextCount(back.calls[0].batch)).toBe(2);
  });

  it('refuses a malformed batch with a TypeError saying what is wrong', () => {
    const flat = encodeBatch(batch, () => 0);
    expect(() => decodeBatch(flat.slice(0, 8), ['{"m":1}'])).toThrow(new TypeError('a malformed batch: 8 values, not 9 per call'));
    expect(() => decodeBatch([], ['{"m":1}'])).toThrow(/a malformed batch: 0 values/);
    expect(() => decodeBatch([3, ...flat.slice(1)], ['{"m":1}'])).toThrow(
      new TypeError('a malformed batch: call 0 names model 3, which this worker does not know'),
    );
    expect(() => decodeBatch([0, 'seven', ...flat.slice(2)], ['{"m":1}'])).toThrow(
      new TypeError('a malformed batch: call 0 has id seven, not a number'),
    );
    expect(() => decodeBatch([...flat, {}, ...flat.slice(1)], ['{"m":1}'])).toThrow(/^a malformed batch: call 1 names model \{\}/);
  });

  it("refuses a batch call's malformed contexts with a TypeError saying what is wrong", () => {
    expect(contextCount([])).toBe(0);
    expect(contextCount(['e', 'o', null, 0])).toBe(1);
    // A count instead of the contexts (a model whose wire method reads none).
    expect(contextCount(3)).toBe(3);
    for (const count of [-1, 1.5, Number.NaN, 2 ** 60]) {
      expect(() => contextCount(count)).toThrow(new TypeError(`a malformed batch call: its input count is ${count}`));
    }
    expect(() => contextCount(['e', 'o', 'p'])).toThrow(
      new TypeError('a malformed batch call: its contexts are 3 values, not 4 per input'),
    );
    expect(() => contextCount('e')).toThrow(/a malformed batch call: its contexts are e/);
    expect(() => contextCount(['e', 'o', 'p', 0, 7, 'o', 'p', 0])).toThrow(
      new TypeError(
        'a malformed batch call: the context of input 1 is not [eventId, origin, path, listen] (strings; the path may be absent)',
      ),
    );
  });

  it('replies with a packed flat array', () => {
    const flat = flatten([
      { ok: true, value: 1 },
      { ok: false, error: { name: 'TypeError', message: 'no' } },
    ]);
    expect(tagOf(flat)).toBe(DENSE);
    // [ok, value | error, ...]: what the main side reads in place (pooled.ts).
    expect(flat).toEqual([1, 1, 0, { name: 'TypeError', message: 'no' }]);
  });

  it("packs OnnxModel bodies into a packed list (the elements go into the batch's list)", () => {
    const body = { inputs: [{ name: 'x', shape: [1, 2], datatype: 'FP32', data: [1, 2] }] };
    const { bodies } = packBatch([body, 'not a body', body]);
    expect(tagOf(bodies)).toBe(DENSE);
    expect(bodies).toEqual([0, undefined, 1]);
  });
});
