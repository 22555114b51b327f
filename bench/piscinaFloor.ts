// What piscina costs a batch over a worker's raw postMessage (not part of `bench/run.ts`; issue 26
// goal 3): the same exchange — a Float32Array of 32 rows of 256 transferred to one thread, one of
// the same size transferred back, two batches out at a time — through raw `postMessage` and
// through piscina as rxserve's thread_pool configures it (`atomics: 'sync'`, no timing records,
// two tasks a thread). No compute: what is left is each side's per-batch cost, main thread and
// worker thread apart (CPU ticks of /proc/self/task, in alternating rounds).
//   R=5 N=100000 [ATOMICS=sync|async|disabled] npx tsx bench/piscinaFloor.ts
import { once } from 'node:events';
import { Worker } from 'node:worker_threads';
import { Piscina } from 'piscina';
import { threadTicks as ticks } from './threadTicks.js';

const ROWS = 32;
const WIDTH = 256;
const IN_FLIGHT = 2;
const total = Number(process.env.N ?? 100_000);
const rounds = Number(process.env.R ?? 5);
const fixture = new URL('./fixtures/echoBatchWorker.mjs', import.meta.url);

interface Split {
  readonly perSecond: number;
  /** µs of CPU a batch: the main thread, the threads started for the run (the worker), the rest (V8's helpers). */
  readonly main: number;
  readonly worker: number;
  readonly helpers: number;
}

/** Runs `total` batches; `before` is the threads alive before any worker was started. */
async function measure(before: Set<string>, run: () => Promise<void>): Promise<Split> {
  let last = new Map<string, number>();
  const sampler = setInterval(() => (last = ticks()), 10);
  const start = ticks();
  const t0 = performance.now();
  await run();
  const seconds = (performance.now() - t0) / 1000;
  clearInterval(sampler);
  last = ticks();
  let main = 0;
  let worker = 0;
  let helpers = 0;
  for (const [tid, t] of last) {
    const us = ((t - (start.get(tid) ?? 0)) * 10_000) / total;
    if (tid === String(process.pid)) main += us;
    else if (before.has(tid)) helpers += us;
    else worker += us;
  }
  return { perSecond: total / seconds, main, worker, helpers };
}

async function raw(): Promise<Split> {
  const worker = new Worker(fixture, { workerData: { raw: true } });
  await once(worker, 'online');
  const exchange = (n: number) =>
    new Promise<void>((resolve) => {
      let sent = 0;
      let done = 0;
      const send = () => {
        const data = new Float32Array(ROWS * WIDTH);
        worker.postMessage({ id: sent++, data }, [data.buffer]);
      };
      worker.on('message', () => {
        if (++done === n) resolve();
        else if (sent < n) send();
      });
      for (let i = 0; i < IN_FLIGHT; i++) send();
    });
  await exchange(20_000); // warm-up
  worker.removeAllListeners('message');
  try {
    return await measure(before, () => exchange(total));
  } finally {
    await worker.terminate();
  }
}

async function pooled(): Promise<Split> {
  const pool = new Piscina({
    filename: fixture.href,
    minThreads: 1,
    maxThreads: 1,
    atomics: (process.env.ATOMICS ?? 'sync') as 'sync',
    recordTiming: false,
    concurrentTasksPerWorker: IN_FLIGHT,
  });
  const exchange = async (n: number) => {
    let sent = 0;
    const lane = async () => {
      while (sent < n) {
        sent++;
        const data = new Float32Array(ROWS * WIDTH);
        await pool.run({ data }, { transferList: [data.buffer] });
      }
    };
    await Promise.all(Array.from({ length: IN_FLIGHT }, lane));
  };
  await exchange(20_000);
  try {
    return await measure(before, () => exchange(total));
  } finally {
    await pool.destroy();
  }
}

/** The threads alive before any worker: V8's helpers (and this one). */
const before = new Set(ticks().keys());
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const runs: Record<'raw' | 'piscina', Split[]> = { raw: [], piscina: [] };
for (let r = 0; r < rounds; r++) {
  for (const side of r % 2 === 0 ? (['raw', 'piscina'] as const) : (['piscina', 'raw'] as const)) {
    runs[side].push(side === 'raw' ? await raw() : await pooled());
  }
}
const line = (side: 'raw' | 'piscina') => {
  const s = runs[side];
  const m = (f: (x: Split) => number) => median(s.map(f));
  return `${side.padEnd(8)} ${m((x) => x.perSecond).toFixed(0)} batches/s; CPU a batch: main ${m((x) => x.main).toFixed(1)} µs, worker ${m((x) => x.worker).toFixed(1)} µs, V8 helpers ${m((x) => x.helpers).toFixed(1)} µs`;
};
console.log(`${total} batches of ${ROWS}×${WIDTH} FP32 each way, ${IN_FLIGHT} in flight, ${rounds} alternating rounds (medians):`);
console.log(line('raw'));
console.log(line('piscina'));
