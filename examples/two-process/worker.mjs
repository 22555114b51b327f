// The worker process of the two-process graph: the graph's second half. It consumes the stream the
// front's queueStep writes (redisStream in a consumer group: start as many as you like, on any
// machine), runs the model, and commits each answer to the 'answers' stream exactly once.
// argv: redisUrl. Prints 'ready' once subscribed; on SIGTERM closes gracefully and exits.
import { Model, modelRunner, step } from 'rxserve';
import { redisStream } from 'rxserve/streams';

const [url] = process.argv.slice(2);

class Scorer extends Model {
  async predict(body) {
    await new Promise((r) => setTimeout(r, 5)); // an I/O-bound model
    return { score: body.text.length * (body.profile?.weight ?? 1) };
  }
}

const requests = redisStream({ redis: url, stream: 'requests', group: 'workers', blockMs: 100 });
requests.events$
  .pipe(
    modelRunner({ models: [{ endpointName: 'scorer', modelClass: Scorer, executionMechanism: 'asyncio' }] }),
    // What the front sent comes along: its request id (metadata.sourceId), path and headers.
    step((answer, { event }) => ({
      ...answer,
      requestId: event.metadata.sourceId,
      path: event.path,
      tenant: event.headers?.['x-tenant'],
      worker: process.pid,
    })),
    requests.commit({ stream: 'answers' }),
  )
  .subscribe({ error: (e) => (console.error(e), process.exit(1)) });
console.log('ready');

process.once('SIGTERM', async () => {
  await requests.close(); // stop reading, commit what is in flight, quit
  process.exit(0);
});
