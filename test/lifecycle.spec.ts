// A user who forgets graph.close() (or never unsubscribes a step) gets a process that still exits
// once nothing is in flight: idle threads and idle child processes do not hold the event loop.
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const script = fileURLToPath(new URL('./fixtures/forgetsToClose.mjs', import.meta.url));
/** Generous: start-up of a few child processes on a loaded CI machine, not a performance goal. */
const BOUND_MS = 25_000;

function runScript(mechanisms: string[]): Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [script, ...mechanisms], { timeout: BOUND_MS, killSignal: 'SIGKILL' }, (error, stdout, stderr) => {
      const e = error as (Error & { code?: number; signal?: NodeJS.Signals }) | null;
      resolve({ code: e ? (typeof e.code === 'number' ? e.code : null) : 0, signal: e?.signal ?? null, stdout, stderr });
    });
  });
}

describe('a script that never closes its graph', () => {
  it.each([[['process_pool', 'dedicated_process']], [['thread_pool', 'naive', 'asyncio']]])(
    'exits by itself after its calls (%j)',
    async (mechanisms) => {
      const { code, signal, stdout, stderr } = await runScript(mechanisms);
      expect({ code, signal, stderr }).toEqual({ code: 0, signal: null, stderr: '' });
      for (const m of mechanisms) expect(stdout).toContain(`${m} {"y":42}`);
      expect(stdout).toContain('shared {"y":3}');
      expect(stdout).toContain('done; not closing');
    },
    BOUND_MS + 5_000,
  );
});
