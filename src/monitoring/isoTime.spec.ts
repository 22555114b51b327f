import { describe, expect, it } from 'vitest';
import { isoTime } from './isoTime.js';

describe('isoTime', () => {
  it('is toISOString of the millisecond, for calls in one millisecond and across milliseconds', () => {
    const base = Date.UTC(2026, 10, 25, 18, 0, 0, 0);
    for (const ms of [base + 0.1, base + 0.9, base + 1, base + 1.5, base + 999.99, base + 1000, base - 86_400_000.25]) {
      expect(isoTime(ms)).toBe(new Date(ms).toISOString());
    }
  });

  it('writes the milliseconds of one second on its cached text: every padding, second and year boundaries, before 1970, past 9999', () => {
    const seconds = [
      Date.UTC(2026, 11, 7, 15, 20, 30, 0),
      Date.UTC(2026, 11, 31, 23, 59, 59, 0),
      Date.UTC(1969, 11, 31, 23, 59, 59, 0),
      -1000,
      0,
      Date.UTC(12000, 0, 1, 0, 0, 0, 0),
    ];
    for (const second of seconds) {
      for (const millis of [0, 1, 9, 10, 99, 100, 998, 999, 1000, 1001]) {
        const ms = second + millis + 0.25;
        expect(isoTime(ms)).toBe(new Date(Math.floor(ms)).toISOString());
      }
    }
    // Back and forth between seconds: the cached text follows.
    const a = Date.UTC(2026, 0, 1, 0, 0, 1, 5);
    const b = Date.UTC(2026, 0, 1, 0, 0, 2, 5);
    for (const ms of [a, b, a, a + 1, b]) expect(isoTime(ms)).toBe(new Date(ms).toISOString());
  });
});
