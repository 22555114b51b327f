// Per-thread CPU of the onnx bench's rows (d), (e), (c), (f) and (f′) (W=g) over their measured window (not
// part of `bench/run.ts`): main thread, V8's helper threads (those alive before the row started:
// concurrent GC and the optimizing compiler) and the threads the row started (its pool worker).
// `/proc/self/task/*/stat` ticks (10 ms), so give it enough requests. Issue 26 goal 3.
//   W=d,f R=3 N=40000 npx tsx bench/onnxThreads.ts     (ONNX_WARM_UP, PERF=<prefix> [PERF_G=1], MARK=1)
// PERF records `perf record -e cpu-clock` of the window per row (run node with --perf-basic-prof
// for JS names); MARK prints MARK where the window starts (to cut --trace-opt/--trace-gc output).
import { mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { served, handBatched } from './onnx.bench.js';
import { threadTicks } from './threadTicks.js';
// @ts-expect-error mjs
import { writeMlpModel } from '../examples/onnx/onnxBuilder.mjs';

type Snap = Map<string, number>;
const W = 256;
const modelPath = writeMlpModel(join(mkdtempSync(join(tmpdir(), 'p-')), 'mlp.onnx'), [W, W, W, W]);
const total = Number(process.env.N ?? 40000);
const rounds = Number(process.env.R ?? 2);
const which = (process.env.W ?? 'd,f').split(',');
const initial = new Set(threadTicks().keys());
for (let r = 0; r < rounds; r++) {
  for (const w of which) {
    let start: Snap = new Map();
    let perf: import('node:child_process').ChildProcess | undefined;
    const mark = () => {
      start = threadTicks();
      if (process.env.MARK) console.log('MARK');
      if (process.env.PERF)
        perf = spawn(
          'perf',
          [
            'record',
            '-e',
            'cpu-clock',
            '-F',
            '4000',
            ...(process.env.PERF_G ? ['-g'] : []),
            '-p',
            String(process.pid),
            '-o',
            `${process.env.PERF}-${w}-${r}.data`,
          ],
          { stdio: 'ignore' },
        );
    };
    let last: Snap = new Map();
    const sampler = setInterval(() => {
      for (const [k, v] of threadTicks()) last.set(k, v);
    }, 10);
    let fig: { perSecond: number; cpuUs: number };
    if (w === 'd') fig = (await served(modelPath, total, { maxBatchSize: 32, maxWaitMs: 2 }, mark)) as any;
    else if (w === 'e') fig = (await served(undefined, total, { maxBatchSize: 32, maxWaitMs: 2 }, mark)) as any;
    else if (w === 'c') fig = (await served(modelPath, total, undefined, mark)) as any;
    else if (w === 'g')
      fig = await handBatched(modelPath, total, mark, undefined, true); // (f′): (f) through piscina
    else fig = await handBatched(modelPath, total, mark);
    clearInterval(sampler);
    if (perf) {
      perf.kill('SIGINT');
      await new Promise((res) => perf!.once('exit', res));
    }
    let main = 0,
      helpers = 0;
    const fresh: number[] = [];
    for (const [tid, t0] of start) {
      const d = (((last.get(tid) ?? t0) - t0) * 10000) / total;
      if (tid === String(process.pid)) main += d;
      else if (initial.has(tid)) helpers += d;
      else fresh.push(d);
    }
    fresh.sort((a, b) => b - a);
    console.log(
      w,
      'rps',
      fig.perSecond.toFixed(0),
      'cpu/req',
      fig.cpuUs.toFixed(1),
      `main ${main.toFixed(1)} v8helpers ${helpers.toFixed(1)} new-threads ${fresh
        .filter((x) => x > 0.1)
        .map((x) => x.toFixed(1))
        .join('/')}`,
    );
  }
}
