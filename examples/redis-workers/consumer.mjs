// One worker of the group: reads requests, scores them, writes answers. Any number of these can run,
// on any number of machines, with the same stream and group. argv: redisUrl consumerName.
// Heartbeat messages are not answered: requests.filter acknowledges them (a plain RxJS filter would
// keep their credit, and the worker would stop reading after maxInFlight of them).
// Prints 'read <n>' as it takes messages; on SIGTERM closes gracefully and prints its stats.
import { tap } from 'rxjs';
import { Model, modelRunner } from 'rxserve';
import { redisStream } from 'rxserve/streams';

const [url, consumer] = process.argv.slice(2);

class Scorer extends Model {
  async predict(body) {
    await new Promise((r) => setTimeout(r, 30)); // an I/O-bound model
    return { text: body.text, score: body.text.length % 7, by: consumer };
  }
}

const requests = redisStream({
  redis: url,
  stream: 'requests',
  group: 'scorers',
  consumer,
  maxInFlight: 16,
  claimIdleMs: 1_000, // longer than the slowest request; a dead worker's messages wait this long
});
let read = 0;
requests.events$
  .pipe(
    tap(() => console.log(`read ${++read}`)),
    requests.filter((event) => event.body.kind !== 'heartbeat'),
    modelRunner({ models: [{ endpointName: 'scorer', modelClass: Scorer, executionMechanism: 'asyncio' }], maxInFlight: 16 }),
    requests.commit({ stream: 'scores' }),
  )
  .subscribe({ error: (e) => (console.error(e), process.exit(1)) });

process.once('SIGTERM', async () => {
  await requests.close(); // stop reading, commit what is in flight, quit
  console.log(`stats ${JSON.stringify(requests.stats())}`);
  process.exit(0);
});
