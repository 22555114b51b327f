// Instructions per request of a modelRunner step itself, in process: invoker() over a one-model
// naive modelRunner against the same invoker over a bare map() (bench/fixtures/invokerTarget.mjs),
// under valgrind's callgrind and `node --predictable` (GC and compilation on the main thread, so
// its count is the process's), over M requests after a warm-up. No HTTP and no load generator:
// runs of one build differ by up to ~300 instructions where the served route (bench/callgrind.ts, serve
// against serve-map) differs by ~1,000. Not run by `bench/run.ts` (~15 s a kind); docs/benchmarks.md
// cites it.
//
//   npx tsx bench/callgrindStep.ts                     map and step of this checkout's dist/
//   npx tsx bench/callgrindStep.ts /tmp/old:step step   <dir>:<kind> runs another checkout's build
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dumpTotals, forkUnderCallgrind } from './valgrind.js';

const M = 20_000;

async function count(name: string): Promise<{ main: number; all: number }> {
  const at = name.lastIndexOf(':');
  const kind = at < 0 ? name : name.slice(at + 1);
  const fixture =
    at < 0 ? new URL('./fixtures/invokerTarget.mjs', import.meta.url) : join(name.slice(0, at), 'bench/fixtures/invokerTarget.mjs');
  const dir = mkdtempSync(join(tmpdir(), 'rxserve-callgrind-step-'));
  const child = forkUnderCallgrind(fixture, [kind], dir, {
    // One thread compiles and collects, in a fixed order: without it the background compiler's
    // progress under valgrind moved a run's count by thousands (13.4k to 34k for one build).
    nodeArgs: ['--predictable'],
    env: { ...process.env, M: String(M) },
    stdout: 'inherit',
  });
  try {
    const said = (what: string) =>
      new Promise<void>((resolve, reject) => {
        child.once('message', (m) => (m === what ? resolve() : reject(new Error(`${name}: said ${String(m)}, not ${what}`))));
        child.once('exit', (code) => reject(new Error(`${name} exited (${code}) before '${what}'`)));
      });
    await said('warm');
    execFileSync('callgrind_control', ['-i', 'on', String(child.pid)], { stdio: 'ignore' });
    const done = said('done');
    child.send('go');
    await done;
    execFileSync('callgrind_control', ['-d', String(child.pid)], { stdio: 'ignore' });
    const byThread = dumpTotals(dir, child.pid!);
    const main = byThread.get(1) ?? 0;
    let all = 0;
    for (const count of byThread.values()) all += count;
    if (main === 0) throw new Error(`${name}: callgrind wrote no dump of the main thread in ${dir}`);
    return { main: main / M, all: all / M };
  } finally {
    if (child.connected) child.send('exit');
    await new Promise((resolve) => (child.exitCode !== null ? resolve(undefined) : child.once('exit', resolve)));
    rmSync(dir, { recursive: true, force: true });
  }
}

const n = (x: number) => Math.round(x).toLocaleString('en-US');
const names = process.argv.slice(2);
const counts = new Map<string, { main: number; all: number }>();
for (const name of names.length > 0 ? names : ['map', 'step']) {
  const c = await count(name);
  counts.set(name, c);
  console.log(`${name}: ${n(c.main)} instructions/request on the main thread (${n(c.all)} on all threads)`);
}
// The step itself, per build: each '<dir>:step' (or 'step') beside its '<dir>:map' (or 'map').
for (const [name, step] of counts) {
  if (!name.endsWith('step')) continue;
  const base = counts.get(`${name.slice(0, -'step'.length)}map`);
  if (base) console.log(`${name} − map: ${n(step.main - base.main)} instructions/request on the main thread (the step itself)`);
}
