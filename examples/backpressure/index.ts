// Backpressure and overload: a source far faster than its model. The step holds at most
// maxInFlight + maxQueue events; every extra one leaves at once as an errored event with
// QueueFullError (nothing buffers without bound, nothing is dropped silently), and onError turns
// rejections into an answer the rest of the pipeline understands. A second run shows a worker
// thread that crashes mid-call: only its calls fail, the pool replaces it, later events succeed.
import { Subject, from, lastValueFrom, toArray } from 'rxjs';
import { Model, QueueFullError, modelRunner, onError, registerModel, toEvent, type ServingEvent } from 'rxserve';

let failures = 0;
const check = (label: string, ok: boolean) => {
  console.log(`${ok ? '✓' : '✗'} ${label}`);
  if (!ok) failures++;
};

class Slow extends Model<{ n: number }, { n: number; scored: true }> {
  override async predict(body: { n: number }) {
    await new Promise((resolve) => setTimeout(resolve, 20));
    return { n: body.n, scored: true as const };
  }
}

// 1. Overload: 1,000 events pushed synchronously at a step that takes 8 at once and queues 32.
const source = new Subject<ServingEvent>();
const out = lastValueFrom(
  source.pipe(
    modelRunner({
      name: 'scorer',
      models: [{ endpointName: 'slow', modelClass: Slow, executionMechanism: 'asyncio' }],
      maxInFlight: 8,
      maxQueue: 32,
    }),
    // A rejected event is still an event: answer it (here: "try later"), or route it elsewhere.
    onError((event) => (event.error instanceof QueueFullError ? { n: (event.body as { n: number }).n, retryLater: true } : event.body)),
    toArray(),
  ),
);
const started = performance.now();
for (let n = 0; n < 1_000; n++) source.next(toEvent({ n }, { id: String(n) }));
source.complete();
const events = await out;
const scored = events.filter((e) => (e.body as { scored?: boolean }).scored).length;
const later = events.filter((e) => (e.body as { retryLater?: boolean }).retryLater).length;
console.log(
  `1,000 events in ${(performance.now() - started).toFixed(0)} ms: ${scored} scored, ${later} rejected with QueueFullError (answered "retry later")`,
);
const ids = events.map((e) => Number(e.id));
const accepted = events.filter((e) => (e.body as { scored?: boolean }).scored).map((e) => Number(e.id));
check('every event came out exactly once', events.length === 1_000 && new Set(ids).size === 1_000);
// Rejections leave at once, ahead of the order; the accepted events keep theirs (ordered: true).
check(
  'the accepted events came out in arrival order',
  accepted.every((id, i) => i === 0 || id > accepted[i - 1]),
);
check('the step took maxInFlight + maxQueue = 40 and rejected the rest at once', scored === 40 && later === 960);

// 2. A worker thread that dies mid-call: its call fails with WorkerCrashedError, the others succeed.
// Workers load models by module reference (models.mjs is plain JS: threads load no .ts).
registerModel('Crashy', { module: new URL('./models.mjs', import.meta.url).href, export: 'Crashy' });
const bodies = [{ n: 1 }, { n: 2, crash: true }, { n: 3 }, { n: 4 }];
const results = await lastValueFrom(
  from(bodies.map((b, i) => toEvent(b, { id: String(i) }))).pipe(
    modelRunner({
      models: [{ endpointName: 'crashy', modelClass: 'Crashy', executionMechanism: 'thread_pool' }],
      raiseException: false, // a failed model call becomes { error: 'Class: message' } in the body
      maxInFlight: 1,
    }),
    toArray(),
  ),
);
for (const e of results) console.log(`  event ${e.id}:`, JSON.stringify(e.body));
const failed = results.filter((e) => typeof (e.body as { error?: unknown }).error === 'string');
check(
  'only the crashing call failed, with WorkerCrashedError',
  failed.length === 1 && /^WorkerCrashedError/.test((results[1].body as { error: string }).error),
);
check(
  'events after the crash succeeded on a replacement thread',
  (results[2].body as { n?: number }).n === 3 && (results[3].body as { n?: number }).n === 4,
);

if (failures > 0) {
  console.error(`${failures} check(s) failed`);
  process.exit(1);
}
