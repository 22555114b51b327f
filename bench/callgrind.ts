// Instructions per request of the serve bench's servers under valgrind's callgrind: a judge of
// bench/serve.bench.ts's (b)/(a) that load on a shared machine cannot move (CPU time can). Each
// server runs in its own process under callgrind with instrumentation off; after a warm-up it is
// switched on for a fixed number of requests (64 connections, the bench's body), then the
// counts are dumped per thread. The main thread's count is the server's own work (V8's
// background compiler and GC helpers run on other threads, and their share depends on timing).
// Not run by `bench/run.ts` (~1–2 minutes per server on this machine); docs/benchmarks.md cites it.
//
//   npx tsx bench/callgrind.ts [kind...]     kinds of bench/fixtures/serveTarget.mjs; default raw serve
//   npx tsx bench/callgrind.ts raw serve /tmp/old:serve
//                                           <dir>:<kind> runs <dir>/bench/fixtures/serveTarget.mjs, the
//                                           build of another checkout (its own dist/): a before/after
//
// What it reads: user-space instructions only (the kernel's socket work is not counted, nor is
// time lost to cache misses), so it sees the JavaScript a change removes and nothing else.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import autocannon from 'autocannon';
import { dumpTotals, forkUnderCallgrind } from './valgrind.js';

const WARMUP = 6_000;
const MEASURED = 3_000;
const BODY = JSON.stringify({ x: 1, text: 'hello world', tags: ['a', 'b'] });

interface Count {
  readonly kind: string;
  /** Instructions per request: the main thread, and every thread. */
  readonly main: number;
  readonly all: number;
  /**
   * Of the main thread's, those in V8's runtime path for node's tick objects (inclusive): ~0 when
   * `process.nextTick`'s feedback stayed monomorphic, ~20,000 when it went megamorphic (see
   * "The floor's luck" in docs/benchmarks.md) — a per-process state to read beside the totals.
   */
  readonly megamorphicTicks: number;
}

const requests = (url: string, amount: number) =>
  autocannon({ url, method: 'POST', connections: 64, amount, headers: { 'content-type': 'application/json' }, body: BODY });

/** Instructions in (and under) Runtime_DefineKeyedOwnPropertyInLiteral in one output file. */
function tickLiteralCost(file: string): number {
  const annotated = execFileSync('callgrind_annotate', ['--inclusive=yes', '--threshold=100', file], {
    encoding: 'utf8',
    maxBuffer: 64 << 20,
  });
  const line = annotated.split('\n').find((l) => l.includes('Runtime_DefineKeyedOwnPropertyInLiteral'));
  return line === undefined ? 0 : Number(/^\s*([\d,]+)/.exec(line)?.[1]?.replaceAll(',', '') ?? 0);
}

async function count(name: string): Promise<Count> {
  const at = name.lastIndexOf(':');
  const kind = at < 0 ? name : name.slice(at + 1);
  const fixture =
    at < 0 ? new URL('./fixtures/serveTarget.mjs', import.meta.url) : join(name.slice(0, at), 'bench/fixtures/serveTarget.mjs');
  const dir = mkdtempSync(join(tmpdir(), 'rxserve-callgrind-'));
  const child = forkUnderCallgrind(fixture, [kind], dir);
  try {
    const url = await new Promise<string>((resolve, reject) => {
      child.once('message', (m: { url: string }) => resolve(m.url));
      child.once('exit', (code) => reject(new Error(`${kind} exited (${code}) before it listened`)));
    });
    await requests(url, WARMUP);
    const pid = child.pid!;
    execFileSync('callgrind_control', ['-i', 'on', String(pid)], { stdio: 'ignore' });
    const run = await requests(url, MEASURED);
    execFileSync('callgrind_control', ['-d', String(pid)], { stdio: 'ignore' });
    const done = run.requests.total;
    if (run.errors + run.non2xx > 0) throw new Error(`${kind}: ${run.errors} errors, ${run.non2xx} non-2xx answers`);
    const byThread = dumpTotals(dir, pid);
    if (byThread.size === 0) throw new Error(`${kind}: callgrind wrote no dump in ${dir}`);
    const all = [...byThread.values()].reduce((a, b) => a + b, 0);
    const mainFile = join(dir, `callgrind.out.${pid}.1-01`);
    return { kind: name, main: (byThread.get(1) ?? 0) / done, all: all / done, megamorphicTicks: tickLiteralCost(mainFile) / done };
  } finally {
    child.disconnect();
    await new Promise((resolve) => child.once('exit', resolve));
    rmSync(dir, { recursive: true, force: true });
  }
}

const kinds = process.argv.slice(2);
const counts: Count[] = [];
const n = (x: number) => Math.round(x).toLocaleString('en-US');
for (const kind of kinds.length > 0 ? kinds : ['raw', 'serve']) {
  const c = await count(kind);
  counts.push(c);
  console.log(
    `${kind}: ${n(c.main)} instructions/request on the main thread (${n(c.all)} on all threads); ${n(c.megamorphicTicks)} of them building tick objects through the runtime (megamorphic nextTick)`,
  );
}
const [base, ...rest] = counts;
for (const c of rest) {
  console.log(
    `${c.kind} / ${base!.kind}: ${(c.main / base!.main).toFixed(2)}× (main thread), ${(c.all / base!.all).toFixed(2)}× (all threads), ` +
      `${((c.main - c.megamorphicTicks) / (base!.main - base!.megamorphicTicks)).toFixed(2)}× (main thread, without the megamorphic tick objects)`,
  );
}
