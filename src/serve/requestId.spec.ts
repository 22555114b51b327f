import { describe, expect, it } from 'vitest';
import { newRequestId, requestIds } from './requestId.js';

const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe('request ids', () => {
  it('are version-4-shaped UUIDs, all different, counting in the last group', () => {
    const ids = Array.from({ length: 10_000 }, () => newRequestId());
    for (const id of ids) expect(id).toMatch(UUID_V4);
    expect(new Set(ids).size).toBe(ids.length);
    const last = (id: string) => Number.parseInt(id.slice(24), 16);
    expect(last(ids[1]) - last(ids[0])).toBe(1);
    expect(ids[0].slice(0, 24)).toBe(ids[9_999].slice(0, 24));
  });

  it('draw a new random prefix before the counter repeats, so a wrapped counter still gives new ids', () => {
    const next = requestIds(4);
    const ids = Array.from({ length: 12 }, () => next());
    expect(new Set(ids).size).toBe(12);
    const prefixes = ids.map((id) => id.slice(0, 24));
    expect(new Set(prefixes.slice(0, 4)).size).toBe(1);
    expect(prefixes[4]).not.toBe(prefixes[3]);
    expect(prefixes[8]).not.toBe(prefixes[7]);
    expect(ids.map((id) => id.slice(24))).toEqual(Array.from({ length: 12 }, (_, i) => `00000000000${i % 4}`));
  });

  it('two sources (two processes) start from different random prefixes', () => {
    expect(requestIds()().slice(0, 24)).not.toBe(requestIds()().slice(0, 24));
  });
});
