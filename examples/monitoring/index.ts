// Monitoring while events flow: endpoint records on graph.monitoring$, the endpoint registry,
// and Prometheus metrics served on a loopback /metrics endpoint, scraped like Prometheus would.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { interval, lastValueFrom, map, take, toArray } from 'rxjs';
import { Model, asEvents, createGraph, modelArtifact, prometheusExporter, type EndpointRecord } from 'rxserve';

class Fraud extends Model<{ amount: number }, { fraud: boolean; score: number }> {
  override async predict({ amount }: { amount: number }) {
    await new Promise((r) => setTimeout(r, 2 + (amount % 5)));
    if (amount % 17 === 0) throw new RangeError(`cannot score amount ${amount}`);
    return { fraud: amount > 900, score: amount / 1000 };
  }
}

const graph = createGraph({ name: 'payments', monitoring: { samplingPercentage: 50 } });
const exporter = await prometheusExporter(graph);
const server = createServer(async (req, res) => {
  if (req.url !== '/metrics') return void res.writeHead(404).end();
  res.setHeader('content-type', exporter.contentType);
  res.end(await exporter.metrics());
});
await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
const metricsUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/metrics`;

const step = graph.modelRunner({
  name: 'scoring',
  models: [
    {
      endpointName: 'fraud',
      modelClass: Fraud,
      executionMechanism: 'asyncio',
      inputPath: 'payment',
      inputs: ['amount'],
      labels: { team: 'risk' },
    },
    {
      endpointName: 'explainer',
      modelClass: 'LLModel',
      executionMechanism: 'asyncio',
      modelArtifact: modelArtifact({ key: 'explainer', modelUrl: 'mock://' }),
      labels: { team: 'risk', kind: 'llm' },
    },
  ],
  raiseException: false,
});
await graph.ready();

const records: EndpointRecord[] = [];
graph.monitoring$.subscribe((r) => records.push(r));

// 60 payments over ~0.6 s; scrape /metrics halfway, while events are in flight.
const flowing = lastValueFrom(
  interval(10).pipe(
    take(60),
    map((i) => ({ payment: { amount: (i * 97) % 1000 }, messages: [{ role: 'user', content: `explain payment ${i}` }] })),
    asEvents(),
    step,
    toArray(),
  ),
);
await new Promise((r) => setTimeout(r, 300));
const midway = await (await fetch(metricsUrl)).text();
const events = await flowing;
const final = await (await fetch(metricsUrl)).text();

const pick = (text: string, pattern: RegExp) => text.split('\n').filter((l) => pattern.test(l));
console.log(`${events.length} events served; ${records.length} endpoint records kept (50% sampling, errors always kept)`);
console.log(`records with errors: ${records.filter((r) => r.error).length}; a sample record:`);
console.log(
  JSON.stringify(
    records.find((r) => r.endpointName === 'fraud' && !r.error),
    null,
    2,
  ),
);
console.log('\nscraped midway:');
for (const line of pick(midway, /^rxserve_(model_requests_total|lane_in_flight)/)) console.log(`  ${line}`);
console.log('\nscraped at the end:');
for (const line of pick(final, /^rxserve_(model_requests_total|llm_tokens_total|model_latency_seconds_count)/)) console.log(`  ${line}`);
console.log('\nendpoint registry:');
for (const e of graph.endpointRegistry.entries())
  console.log(`  ${e.endpointName}: ${e.counters.requests} requests, ${e.counters.errors} errors, labels ${JSON.stringify(e.labels)}`);

await graph.close();
server.close();
const successes = /rxserve_model_requests_total\{endpoint="fraud",step="scoring",outcome="success"\} (\d+)/.exec(final);
if (events.length !== 60 || !successes || Number(successes[1]) + Number(/outcome="error"\} (\d+)/.exec(final)?.[1] ?? 0) !== 60) {
  console.error('unexpected metrics');
  process.exit(1);
}
