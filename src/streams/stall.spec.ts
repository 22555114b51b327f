// The stall report on a fake clock: when it turns on, once per episode, and off again.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { stallWatch } from './stall.js';

describe('stallWatch', () => {
  const o = { stream: 's', group: 'g', consumer: 'c1', maxInFlight: 4, claimIdleMs: 1_000 };
  let clock: number;
  let held: number;
  let emitted: string[];
  const watch = () => stallWatch(o, { held: () => held, starved: () => held >= 4 }, () => clock);
  beforeEach(() => {
    clock = 0;
    held = 0;
    emitted = [];
    vi.spyOn(process, 'emitWarning').mockImplementation(((message: string) => void emitted.push(message)) as never);
  });
  afterEach(() => vi.restoreAllMocks());

  it('stalls once the credit is starved and nothing moved for claimIdleMs; warns once, naming requests.filter', () => {
    const w = watch();
    w.reading(true);
    held = 4;
    w.read();
    clock = 999;
    w.check();
    expect(w.stalled()).toBe(false);
    clock = 1_000;
    expect(w.stalled()).toBe(true);
    for (let i = 0; i < 5; i++, clock += 500) w.check();
    expect(emitted).toHaveLength(1);
    expect(emitted[0]).toContain("redisStream 'c1' (stream 's', group 'g')");
    expect(emitted[0]).toContain('the 4 messages it holds');
    expect(emitted[0]).toContain('requests.filter(predicate)');
    // eslint-disable-next-line @typescript-eslint/unbound-method -- the spy is read by expect, not called
    expect(process.emitWarning).toHaveBeenCalledWith(expect.any(String), { code: 'RXSERVE_STREAM_STALLED' });
  });

  it('a settled message ends the episode; the next stall warns again', () => {
    const w = watch();
    w.reading(true);
    held = 4;
    clock = 2_000;
    w.check();
    w.settled();
    held = 3;
    expect(w.stalled()).toBe(false);
    held = 4;
    w.read();
    clock = 2_500;
    w.check();
    expect(w.stalled()).toBe(false);
    clock = 3_000;
    w.check();
    expect(emitted).toHaveLength(2);
  });

  it('is not stalled with credit left, nor while not reading (before the first read, after close)', () => {
    const w = watch();
    held = 4;
    clock = 5_000;
    expect(w.stalled()).toBe(false);
    w.reading(true);
    clock = 10_000;
    expect(w.stalled()).toBe(true);
    w.reading(false);
    w.check();
    expect(w.stalled()).toBe(false);
    expect(emitted).toEqual([]);
    w.reading(true);
    held = 3;
    clock = 20_000;
    expect(w.stalled()).toBe(false);
  });
});
