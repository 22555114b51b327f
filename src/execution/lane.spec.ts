// The one lane: FIFO on a ring buffer, concurrency, overflow, timeouts, batches (virtual time), cancel, failAll.
import fc from 'fast-check';
import { config } from 'rxjs';
import { TestScheduler } from 'rxjs/testing';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { QueueFullError } from '../errors.js';
import { Lane, LaneCall, type LaneUnit } from './lane.js';
import { RingQueue } from './ringQueue.js';

class Call extends LaneCall<string> {
  aborted: unknown = undefined;
  outcome: string | undefined = undefined;
  constructor(readonly name: string) {
    super();
  }
  abort(reason: unknown) {
    this.aborted = reason;
  }
  settled(value: string | undefined, error: Error | undefined) {
    this.outcome = error ? `error:${error.name}:${error.message}` : `ok:${value}`;
  }
}

/** A lane whose runs are recorded and finished by hand. */
function manual(options: Partial<ConstructorParameters<typeof Lane<Call>>[0]> = {}) {
  const runs: { calls: readonly Call[]; unit: LaneUnit }[] = [];
  const cancelled: string[] = [];
  const lane = new Lane<Call>({
    name: 'm',
    ...options,
    run: (calls, unit) => {
      // A copy: the lane empties a unit's own list once the unit is done.
      runs.push({ calls: [...calls], unit });
      for (const call of calls) call.cancelWork = () => cancelled.push(call.name);
    },
  });
  return { lane, runs, cancelled };
}

/**
 * A batching lane that records when each batch starts (`<time>:<call names>`, on `clock`'s time)
 * and settles its calls at once with their names.
 */
function settlingBatches(clock: { now(): number }, options: Partial<ConstructorParameters<typeof Lane<Call>>[0]>) {
  const starts: string[] = [];
  const lane: Lane<Call> = new Lane<Call>({
    name: 'b',
    ...options,
    run: (calls) => {
      starts.push(`${clock.now()}:${calls.map((c) => c.name).join('')}`);
      for (const c of calls) lane.settle(c, c.name, undefined);
    },
  });
  return { lane, starts };
}

describe('RingQueue', () => {
  it('is a FIFO that grows past its first buffer and wraps around', () => {
    const q = new RingQueue<number>();
    const out: number[] = [];
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 40; i++) q.push(round * 100 + i);
      for (let i = 0; i < 25; i++) out.push(q.shift()!);
    }
    expect(q.length).toBe(45);
    out.push(...q.drain());
    expect(q.length).toBe(0);
    expect(q.shift()).toBeUndefined();
    const expected = [0, 1, 2].flatMap((r) => Array.from({ length: 40 }, (_, i) => r * 100 + i));
    expect(out).toEqual(expected);
  });
});

describe('Lane', () => {
  it('runs at most maxInFlight calls, the rest wait in arrival order', () => {
    const { lane, runs } = manual({ maxInFlight: 2 });
    const calls = ['a', 'b', 'c', 'd'].map((n) => lane.submit(new Call(n)));
    expect(runs.map((r) => r.calls[0].name)).toEqual(['a', 'b']);
    expect(lane.counts()).toEqual({ inFlight: 2, queued: 2 });
    lane.settle(calls[1], 'B', undefined);
    expect(runs.map((r) => r.calls[0].name)).toEqual(['a', 'b', 'c']);
    lane.settle(calls[0], 'A', undefined);
    expect(runs.map((r) => r.calls[0].name)).toEqual(['a', 'b', 'c', 'd']);
    expect(calls.map((c) => c.outcome)).toEqual(['ok:A', 'ok:B', undefined, undefined]);
    lane.settle(calls[1], 'again', undefined); // a second report is ignored
    expect(calls[1].outcome).toBe('ok:B');
  });

  it('past maxQueue a call settles at once with QueueFullError; nothing else moves', () => {
    const { lane } = manual({ maxInFlight: 1, maxQueue: 1 });
    lane.submit(new Call('a'));
    const b = lane.submit(new Call('b'));
    const c = lane.submit(new Call('c'));
    expect(c.outcome).toMatch(/^error:QueueFullError:/);
    expect(b.outcome).toBeUndefined();
    expect(lane.counts()).toEqual({ inFlight: 1, queued: 1 });
    expect(new QueueFullError('m', 1, 1).message).toMatch(/maxInFlight|maxQueue/);
  });

  it('cancel: a waiting call never runs; a running one is aborted, its work cancelled, its slot freed; no outcome', () => {
    const { lane, runs, cancelled } = manual({ maxInFlight: 1 });
    const a = lane.submit(new Call('a'));
    const b = lane.submit(new Call('b'));
    const c = lane.submit(new Call('c'));
    lane.cancel(b, 'gone');
    lane.cancel(a, 'stop');
    expect(a.aborted).toBe('stop');
    expect(cancelled).toEqual(['a']);
    expect(runs.map((r) => r.calls[0].name)).toEqual(['a', 'c']);
    expect([a.outcome, b.outcome, c.outcome]).toEqual([undefined, undefined, undefined]);
    expect(lane.counts()).toEqual({ inFlight: 1, queued: 0 });
  });

  it('failAll settles every waiting and running call with the error, running ones aborted first', () => {
    const { lane, cancelled } = manual({ maxInFlight: 1 });
    const a = lane.submit(new Call('a'));
    const b = lane.submit(new Call('b'));
    lane.failAll(new RangeError('closing'));
    expect([a.outcome, b.outcome]).toEqual(['error:RangeError:closing', 'error:RangeError:closing']);
    expect(a.aborted).toBeInstanceOf(RangeError);
    expect(cancelled).toEqual(['a']);
    expect(lane.counts()).toEqual({ inFlight: 0, queued: 0 });
  });

  it('a unit held by its runner keeps its slot after its calls settle, until released', () => {
    let release: () => void = () => undefined;
    const runs: string[] = [];
    const lane = new Lane<Call>({
      name: 'h',
      maxInFlight: 1,
      run: (calls, unit) => {
        runs.push(calls[0].name);
        release = unit.hold();
      },
    });
    const a = lane.submit(new Call('a'));
    lane.submit(new Call('b'));
    lane.cancel(a, 'x');
    expect(runs).toEqual(['a']);
    release();
    expect(runs).toEqual(['a', 'b']);
  });

  it('canRun returning a promise holds the calls until it settles', async () => {
    let open: () => void = () => undefined;
    let gate: true | Promise<void> = new Promise<void>((r) => (open = r));
    const { lane, runs } = manual({ canRun: () => gate });
    lane.submit(new Call('a'));
    lane.submit(new Call('b'));
    expect(runs).toEqual([]);
    gate = true;
    open();
    await Promise.resolve();
    await Promise.resolve();
    expect(runs.map((r) => r.calls[0].name)).toEqual(['a', 'b']);
  });

  it("empties a unit's list of calls once the unit is done, not before (an old-space list must not keep them alive)", () => {
    const lists: (readonly Call[])[] = [];
    let release: (() => void) | undefined;
    const lane = new Lane<Call>({
      name: 'm',
      maxInFlight: 1,
      batching: { maxBatchSize: 4, maxWaitMs: 0 },
      run: (calls, unit) => {
        lists.push(calls);
        if (lists.length === 2) release = unit.hold(); // released below, after its calls settled
      },
    });
    const a = lane.submit(new Call('a'));
    const waiting = ['b', 'c'].map((n) => lane.submit(new Call(n)));
    expect(lists[0].map((c) => c.name)).toEqual(['a']);
    lane.settle(a, 'A', undefined);
    expect(lists[0]).toEqual([]);
    expect(lists[1].map((c) => c.name)).toEqual(['b', 'c']);
    lane.settle(waiting[0], 'B', undefined);
    expect(lists[1].map((c) => c.name)).toEqual(['b', 'c']); // c still runs
    lane.settle(waiting[1], 'C', undefined);
    expect(lists[1].map((c) => c.name)).toEqual(['b', 'c']); // the hold still keeps the unit
    release!();
    expect(lists[1]).toEqual([]);
    expect(waiting.map((c) => c.outcome)).toEqual(['ok:B', 'ok:C']);
  });

  it('pause holds calls (still bounded by maxQueue); resume starts them', () => {
    const { lane, runs } = manual({ maxQueue: 1 });
    lane.pause();
    lane.submit(new Call('a'));
    const b = lane.submit(new Call('b'));
    expect(b.outcome).toMatch(/QueueFullError/);
    lane.resume();
    expect(runs.map((r) => r.calls[0].name)).toEqual(['a']);
  });

  it('spread: calls queued while busy leave as batches spread over the slots', () => {
    const { lane, runs } = manual({ maxInFlight: 2, batching: { maxBatchSize: 8, maxWaitMs: 0 }, spread: true });
    const calls = Array.from({ length: 8 }, (_, i) => lane.submit(new Call(`c${i}`)));
    expect(runs.map((r) => r.calls.length)).toEqual([1, 1]); // idle slots: one call each, at once
    lane.settle(calls[0], 'x', undefined);
    // 6 waiting over 2 slots → a batch of 3
    expect(runs.map((r) => r.calls.length)).toEqual([1, 1, 3]);
  });

  it('timeouts (virtual time): a call running past timeoutMs is aborted, cancelled and settled with the error', () => {
    new TestScheduler((a, b) => expect(a).toEqual(b)).run(({ flush }) => {
      const { lane, cancelled } = manual({ timeoutMs: 5, timeoutError: (c) => new RangeError(`${c.name} too slow`) });
      const a = lane.submit(new Call('a'));
      const b = lane.submit(new Call('b'));
      lane.settle(b, 'fast', undefined);
      flush();
      expect(a.outcome).toBe('error:RangeError:a too slow');
      expect(a.aborted).toBeInstanceOf(RangeError);
      expect(cancelled).toEqual(['a']);
      expect(b.outcome).toBe('ok:fast');
    });
  });

  it('dynamic batching (virtual time): a full batch leaves at once, a partial one maxWaitMs after its first call', () => {
    const scheduler = new TestScheduler((a, b) => expect(a).toEqual(b));
    scheduler.run(({ cold, flush }) => {
      const { lane, starts } = settlingBatches(scheduler, { maxInFlight: 4, batching: { maxBatchSize: 3, maxWaitMs: 10 } });
      // t=0: a, b, c fill a batch; t=6: d and t=8: e wait for more, and leave together at 6 + 10
      // (a group '(abc)' takes five frames of the diagram)
      cold('(abc)-d-e').subscribe((n) => lane.submit(new Call(n)));
      flush();
      expect(starts).toEqual(['0:abc', '16:de']);
    });
  });

  it('dynamic batching: a wait that begins while the timer of an earlier one is armed still lasts maxWaitMs', () => {
    // The timer is not cancelled when a batch leaves (issue 26 goal 3): it fires at the earlier
    // wait's end and is set again for the rest of the running one.
    const scheduler = new TestScheduler((a, b) => expect(a).toEqual(b));
    scheduler.run(({ cold, flush }) => {
      const { lane, starts } = settlingBatches(scheduler, { batching: { maxBatchSize: 2, maxWaitMs: 10 } });
      // a waits from 0 (timer at 10); b fills the batch at 2; c waits from 5, so it leaves at 15;
      // d waits from 20 and e fills its batch at 24; f alone from 26 leaves at 36.
      cold('a-b--c--------------d---e-f').subscribe((n) => lane.submit(new Call(n)));
      flush();
      expect(starts).toEqual(['2:ab', '15:c', '24:de', '36:f']);
    });
  });

  it('dynamic batching: a wait whose calls were all cancelled is over; the next call waits its whole maxWaitMs', () => {
    const scheduler = new TestScheduler((a, b) => expect(a).toEqual(b));
    scheduler.run(({ flush }) => {
      const { lane, starts } = settlingBatches(scheduler, { batching: { maxBatchSize: 3, maxWaitMs: 10 } });
      const a = lane.submit(new Call('a'));
      scheduler.schedule(() => lane.cancel(a, new Error('gone')), 1);
      scheduler.schedule(() => void lane.submit(new Call('b')), 12);
      scheduler.schedule(() => void lane.submit(new Call('c')), 14);
      flush();
      expect(a.outcome).toBeUndefined();
      expect(starts).toEqual(['22:bc']);
    });
  });

  it('dynamic batching: an idle lane keeps no timer — a process is not held maxWaitMs after its last call', () => {
    // Real timers: the batch timer left armed by a batch that leaves (above) goes once nothing
    // waits or runs. Before, a full batch's timer kept the process alive for maxWaitMs after it.
    const timers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
    const before = timers();
    const { lane, starts } = settlingBatches(Date, { batching: { maxBatchSize: 2, maxWaitMs: 60_000 } });
    lane.submit(new Call('a'));
    expect(timers()).toBe(before + 1); // a waits for a second call
    lane.submit(new Call('b')); // the batch is full: it leaves and both settle
    expect(starts.map((s) => s.split(':')[1])).toEqual(['ab']);
    expect(timers()).toBe(before);
    // A wait whose only call is cancelled leaves no timer either.
    const c = lane.submit(new Call('c'));
    expect(timers()).toBe(before + 1);
    lane.cancel(c, new Error('gone'));
    expect(timers()).toBe(before);
  });

  it('dynamic batching: a batch that is due but has no free slot leaves as soon as one frees', () => {
    const scheduler = new TestScheduler((a, b) => expect(a).toEqual(b));
    scheduler.run(({ flush }) => {
      const starts: string[] = [];
      const lane = new Lane<Call>({
        name: 'b',
        maxInFlight: 1,
        batching: { maxBatchSize: 5, maxWaitMs: 3 },
        run: (calls) => void starts.push(`${scheduler.now()}:${calls.map((c) => c.name).join('')}`),
      });
      const a = lane.submit(new Call('a'));
      flush(); // t=3: 'a' leaves alone and holds the only slot
      lane.submit(new Call('b'));
      flush(); // b waits 3 more, is due, but the slot is taken
      expect(starts).toEqual(['3:a']);
      lane.settle(a, 'A', undefined);
      expect(starts).toEqual(['3:a', '6:b']);
    });
  });
});

// docs/design.md §11 (turn 3): no exception on any path may leave a lane slot taken. Every hook an owner
// gives the lane (run, settled, abort, cancelWork, timeoutError) is made to throw at random
// points while calls are submitted, settled, cancelled, timed out and failed; afterwards the lane
// must be empty and a new call must start at once.
describe('Lane: a throw at any stage frees the slot', () => {
  class Throwing extends LaneCall<string> {
    outcomes = 0;
    constructor(
      readonly name: string,
      readonly throwIn: ReadonlySet<string>,
    ) {
      super();
    }
    abort() {
      if (this.throwIn.has('abort')) throw new Error(`${this.name}: abort threw`);
    }
    settled() {
      this.outcomes++;
      if (this.throwIn.has('settled')) throw new Error(`${this.name}: settled threw`);
    }
  }
  const STAGES = ['abort', 'settled', 'cancelWork', 'runBefore', 'runAfter'] as const;
  const op = fc.oneof(
    fc.record({ kind: fc.constant('submit' as const), throwIn: fc.subarray([...STAGES]) }),
    fc.record({ kind: fc.constantFrom('settle' as const, 'fail' as const, 'cancel' as const), pick: fc.nat() }),
    fc.record({ kind: fc.constantFrom('tick' as const, 'failAll' as const, 'failWaiting' as const) }),
  );

  // A hook that throws in a timer (a timeout, a batch's wait) is reported where RxJS reports
  // errors nobody can catch; here they are expected, so they are counted instead.
  let reported = 0;
  const previous = config.onUnhandledError;
  beforeEach(() => {
    config.onUnhandledError = () => void reported++;
  });
  afterEach(() => {
    config.onUnhandledError = previous;
  });

  it('property: after any mix of throwing hooks the lane holds no slot and no call, and each call settled at most once', () => {
    fc.assert(
      fc.property(
        fc.array(op, { maxLength: 40 }),
        fc.record({ maxInFlight: fc.integer({ min: 1, max: 3 }), batch: fc.integer({ min: 1, max: 3 }), timeoutThrows: fc.boolean() }),
        (ops, { maxInFlight, batch, timeoutThrows }) => {
          new TestScheduler((a, b) => expect(a).toEqual(b)).run(({ flush }) => {
            const calls: Throwing[] = [];
            let started = 0;
            const lane = new Lane<Throwing>({
              name: 'p',
              maxInFlight,
              timeoutMs: 3,
              timeoutError: (c) => {
                if (timeoutThrows) throw new Error(`${c.name}: timeoutError threw`);
                return new RangeError('slow');
              },
              ...(batch > 1 ? { batching: { maxBatchSize: batch, maxWaitMs: 1 } } : {}),
              run: (units) => {
                started += units.length;
                for (const call of units) {
                  const throwIn = call.throwIn;
                  call.cancelWork = () => {
                    if (throwIn.has('cancelWork')) throw new Error('cancelWork threw');
                  };
                  if (throwIn.has('runBefore')) throw new Error('run threw before settling');
                }
                // Settle the first call synchronously (a naive model), then maybe throw.
                const first = units[0];
                if (first.throwIn.has('runAfter')) {
                  lane.settle(first, 'sync', undefined);
                  throw new Error('run threw after settling');
                }
              },
            });
            const attempt = (fn: () => void) => {
              try {
                fn();
              } catch {
                // Hooks are meant to throw here; what matters is the lane's state afterwards.
              }
            };
            for (const o of ops) {
              const live = calls.filter((c) => !c.done);
              const target = 'pick' in o && live.length > 0 ? live[o.pick % live.length] : undefined;
              switch (o.kind) {
                case 'submit':
                  attempt(() => calls.push(lane.submit(new Throwing(`c${calls.length}`, new Set(o.throwIn)))));
                  break;
                case 'settle':
                  if (target) attempt(() => lane.settle(target, 'ok', undefined));
                  break;
                case 'fail':
                  if (target) attempt(() => lane.settle(target, undefined, new Error('model failed')));
                  break;
                case 'cancel':
                  if (target) attempt(() => lane.cancel(target, new Error('cancelled')));
                  break;
                case 'tick':
                  attempt(() => flush());
                  break;
                case 'failAll':
                  attempt(() => lane.failAll(new Error('closing')));
                  break;
                case 'failWaiting':
                  attempt(() => lane.failWaiting(new Error('pool closed')));
                  break;
              }
            }
            // Drain: everything left times out (or is failed) through the same throwing hooks.
            attempt(() => flush());
            attempt(() => lane.failAll(new Error('end')));
            attempt(() => flush());
            expect(lane.counts()).toEqual({ inFlight: 0, queued: 0 });
            for (const call of calls) {
              expect(call.done).toBe(true);
              expect(call.outcomes).toBeLessThanOrEqual(1);
            }
            // No slot is taken: maxInFlight fresh calls all start.
            const before = started;
            for (let i = 0; i < maxInFlight; i++) lane.submit(new Throwing(`fresh${i}`, new Set()));
            flush();
            expect(started - before).toBe(maxInFlight);
          });
        },
      ),
      { numRuns: 500 },
    );
    // The runs did make hooks throw inside timers, and those throws were reported, not lost.
    expect(reported).toBeGreaterThan(0);
  });
});
