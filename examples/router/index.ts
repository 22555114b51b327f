// router: events sent down one of several pipelines by a key (MLRun's RouterStep), on groupBy.
import { from, lastValueFrom, toArray } from 'rxjs';
import { Model, modelRunner, router, toEvent } from 'rxserve';

class Echo extends Model {
  override predict(body: unknown) {
    return { from: this.name, body };
  }
}
const runnerFor = (name: string) => modelRunner({ name, models: [{ endpointName: name, modelClass: Echo, executionMechanism: 'naive' }] });
// The key is the model name in the v2 protocol path: /v2/models/<name>/infer
const key = (e: { path?: string }) => e.path?.split('/')[3];
const events = ['/v2/models/m1/infer', '/v2/models/m2/infer', '/v2/models/m9/infer', undefined].map((path, i) =>
  toEvent({ n: i }, { id: `e${i}`, ...(path ? { path } : {}) }),
);

let failures = 0;
console.log('routes m1, m2 (no default):');
const strict = await lastValueFrom(
  from(events).pipe(router({ name: 'models', key, routes: { m1: runnerFor('m1'), m2: runnerFor('m2') } }), toArray()),
);
for (const e of strict)
  console.log(`  ${e.id} ${String(e.path).padEnd(20)} → ${e.error ? `${e.error.name}: ${e.error.message}` : JSON.stringify(e.body)}`);
if (strict.filter((e) => e.error?.name === 'RouteNotFoundError').length !== 2) failures++;

console.log('\nwith defaultRoute m1:');
const lenient = await lastValueFrom(
  from(events).pipe(router({ key, routes: { m1: runnerFor('m1'), m2: runnerFor('m2') }, defaultRoute: 'm1', idleMs: 5_000 }), toArray()),
);
for (const e of lenient) console.log(`  ${e.id} ${String(e.path).padEnd(20)} → ${JSON.stringify(e.body)}`);
if (lenient.some((e) => e.error)) failures++;

if (failures > 0) process.exit(1);
