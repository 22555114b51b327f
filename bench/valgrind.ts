// Shared by bench/callgrind.ts and bench/callgrindStep.ts: a fixture forked under valgrind's
// callgrind with instrumentation off (switched on with `callgrind_control -i on <pid>` once the
// fixture is warm), and the totals of the dump `callgrind_control -d` made, per thread.
import { fork, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/** Forks `fixture` (with `args`) under callgrind, writing its dumps into `dir`. */
export function forkUnderCallgrind(
  fixture: string | URL,
  args: readonly string[],
  dir: string,
  options: { readonly nodeArgs?: readonly string[]; readonly env?: NodeJS.ProcessEnv; readonly stdout?: 'ignore' | 'inherit' } = {},
): ChildProcess {
  return fork(fixture, [...args], {
    execPath: 'valgrind',
    execArgv: [
      '--tool=callgrind',
      '-q',
      '--instr-atstart=no',
      '--separate-threads=yes',
      '--smc-check=all-non-file', // V8 writes and rewrites its machine code in the heap
      `--callgrind-out-file=${join(dir, 'callgrind.out.%p')}`,
      process.execPath,
      ...(options.nodeArgs ?? []),
    ],
    ...(options.env ? { env: options.env } : {}),
    stdio: ['ignore', options.stdout ?? 'ignore', 'inherit', 'ipc'],
  });
}

/** The `summary:` totals of every callgrind output file of dump 1 (the first `-d`), by thread number. */
export function dumpTotals(dir: string, pid: number): Map<number, number> {
  const out = new Map<number, number>();
  for (const file of readdirSync(dir)) {
    // callgrind.out.<pid>.<dump>-<thread>; dump 1 is the one callgrind_control -d made.
    const m = new RegExp(`^callgrind\\.out\\.${pid}\\.1-(\\d+)$`).exec(file);
    if (m === null) continue;
    const summary = /^summary:\s*(\d+)/m.exec(readFileSync(join(dir, file), 'utf8'));
    if (summary !== null) out.set(Number(m[1]), Number(summary[1]));
  }
  return out;
}
