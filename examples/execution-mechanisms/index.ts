// The same model on every execution mechanism, with timings; then two mechanisms in one step,
// and a worker crash that fails only its own event.
import { from, lastValueFrom, Subject, toArray } from 'rxjs';
import { asEvents, modelRunner, registerModel, toEvent, type ExecutionMechanism, type ServingEvent } from 'rxserve';

// Workers load the class by module reference, so register it as one (not as a class).
registerModel('Scorer', { module: new URL('./models.mjs', import.meta.url).href, export: 'Scorer' });

const texts = Array.from({ length: 24 }, (_, i) => ({ text: `request number ${i}` }));
const mechanisms: ExecutionMechanism[] = ['naive', 'asyncio', 'thread_pool', 'process_pool', 'dedicated_process'];

let reference: unknown;
let failures = 0;
for (const executionMechanism of mechanisms) {
  const started = performance.now();
  const out: ServingEvent[] = await lastValueFrom(
    from(texts).pipe(
      asEvents(),
      modelRunner({
        models: [{ endpointName: 'scorer', modelClass: 'Scorer', executionMechanism, params: { work: 5, seed: 1 } }],
        pool: { poolFactor: 2 }, // MLRun sizing: min(models × poolFactor, maxThreads / maxProcesses)
      }),
      toArray(),
    ),
  );
  const ms = performance.now() - started;
  const scores = out.map((e) => (e.body as { score: number }).score);
  const pids = new Set(out.map((e) => (e.body as { pid: number }).pid));
  reference ??= scores;
  const same = JSON.stringify(scores) === JSON.stringify(reference);
  if (!same) failures++;
  console.log(
    `${executionMechanism.padEnd(17)} ${String(out.length).padStart(2)} events in ${ms.toFixed(0).padStart(5)} ms ` +
      `(start-up included) · ${pids.size} process(es) · same scores as naive: ${same}`,
  );
}

// Two models on different mechanisms in one step: results keyed by endpoint name.
const [mixed] = await lastValueFrom(
  from([{ text: 'hello' }]).pipe(
    asEvents(),
    modelRunner({
      models: [
        { endpointName: 'threads', modelClass: 'Scorer', executionMechanism: 'thread_pool', params: { seed: 1 } },
        { endpointName: 'process', modelClass: 'Scorer', executionMechanism: 'dedicated_process', params: { seed: 1 } },
      ],
    }),
    toArray(),
  ),
);
const body = mixed.body as Record<string, { score: number; pid: number }>;
console.log(
  `\nmixed step: threads → ${body.threads.score} (pid ${body.threads.pid}), dedicated process → ${body.process.score} (pid ${body.process.pid})`,
);
if (body.threads.score !== body.process.score || body.process.pid === process.pid) failures++;

// A process that dies fails only the event it was running; the next events are served by its replacement.
const source = new Subject<ServingEvent>();
const answers = new Map<string, (e: ServingEvent) => void>();
source
  .pipe(
    modelRunner({
      models: [
        {
          endpointName: 'fragile',
          modelClass: { module: new URL('./models.mjs', import.meta.url).href, export: 'Fragile' },
          executionMechanism: 'dedicated_process',
        },
      ],
      raiseException: false,
    }),
  )
  .subscribe((e) => answers.get(e.id)?.(e));
const ask = (text: string) =>
  new Promise<ServingEvent>((resolve) => {
    answers.set(text, resolve);
    source.next(toEvent({ text }, { id: text }));
  });
console.log('\ncrash isolation (dedicated_process):');
const crash: ServingEvent[] = [];
for (const text of ['fine', 'crash', 'after the crash']) {
  const e = await ask(text);
  crash.push(e);
  console.log(`  ${text.padEnd(16)} → ${JSON.stringify(e.body)}`);
}
source.complete();
if (!JSON.stringify(crash[1].body).includes('WorkerCrashedError') || JSON.stringify(crash[2].body).includes('error')) failures++;

if (failures > 0) {
  console.error(`\n${failures} check(s) failed`);
  process.exit(1);
}
