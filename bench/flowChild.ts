// One flow bench case in a process of its own (started by bench/flow.bench.ts, bundled first):
//   paired <case> <events> <rounds> <warmups>
//                                          the flow and its baseline in alternating rounds (after
//                                          `warmups` runs of each), timed by this process's CPU time;
//                                          prints the paired ratio as JSON
//   icount <case> <events> <rounds> <warmups>
//                                          run under callgrind with --dump-before=uv_getrusage:
//                                          `warmups` runs of each side, then the sides in
//                                          alternating rounds of `events`, each run between two
//                                          process.cpuUsage() calls (each closes a callgrind dump);
//                                          prints each run's side, one a line, in order
import { drive, type RunFigures } from './driver.js';
import { body, flowCase } from './flowCases.js';
import { medianBy, paired } from './paired.js';
import type { OperatorFunction } from 'rxjs';
import type { ServingEvent } from 'rxserve';

type Op = OperatorFunction<ServingEvent, ServingEvent>;

/** What a `paired` child prints. */
export interface PairedFigures {
  readonly ratio: number;
  readonly low: number;
  readonly high: number;
  /** The median round's CPU µs per event of each side. */
  readonly oursUs: number;
  readonly baseUs: number;
}

/** One run of `total` events through `op`, timed by this process's CPU time (user + system). */
async function cpuRun(op: Op, total: number): Promise<number> {
  const before = process.cpuUsage();
  await drive(op, total, 64, body);
  const cpu = process.cpuUsage(before);
  return (cpu.user + cpu.system) / total;
}

const [mode, key, ...rest] = process.argv.slice(2);
const which = flowCase(key ?? '');
if (mode === 'paired') {
  const [events, rounds, warmups] = rest.map(Number);
  const p = await paired(
    () => cpuRun(which.ours(), events),
    () => cpuRun(which.base(), events),
    { rounds, warmups, metric: (us) => us },
  );
  const us = (x: number) => x;
  const figures: PairedFigures = { ratio: p.ratio, low: p.low, high: p.high, oursUs: medianBy(p.ours, us), baseUs: medianBy(p.base, us) };
  process.stdout.write(`${JSON.stringify(figures)}\n`);
} else if (mode === 'icount') {
  const [events, rounds, warmups] = rest.map(Number);
  const sides = { ours: which.ours, base: which.base };
  // Several runs, each with its operator made anew as the measured ones are: in one long run V8
  // had not yet compiled all it would, and the first measured round counted TurboFan's work.
  for (let i = 0; i < warmups; i++) for (const make of [which.base, which.ours]) await drive(make(), events, 64, body);
  for (let round = 0; round < rounds; round++) {
    for (const side of round % 2 === 0 ? (['base', 'ours'] as const) : (['ours', 'base'] as const)) {
      const op = sides[side]();
      process.cpuUsage();
      const figures: RunFigures = await drive(op, events, 64, body);
      process.cpuUsage();
      if (figures.events !== events) throw new Error(`flow bench child: ${figures.events} events came out of ${events}`);
      process.stdout.write(`${side}\n`);
    }
  }
} else {
  throw new Error(`flow bench child: mode must be paired or icount, got '${mode}'`);
}
