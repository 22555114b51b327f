// The dashboard's routes without a browser (these run everywhere): options checked, keys enforced,
// the form's parser confined to the sign-in route, the event stream ended by close().
import Fastify from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError, prometheusExporter, rxservePlugin, serve, step, type Server } from '../src/index.js';
import { LoginLimiter } from '../src/serve/dashboard/plugin.js';
import { dashboardGraph } from './support/dashboardGraph.js';

const servers: Server[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

/** The first `data:` message of an event stream, parsed. */
async function firstMessage(
  response: Response,
): Promise<{ snapshot: { endpoints: { endpoint: string; requests: number }[] }; shape: { steps: unknown[] } }> {
  const reader = response.body!.getReader();
  let text = '';
  while (!text.includes('\n\n', text.indexOf('data: '))) text += new TextDecoder().decode((await reader.read()).value);
  await reader.cancel();
  const start = text.indexOf('data: ') + 6;
  return JSON.parse(text.slice(start, text.indexOf('\n\n', start)));
}

describe('dashboard routes', () => {
  it('bad options: not a boolean, or without a graph, is a ConfigError naming the option', async () => {
    const { graph, pipeline } = dashboardGraph();
    await expect(serve(pipeline, { graph, dashboard: 'yes' as never })).rejects.toThrow(/serve\.dashboard.*boolean/s);
    const error = await serve(
      step((b) => b),
      { port: 0, dashboard: true },
    ).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as Error).message).toMatch(/serve\.dashboard: expected a graph option too .*got dashboard: true without graph/);
    const app = Fastify();
    await expect(app.register(rxservePlugin, { pipeline: step((b) => b), dashboard: true }).ready()).rejects.toThrow(
      /rxservePlugin\.dashboard/,
    );
    await app.close();
    await graph.close();
  });

  it('with apiKeys: the header or the sign-in cookie opens the dashboard; the cookie opens nothing else', async () => {
    const { graph, pipeline } = dashboardGraph();
    const server = await serve(pipeline, { graph, port: 0, dashboard: true, apiKeys: ['k1', 'k2'] });
    servers.push(server);
    const events = await fetch(`${server.url}/dashboard/events`);
    expect(events.status).toBe(401);
    expect(events.headers.get('www-authenticate')).toBe('Bearer realm="rxserve"');
    expect((await fetch(`${server.url}/dashboard/assets/dashboard.js`)).status).toBe(401);
    const withHeader = await fetch(`${server.url}/dashboard/events`, { headers: { authorization: 'Bearer k2' } });
    expect(withHeader.status).toBe(200);
    expect(withHeader.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const message = await firstMessage(withHeader);
    expect(message.snapshot.endpoints.map((e) => e.endpoint).sort()).toEqual(['advice', 'check', 'score']);
    expect(message.shape.steps).toHaveLength(3);

    const bad = await fetch(`${server.url}/dashboard/login`, {
      method: 'POST',
      body: new URLSearchParams({ key: 'nope' }),
      redirect: 'manual',
    });
    expect(bad.status).toBe(401);
    expect(await bad.text()).toContain('not one of the server');
    const missing = await fetch(`${server.url}/dashboard/login`, { method: 'POST', body: new URLSearchParams({}), redirect: 'manual' });
    expect(missing.status).toBe(401);
    const login = await fetch(`${server.url}/dashboard/login`, {
      method: 'POST',
      body: new URLSearchParams({ key: 'k1' }),
      redirect: 'manual',
    });
    expect(login.status).toBe(303);
    expect(login.headers.get('location')).toBe('/dashboard');
    const setCookie = login.headers.get('set-cookie') ?? '';
    expect(setCookie).toMatch(/^rxserve_dashboard=[\w-]{43}; Path=\/dashboard; HttpOnly; SameSite=Strict; Max-Age=43200$/);
    expect(setCookie).not.toContain('k1');
    const cookie = setCookie.split(';')[0]!;
    const page = await fetch(`${server.url}/dashboard`, { headers: { cookie } });
    expect(page.status).toBe(200);
    expect(page.headers.get('content-security-policy')).toContain("default-src 'none'");
    expect((await fetch(`${server.url}/dashboard/assets/uPlot.min.css`, { headers: { cookie } })).status).toBe(200);
    const unknown = await fetch(`${server.url}/dashboard/assets/..%2Fplugin.ts`, { headers: { cookie } });
    expect(unknown.status).toBe(404);
    // The cookie is not a key for the other routes.
    expect((await fetch(`${server.url}/v2/models`, { headers: { cookie } })).status).toBe(401);
    const posted = await fetch(`${server.url}/score`, {
      method: 'POST',
      headers: { cookie, 'content-type': 'application/json' },
      body: '{"x":1}',
    });
    expect(posted.status).toBe(401);
    // A forged cookie is refused.
    expect((await fetch(`${server.url}/dashboard`, { headers: { cookie: 'rxserve_dashboard=forged' } })).status).toBe(401);
    // The sign-in form's body type is not accepted by POST /*.
    const form = await fetch(`${server.url}/score`, {
      method: 'POST',
      headers: { authorization: 'Bearer k1' },
      body: new URLSearchParams({ x: '1' }),
    });
    expect(form.status).toBe(415);
  });

  it('sign-in allows 10 failed attempts a minute per client address, then 429 for every attempt (the right key too)', async () => {
    const { graph, pipeline } = dashboardGraph();
    const server = await serve(pipeline, { graph, port: 0, dashboard: true, apiKeys: ['right-key'] });
    servers.push(server);
    const signIn = (key: string) =>
      fetch(`${server.url}/dashboard/login`, { method: 'POST', body: new URLSearchParams({ key }), redirect: 'manual' }).then(
        async (r) => ({
          status: r.status,
          retryAfter: r.headers.get('retry-after'),
          text: await r.text(),
        }),
      );
    const answers = [];
    for (let i = 0; i < 50; i++) answers.push(await signIn(`guess-${i}`));
    expect(answers.filter((a) => a.status === 401)).toHaveLength(10);
    expect(answers.slice(10).every((a) => a.status === 429)).toBe(true);
    const limited = answers[10]!;
    expect(Number(limited.retryAfter)).toBeGreaterThan(50);
    expect(Number(limited.retryAfter)).toBeLessThanOrEqual(60);
    expect(limited.text).toContain('Too many failed sign-ins from your address');
    // The right key cannot get through now either: otherwise the 429 only slows the guessing.
    expect((await signIn('right-key')).status).toBe(429);
    // The API key itself still opens the dashboard: the limit is on the sign-in form only.
    expect((await fetch(`${server.url}/dashboard`, { headers: { authorization: 'Bearer right-key' } })).status).toBe(200);
  });

  it('LoginLimiter: a window per address from its first failure; a success forgets; the addresses tracked are bounded', () => {
    const limiter = new LoginLimiter(3, 1_000, 4);
    for (let i = 0; i < 3; i++) {
      expect(limiter.blockedFor('a', 100)).toBe(0);
      limiter.fail('a', 100 + i);
    }
    expect(limiter.blockedFor('a', 500)).toBe(600);
    expect(limiter.blockedFor('b', 500)).toBe(0); // another address is not affected
    expect(limiter.blockedFor('a', 1_100)).toBe(0); // the window is over
    limiter.fail('c', 0);
    limiter.fail('c', 1);
    limiter.succeed('c');
    limiter.fail('c', 2);
    expect(limiter.blockedFor('c', 3)).toBe(0);
    for (const address of ['d', 'e', 'f', 'g', 'h', 'i']) limiter.fail(address, 10);
    expect(limiter.size).toBeLessThanOrEqual(4);
  });

  it('/dashboard/ (trailing slash) leads to the page; with apiKeys it is the sign-in form without a key', async () => {
    const open = dashboardGraph();
    const plain = await serve(open.pipeline, { graph: open.graph, port: 0, dashboard: true });
    servers.push(plain);
    const slash = await fetch(`${plain.url}/dashboard/`, { redirect: 'manual' });
    expect(slash.status).toBe(308);
    expect(slash.headers.get('location')).toBe('/dashboard');
    expect((await fetch(`${plain.url}/dashboard/`)).status).toBe(200); // followed
    const keyed = dashboardGraph();
    const guarded = await serve(keyed.pipeline, { graph: keyed.graph, port: 0, dashboard: true, apiKeys: ['k'] });
    servers.push(guarded);
    const form = await fetch(`${guarded.url}/dashboard/`, { redirect: 'manual' });
    expect(form.status).toBe(401);
    const html = await form.text();
    expect(html).toContain('form method="post" action="/dashboard/login"');
    // An icon that needs no request: a browser does not ask /favicon.ico (a 401 here) for the sign-in page.
    expect(html).toContain('<link rel="icon" href="data:,">');
    expect((await fetch(`${guarded.url}/dashboard/`, { headers: { authorization: 'Bearer k' }, redirect: 'manual' })).status).toBe(308);
  });

  it("each tick reads the graph's shape once and sends the per-second points since the last tick, not the last minutes again (issue 27)", async () => {
    const { graph, pipeline } = dashboardGraph();
    // Count the real describe() calls (the dashboard reaches it through graph[MONITORING]).
    const describeGraph = graph.describe.bind(graph);
    let describes = 0;
    graph.describe = () => (describes++, describeGraph());
    const server = await serve(pipeline, { graph, port: 0, dashboard: true });
    servers.push(server);
    const post = () =>
      fetch(`${server.url}/check`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' }).then((r) => r.text());
    // Traffic in the seconds before the page opens: the first message carries them.
    const t0 = Date.now();
    while (Date.now() - t0 < 2_100) await Promise.all([post(), new Promise((r) => setTimeout(r, 50))]);
    describes = 0;
    const events = await fetch(`${server.url}/dashboard/events`);
    const reader = events.body!.getReader();
    const decoder = new TextDecoder();
    type Message = { snapshot: { at: number }; series: { at: number; endpoint: string; requests: number }[] };
    const messages: Message[] = [];
    let text = '';
    // Traffic goes on while four messages arrive (the first, then three ticks a second apart).
    let traffic = true;
    const load = (async () => {
      while (traffic) await Promise.all([post(), new Promise((r) => setTimeout(r, 50))]);
    })();
    const deadline = Date.now() + 10_000;
    while (messages.length < 4 && Date.now() < deadline) {
      text += decoder.decode((await reader.read()).value, { stream: true });
      for (let end = text.indexOf('\n\n'); end >= 0; end = text.indexOf('\n\n')) {
        const data = text
          .slice(0, end)
          .split('\n')
          .find((line) => line.startsWith('data: '));
        if (data) messages.push(JSON.parse(data.slice(6)) as Message);
        text = text.slice(end + 2);
      }
    }
    traffic = false;
    await load;
    await reader.cancel();
    expect(messages.length).toBe(4);
    // One describe() per message (the snapshot and the shape it sends share it).
    expect(describes).toBe(messages.length);
    const seconds = (m: Message) => [...new Set(m.series.filter((p) => p.endpoint === 'check').map((p) => p.at / 1000))].sort();
    // The first message has the history: the seconds of traffic before the page opened.
    expect(seconds(messages[0]!).length).toBeGreaterThanOrEqual(3);
    for (let i = 1; i < messages.length; i++) {
      const previous = Math.floor(messages[i - 1]!.snapshot.at / 1000);
      // Only seconds from the last one the previous message had complete (one spare, for a
      // second turning over between reads); before, every tick re-sent the last five seconds.
      expect(
        seconds(messages[i]!).every((s) => s >= previous - 1),
        `message ${i}: ${seconds(messages[i]!)} after ${previous}`,
      ).toBe(true);
      expect(seconds(messages[i]!)).toContain(Math.floor(messages[i]!.snapshot.at / 1000) - 1);
    }
  });

  it('without apiKeys there is no sign-in route; close() ends open event streams and frees the counters', async () => {
    const { graph, pipeline } = dashboardGraph();
    const exporter = await prometheusExporter(graph);
    const server = await serve(pipeline, { graph, port: 0, dashboard: true });
    const ok = await fetch(`${server.url}/check`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect(ok.status).toBe(200);
    expect((await fetch(`${server.url}/dashboard`)).status).toBe(200);
    // No sign-in route: the form's POST is one for the pipeline, which takes JSON only.
    expect((await fetch(`${server.url}/dashboard/login`, { method: 'POST', body: new URLSearchParams({ key: 'x' }) })).status).toBe(415);
    const events = await fetch(`${server.url}/dashboard/events`);
    const first = await firstMessage(events);
    expect(first.snapshot.endpoints.find((e) => e.endpoint === 'check')?.requests).toBe(1);
    const stream = await fetch(`${server.url}/dashboard/events`);
    const reader = stream.body!.getReader();
    await reader.read();
    const closed = server.close();
    // The stream ends (done) instead of holding the close open.
    for (let r = await reader.read(); !r.done; r = await reader.read());
    await closed;
    // Prometheus still holds the graph's aggregates: its count is the dashboard's.
    expect(await exporter.metrics()).toContain('rxserve_model_requests_total{endpoint="check",step="checker",outcome="success"} 1');
    exporter.detach();
  });
});
