// CPU time per thread of this process, for the per-thread probes (bench/onnxThreads.ts,
// bench/piscinaFloor.ts): /proc/self/task/<tid>/stat's user + system ticks (10 ms each).
import { readFileSync, readdirSync } from 'node:fs';

/** Ticks of CPU (user + system) per thread id; a thread that ended while read is left out. */
export function threadTicks(): Map<string, number> {
  const ticks = new Map<string, number>();
  for (const tid of readdirSync('/proc/self/task')) {
    try {
      const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks.set(tid, Number(fields[11]) + Number(fields[12]));
    } catch {
      // the thread ended
    }
  }
  return ticks;
}
