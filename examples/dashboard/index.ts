// serve({ dashboard: true }): a live page of the graph at /dashboard. Serves a two-step graph with
// an API key on loopback, sends some traffic (a few calls fail), signs in as a browser would
// (the form's POST, then the session cookie) and reads one message of the page's event stream.
// Set KEEP=1 to keep it running and open the printed URL in a browser.
import { Model, createGraph, router, serve } from 'rxserve';

let failures = 0;
const check = (label: string, ok: boolean) => {
  console.log(`${ok ? '✓' : '✗'} ${label}`);
  if (!ok) failures++;
};

class Price extends Model<{ amount: number }, { price: number }> {
  override async predict({ amount }: { amount: number }) {
    await new Promise((resolve) => setTimeout(resolve, 5));
    return { price: amount * 1.2 };
  }
}
class Fraud extends Model<{ amount: number }, { fraud: boolean }> {
  override predict({ amount }: { amount: number }) {
    if (amount < 0) throw new RangeError(`negative amount ${amount}`);
    return { fraud: amount > 900 };
  }
}

const graph = createGraph({ name: 'shop' });
const pricing = graph.modelRunner({
  name: 'pricing',
  models: [{ endpointName: 'price', modelClass: Price, executionMechanism: 'asyncio' }],
});
const risk = graph.modelRunner({ name: 'risk', models: [{ endpointName: 'fraud', modelClass: Fraud, executionMechanism: 'naive' }] });
const key = 'example-key';
const server = await serve(router({ key: (e) => e.path?.slice(1), routes: { price: pricing, fraud: risk } }), {
  graph,
  port: 0,
  dashboard: true,
  apiKeys: [key],
});
console.log(`dashboard: ${server.url}/dashboard (API key: ${key})`);

const post = (path: string, body: unknown) =>
  fetch(`${server.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
    body: JSON.stringify(body),
  });
for (let i = 0; i < 20; i++) await Promise.all([post('/price', { amount: i * 50 }), post('/fraud', { amount: i % 5 === 0 ? -1 : i * 60 })]);

// A browser without the key gets the sign-in form (401); the form's POST gives it a session cookie.
const denied = await fetch(`${server.url}/dashboard`);
check('without a key: 401 and the sign-in form', denied.status === 401 && (await denied.text()).includes('name="key"'));
const login = await fetch(`${server.url}/dashboard/login`, { method: 'POST', body: new URLSearchParams({ key }), redirect: 'manual' });
const cookie = login.headers.get('set-cookie')?.split(';')[0] ?? '';
check(
  'signing in answers 303 with an HttpOnly session cookie',
  login.status === 303 && /HttpOnly/.test(login.headers.get('set-cookie') ?? ''),
);
const page = await fetch(`${server.url}/dashboard`, { headers: { cookie } });
check('with the cookie the page loads', page.status === 200 && (await page.text()).includes('dashboard.js'));
const chart = await fetch(`${server.url}/dashboard/assets/uPlot.esm.js`, { headers: { cookie } });
check('the chart library is served by the package (no CDN)', chart.status === 200 && (await chart.text()).includes('uPlot'));

// The event stream: one JSON message about once a second.
const events = await fetch(`${server.url}/dashboard/events`, { headers: { cookie } });
const reader = events.body!.getReader();
let text = '';
while (!text.includes('\n\n')) text += new TextDecoder().decode((await reader.read()).value);
await reader.cancel();
// The stream is the page's own format (docs/dashboard.md), not a typed API: name what this reads.
interface Figures {
  readonly endpoint: string;
  readonly executionMechanism?: string;
  readonly requests: number;
  readonly errors: number;
  readonly lastError?: string;
}
const { snapshot } = JSON.parse(text.slice(text.indexOf('data: ') + 6, text.indexOf('\n\n', text.indexOf('data: ')))) as {
  snapshot: { endpoints: Figures[] };
};
for (const e of snapshot.endpoints) {
  console.log(
    `  ${e.endpoint.padEnd(6)} ${e.executionMechanism?.padEnd(8)} requests ${e.requests}, errors ${e.errors}${e.lastError ? ` (last: ${e.lastError})` : ''}`,
  );
}
const byName = Object.fromEntries(snapshot.endpoints.map((e) => [e.endpoint, e]));
check(
  'the stream counts every call: 20 prices, 20 fraud checks of which 4 failed',
  byName.price?.requests === 20 && byName.fraud?.requests === 20 && byName.fraud?.errors === 4,
);

if (process.env.KEEP === '1') {
  setInterval(() => void post('/price', { amount: Math.random() * 100 }), 200);
} else {
  await server.close();
  if (failures > 0) process.exit(1);
}
