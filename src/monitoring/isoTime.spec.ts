import { describe, expect, it } from 'vitest';
import { isoTime } from './isoTime.js';

describe('isoTime', () => {
  it('is toISOString of the millisecond, for calls in one millisecond and across milliseconds', () => {
    const base = Date.UTC(2026, 10, 25, 18, 0, 0, 0);
    for (const ms of [base + 0.1, base + 0.9, base + 1, base + 1.5, base + 999.99, base + 1000, base - 86_400_000.25]) {
      expect(isoTime(ms)).toBe(new Date(ms).toISOString());
    }
  });
});
