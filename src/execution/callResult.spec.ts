import { of } from 'rxjs';
import { describe, expect, it } from 'vitest';
import { onResult, settlesLater } from './callResult.js';

describe('settlesLater', () => {
  it('is false exactly for the values onResult reports at once', () => {
    const observableLike = Object.assign(() => undefined, { lift: () => undefined, subscribe: () => undefined });
    const cases: [unknown, boolean][] = [
      [1, false],
      [null, false],
      [undefined, false],
      [{ a: 1 }, false],
      [[1, 2], false],
      [() => 1, false],
      [Promise.resolve(1), true],
      [{ then: (ok: (v: number) => void) => ok(1) }, true],
      [of(1), true],
      [observableLike, true],
    ];
    for (const [value, later] of cases) {
      expect(settlesLater(value)).toBe(later);
      let reported = false;
      onResult(
        () => value,
        () => (reported = true),
        () => (reported = true),
      );
      // A value onResult settles at once is reported before onResult returns (an Observable of(1) too: it emits synchronously).
      if (!later) expect(reported).toBe(true);
    }
  });
});
