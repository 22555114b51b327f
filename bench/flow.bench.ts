// Flows (docs/design.md §17) against the same work written by hand in RxJS (the cases and their
// goals: bench/flowCases.ts). One process's ratio moves by ±0.1 from run to run (which functions
// V8 optimises and how differs per process, and the machine is shared), wider than the distance to
// the goals; so each case is judged two ways, both in fresh processes (bench/flowChild.ts, bundled
// from src/ first):
//   - CPU time: the flow and its baseline in alternating rounds in each of several fresh processes
//     (bench/paired.ts: the median of the rounds' ratios); the figure is the median over the
//     processes, with their range beside it.
//   - Instructions (when valgrind is installed; not with --quick): the same alternating rounds in
//     one process under callgrind, with V8's --predictable (one thread: no concurrent compiling or
//     GC, so the count is the same from run to run), instructions per event of each run counted
//     between two process.cpuUsage() calls (each closes a callgrind dump). Instructions are not
//     time, but they do not depend on the load, so they show a change of a few percent that CPU
//     time on a shared machine cannot.
import { execFile } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { loadavg } from 'node:os';
import { promisify } from 'node:util';
import { build } from 'esbuild';
import type { PairedFigures } from './flowChild.js';
import { FLOW_CASES, type FlowCase } from './flowCases.js';
import { quantile } from './paired.js';

const run = promisify(execFile);
const root = new URL('..', import.meta.url).pathname;
const tmp = `${root}.bench-tmp/flow`;
const child = `${tmp}/flowChild.mjs`;

/** One case's figures. */
export interface FlowRow {
  readonly case: FlowCase;
  /** Each process's paired CPU ratio (median of its rounds), sorted. */
  readonly processes: readonly number[];
  /** The median over the processes, and the median process's CPU µs per event of each side. */
  readonly ratio: number;
  readonly oursUs: number;
  readonly baseUs: number;
  /** Instructions per event (medians over the rounds) and the median of the rounds' ratios. */
  readonly instructions?: { readonly ours: number; readonly base: number; readonly ratio: number };
}

let loadAtStart = loadavg();
let loadAtEnd = loadavg();
let setup = '';
let cpuSeconds = 0;

/** The child bundled from the sources (src/index.ts as 'rxserve'; packages stay in node_modules). */
async function bundle(): Promise<void> {
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  await build({
    entryPoints: [`${root}bench/flowChild.ts`],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    outfile: child,
    // RXSERVE_BENCH_SRC: another copy of src/ (an older commit's, for a before/after).
    alias: { rxserve: `${process.env.RXSERVE_BENCH_SRC ?? `${root}src`}/index.ts` },
    packages: 'external',
    logLevel: 'warning',
  });
}

async function hasValgrind(): Promise<boolean> {
  try {
    await run('valgrind', ['--version']);
    return true;
  } catch {
    return false;
  }
}

/** One case under callgrind: per-event instructions of each side, from the dumps around each run. */
async function countInstructions(c: FlowCase, events: number, rounds: number, warmups: number): Promise<FlowRow['instructions']> {
  const dir = `${tmp}/cg-${FLOW_CASES.indexOf(c)}`;
  mkdirSync(dir, { recursive: true });
  const { stdout } = await run(
    'valgrind',
    [
      '--tool=callgrind',
      // V8 writes code at run time; valgrind's default check re-hashes such code on every run of
      // it (about twice as slow here). Without it, code written where earlier code ran would run
      // stale: each run checks its event count, and the counts repeat from run to run.
      '--smc-check=none',
      '--dump-before=uv_getrusage',
      `--callgrind-out-file=${dir}/cg.out`,
      process.execPath,
      '--predictable',
      // A small young generation: a scavenge every ~1 MB, so each run holds several and where
      // they fall moves its count less.
      '--max-semi-space-size=1',
      '--random-seed=1',
      '--hash-seed=1',
      child,
      'icount',
      c.key,
      String(events),
      String(rounds),
      String(warmups),
    ],
    { maxBuffer: 1 << 24 },
  );
  const sides = stdout.trim().split('\n');
  // Dump k closes what ran before the k-th cpuUsage() call: run i is dump 2i + 2.
  const totals = new Map<number, number>();
  for (const file of readdirSync(dir)) {
    const k = /^cg\.out\.(\d+)$/.exec(file)?.[1];
    if (k === undefined) continue;
    const total = /^(?:summary|totals): (\d+)/m.exec(readFileSync(`${dir}/${file}`, 'utf8'))?.[1];
    totals.set(Number(k), Number(total));
  }
  const per: Record<'ours' | 'base', number[]> = { ours: [], base: [] };
  sides.forEach((side, i) => {
    const total = totals.get(2 * i + 2);
    if (total === undefined) throw new Error(`flow bench: no callgrind dump for run ${i} of ${c.key} (${totals.size} dumps)`);
    per[side as 'ours' | 'base'].push(total / events);
  });
  rmSync(dir, { recursive: true, force: true });
  const ratios = per.ours.map((o, i) => o / per.base[i]).sort((x, y) => x - y);
  const median = (xs: number[]) =>
    quantile(
      [...xs].sort((x, y) => x - y),
      0.5,
    );
  return { ours: median(per.ours), base: median(per.base), ratio: quantile(ratios, 0.5) };
}

export async function runFlow(quick: boolean): Promise<FlowRow[]> {
  loadAtStart = loadavg();
  const t0 = Date.now();
  await bundle();
  const processes = quick ? 3 : 5;
  const events = quick ? 20_000 : 30_000;
  const rounds = quick ? 3 : 5;
  // A fresh process needs a few runs before V8 has settled on its code for both sides.
  const warmups = 3;
  setup = `CPU: ${processes} fresh processes per case, each ${rounds} alternating rounds of ${events.toLocaleString('en-US')} events per side after ${warmups} warm-up runs`;
  const rows: FlowRow[] = [];
  // CPU first, one process at a time: the callgrind runs below would skew it.
  for (const c of FLOW_CASES) {
    const figures: PairedFigures[] = [];
    for (let p = 0; p < processes; p++) {
      const { stdout } = await run(process.execPath, [child, 'paired', c.key, String(events), String(rounds), String(warmups)]);
      figures.push(JSON.parse(stdout) as PairedFigures);
    }
    figures.sort((x, y) => x.ratio - y.ratio);
    const mid = figures[Math.floor(figures.length / 2)];
    rows.push({ case: c, processes: figures.map((f) => f.ratio), ratio: mid.ratio, oursUs: mid.oursUs, baseUs: mid.baseUs });
  }
  loadAtEnd = loadavg();
  cpuSeconds = (Date.now() - t0) / 1000;
  if (!quick && (await hasValgrind())) {
    // The cases with a goal in question, two at a time (instructions do not mind sharing the cores).
    const counted = FLOW_CASES.filter((c) => c.key === 'a' || c.key === 'b');
    const [n, r, w] = [5_000, 3, 3];
    setup += `; instructions: callgrind, ${r} alternating rounds of ${n.toLocaleString('en-US')} events per side after ${w} warm-up runs, node --predictable`;
    const counts = await Promise.all(counted.map((c) => countInstructions(c, n, r, w)));
    console.log(`flow: CPU part ${cpuSeconds.toFixed(0)} s, instructions ${((Date.now() - t0) / 1000 - cpuSeconds).toFixed(0)} s`);
    counted.forEach((c, i) => {
      const at = rows.findIndex((row) => row.case === c);
      rows[at] = { ...rows[at], instructions: counts[i] };
    });
  }
  return rows;
}

export function flowMarkdown(rows: readonly FlowRow[]): string {
  const load = (l: number[]) => l.map((x) => x.toFixed(1)).join(', ');
  const range = (xs: readonly number[]) => `${xs[0].toFixed(2)}–${xs[xs.length - 1].toFixed(2)}`;
  const k = (x: number) => `${(x / 1000).toFixed(1)} k`;
  return [
    `${setup}. Load average at the start: ${load(loadAtStart)}; after the CPU runs: ${load(loadAtEnd)}.`,
    '',
    '| case | baseline | CPU µs/event flow / baseline | CPU ratio: median of processes (range) | instructions/event flow / baseline | instruction ratio | goal |',
    '|---|---|---|---|---|---|---|',
    ...rows
      .map((r) => {
        const i = r.instructions;
        return [
          r.case.name,
          r.case.baseline,
          `${r.oursUs.toFixed(2)} / ${r.baseUs.toFixed(2)}`,
          `${r.ratio.toFixed(2)}× (${range(r.processes)})`,
          i ? `${k(i.ours)} / ${k(i.base)}` : '–',
          i ? `${i.ratio.toFixed(3)}×` : '–',
          r.case.goal === undefined ? '–' : `≤ ${r.case.goal}×`,
        ].join(' | ');
      })
      .map((line) => `| ${line} |`),
  ].join('\n');
}
