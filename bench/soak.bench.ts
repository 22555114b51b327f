// Soak: millions of events through one long-lived three-model step (one thread_pool model, two
// asyncio), heap measured after a forced GC at checkpoints. Not a test: a leak shows as the heap
// growing from the first checkpoint (100,000 events) to the end. Runs in a child with --expose-gc.
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Model, modelRunner, type ServingEvent } from 'rxserve';
import { drive } from './driver.js';

class Score extends Model<{ x: number }, { y: number }> {
  override async predict(b: { x: number }) {
    return { y: b.x * 2 + 1 };
  }
}

export interface SoakCheckpoint {
  readonly events: number;
  readonly heapMb: number;
  readonly rssMb: number;
  readonly seconds: number;
}

export interface SoakResult {
  readonly events: number;
  readonly perSecond: number;
  readonly checkpoints: readonly SoakCheckpoint[];
}

async function soakChild(total: number): Promise<SoakResult> {
  const gc = global.gc;
  if (!gc) throw new Error('the soak child needs --expose-gc');
  const step = modelRunner({
    models: [
      { endpointName: 'echo', modelClass: 'Model', executionMechanism: 'thread_pool' },
      { endpointName: 'b', modelClass: Score, executionMechanism: 'asyncio' },
      { endpointName: 'c', modelClass: Score, executionMechanism: 'asyncio' },
    ],
    maxInFlight: 256,
  });
  const marks = new Set([100_000, ...Array.from({ length: Math.floor(total / 1_000_000) }, (_, i) => (i + 1) * 1_000_000), total]);
  const checkpoints: SoakCheckpoint[] = [];
  const t0 = performance.now();
  const figures = await drive(step, total, 256, (i) => ({ x: i, text: `event ${i}` }), {
    isRejected: (e: ServingEvent) => e.error !== undefined,
    onReceived(received) {
      if (!marks.has(received)) return;
      gc();
      const m = process.memoryUsage();
      checkpoints.push({
        events: received,
        heapMb: m.heapUsed / 2 ** 20,
        rssMb: m.rss / 2 ** 20,
        seconds: (performance.now() - t0) / 1000,
      });
    },
  });
  if (figures.rejected > 0) throw new Error(`soak: ${figures.rejected} events failed`);
  return { events: total, perSecond: figures.perSecond, checkpoints };
}

export function runSoak(quick: boolean): Promise<SoakResult> {
  const total = quick ? 300_000 : 5_000_000;
  const child = fork(fileURLToPath(import.meta.url), ['--soak-child', String(total)], {
    execArgv: [...process.execArgv, '--expose-gc'],
  });
  return new Promise((resolve, reject) => {
    child.once('message', (m: SoakResult) => resolve(m));
    child.once('exit', (code) => code !== 0 && reject(new Error(`soak child exited ${code}`)));
  });
}

export function soakMarkdown(r: SoakResult): string {
  const first = r.checkpoints[0];
  return [
    `${r.events.toLocaleString('en-US')} events through one subscription, ${Math.round(r.perSecond).toLocaleString('en-US')} events/s.`,
    '',
    '| events so far | seconds | heap after GC MB | vs 100,000 events | RSS MB |',
    '|---|---|---|---|---|',
    ...r.checkpoints.map(
      (c) =>
        `| ${c.events.toLocaleString('en-US')} | ${c.seconds.toFixed(0)} | ${c.heapMb.toFixed(1)} | ${((100 * (c.heapMb - first.heapMb)) / first.heapMb).toFixed(1)}% | ${c.rssMb.toFixed(0)} |`,
    ),
  ].join('\n');
}

if (process.argv[2] === '--soak-child') {
  const result = await soakChild(Number(process.argv[3]));
  process.send!(result, () => process.exit(0));
}
