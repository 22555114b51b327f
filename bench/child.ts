// A benchmark fixture in a process of its own (so the load generator and the server each get a
// core): started with fork(), it sends `{ url }` (or `{ baseURL }`) once listening and answers a
// 'cpu' message with its process.cpuUsage().
import { fork } from 'node:child_process';

export interface Child {
  readonly url: string;
  /** The child's CPU time so far (user + system), µs. */
  cpu(): Promise<number>;
  stop(): Promise<void>;
}

/** Starts `bench/fixtures/<fixture>` with `args`; resolves once it listens. */
export async function startChild(fixture: string, args: readonly string[], execArgv: readonly string[] = []): Promise<Child> {
  const child = fork(new URL(`./fixtures/${fixture}`, import.meta.url), [...args], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    execArgv: [...execArgv],
  });
  const url = await new Promise<string>((resolve, reject) => {
    child.once('message', (m: { url?: string; baseURL?: string }) => resolve((m.url ?? m.baseURL)!));
    child.once('exit', (code) => reject(new Error(`bench fixture ${fixture} ${args.join(' ')} exited (${code}) before it listened`)));
  });
  return {
    url,
    cpu: () =>
      new Promise<number>((resolve) => {
        child.once('message', (m) => {
          const { user, system } = (m as { cpu: NodeJS.CpuUsage }).cpu;
          resolve(user + system);
        });
        child.send('cpu');
      }),
    stop: () =>
      new Promise<void>((resolve) => {
        child.once('exit', () => resolve());
        child.disconnect();
      }),
  };
}
