// Leak detectors for tests: child processes and OS threads of this process.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';

/** Node child processes of this process (ps itself is a child while it runs: only `node` counts). */
export function nodeChildren(): number {
  try {
    return execFileSync('ps', ['-o', 'comm=', '--ppid', String(process.pid)], { encoding: 'utf8' })
      .split('\n')
      .filter((c) => c.trim() === 'node').length;
  } catch {
    return 0;
  }
}

/** Waits (at most `timeoutMs`) until no more than `target` node children are left. */
export async function settleChildren(target: number, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (nodeChildren() > target && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
}

/**
 * OS threads of this process. A worker thread is an OS thread until it has exited, whoever holds
 * it (piscina keeps its workers unref'd, so process.getActiveResourcesInfo() does not list them).
 */
export const osThreads = (): number => Number(/^Threads:\s+(\d+)/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? NaN);
export const canCountThreads = existsSync('/proc/self/status');
