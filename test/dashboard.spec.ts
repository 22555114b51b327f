// The dashboard (docs/design.md §16) in a real browser: Debian's Chromium driven by playwright-core.
// A graph with three endpoints is served on loopback with an API key; traffic with errors and
// QueueFullError rejections flows while the page is open, and what the page shows is checked
// against a Prometheus scrape of the same graph.
import { existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { choice, createGraph, prometheusExporter, serve, step, type PrometheusExporter, type Server } from '../src/index.js';
import { browserAvailable, launchBrowser } from './support/browser.js';
import { dashboardGraph } from './support/dashboardGraph.js';

/** The page's document, as the functions run in the browser use it (tsc here has no DOM library). */
declare const document: {
  querySelector(selector: string): { textContent: string | null } | null;
  body: { dataset: Record<string, string | undefined> };
};
type Row = { dataset: Record<string, string | undefined> };
declare const getComputedStyle: (element: unknown) => { strokeDasharray: string };

const KEY = 'dashboard-test-key';
const ENDPOINTS = { score: 'scorer', check: 'checker', advice: 'advisor' } as const;
// docs/dashboard.png is committed: rewritten only when absent or with RXSERVE_UPDATE_SCREENSHOT=1.
const DOCS_SCREENSHOT = fileURLToPath(new URL('../docs/dashboard.png', import.meta.url));
const SCREENSHOT =
  process.env.RXSERVE_UPDATE_SCREENSHOT === '1' || !existsSync(DOCS_SCREENSHOT)
    ? DOCS_SCREENSHOT
    : join(tmpdir(), `rxserve-dashboard-${process.pid}.png`);
const run = browserAvailable('dashboard.spec');

/** The counters of one moment, as the page or Prometheus shows them. */
interface Figures {
  readonly requests: Record<string, number>;
  readonly errors: Record<string, number>;
  readonly rejected: Record<string, number>;
}

/** Parses the exporter's text: requests and errors per endpoint, rejections per step. */
function parseScrape(text: string): Figures {
  const requests: Record<string, number> = {};
  const errors: Record<string, number> = {};
  const rejected: Record<string, number> = {};
  for (const [endpoint, step] of Object.entries(ENDPOINTS)) {
    const read = (outcome: string) =>
      Number(
        new RegExp(`^rxserve_model_requests_total\\{endpoint="${endpoint}",step="${step}",outcome="${outcome}"\\} (\\d+)$`, 'm').exec(
          text,
        )?.[1] ?? 0,
      );
    errors[endpoint] = read('error');
    requests[endpoint] = read('success') + errors[endpoint];
    rejected[step] = Number(
      new RegExp(`^rxserve_step_rejected_total\\{step="${step}",reason="queue_full"\\} (\\d+)$`, 'm').exec(text)?.[1] ?? 0,
    );
  }
  return { requests, errors, rejected };
}

/** What the page shows now, and the time of the snapshot it shows. */
async function readPage(page: Page): Promise<Figures & { at: number; received: number }> {
  return page.evaluate((endpoints) => {
    const number = (selector: string) => Number(document.querySelector(selector)?.textContent ?? NaN);
    const requests: Record<string, number> = {};
    const errors: Record<string, number> = {};
    const rejected: Record<string, number> = {};
    for (const [endpoint, step] of Object.entries(endpoints)) {
      requests[endpoint] = number(`tr[data-endpoint="${endpoint}"] [data-field="requests"]`);
      errors[endpoint] = number(`tr[data-endpoint="${endpoint}"] [data-field="errors"]`);
      rejected[step] = number(`tr[data-step="${step}"] [data-field="rejected"]`);
    }
    return { requests, errors, rejected, at: Number(document.body.dataset.at), received: Number(document.body.dataset.received) };
  }, ENDPOINTS);
}

describe.runIf(run)('dashboard in Chromium', () => {
  let server: Server;
  let exporter: PrometheusExporter;
  let browser: { context: BrowserContext; close(): Promise<void> };
  let page: Page;
  /** Prometheus scrapes taken every 100 ms while traffic flows: when they started and ended, and the figures. */
  const scrapes: { start: number; end: number; figures: Figures }[] = [];
  let traffic: Promise<void> | undefined;
  let stop = false;
  /** Every request the page made that failed with 404 (a missing favicon.ico shows in the console), and every favicon request. */
  const notFound: string[] = [];
  const favicons: string[] = [];

  const post = (path: string, body: unknown) =>
    fetch(`${server.url}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}` },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(10_000),
    }).then(async (r) => ({ status: r.status, text: await r.text() }));

  /** Bursts: 12 scores at once (past maxInFlight 2 + maxQueue 2: some rejected), checks failing one in three, advice. */
  async function sendTraffic(): Promise<{ statuses: number[] }> {
    const statuses: number[] = [];
    for (let round = 0; !stop; round++) {
      const answers = await Promise.all([
        ...Array.from({ length: 12 }, (_, i) => post('/score', { x: i })),
        post('/check', { fail: round % 3 === 0 }),
        post('/check', { fail: false }),
        post('/advice', { messages: [{ role: 'user', content: `question ${round}` }] }),
      ]);
      statuses.push(...answers.map((a) => a.status));
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    return { statuses };
  }

  beforeAll(async () => {
    const { graph, pipeline } = dashboardGraph();
    exporter = await prometheusExporter(graph);
    server = await serve(pipeline, { graph, port: 0, dashboard: true, apiKeys: [KEY] });
    browser = await launchBrowser();
    page = await browser.context.newPage();
    page.setDefaultTimeout(15_000);
    page.on('response', (response) => {
      if (response.status() === 404) notFound.push(response.url());
    });
    page.on('request', (request) => {
      if (new URL(request.url()).pathname.endsWith('favicon.ico')) favicons.push(request.url());
    });
  }, 60_000);

  afterAll(async () => {
    stop = true;
    await traffic?.catch(() => undefined);
    await browser?.close();
    exporter?.detach();
    await server?.close();
  }, 30_000);

  it('without a key the page and its events get 401; the sign-in form lets the browser in', async () => {
    const denied = await page.goto(`${server.url}/dashboard`);
    expect(denied?.status()).toBe(401);
    expect(await page.locator('form#login').isVisible()).toBe(true);
    expect(await page.locator('form#login input[name="key"]').count()).toBe(1);
    const events = await fetch(`${server.url}/dashboard/events`);
    expect(events.status).toBe(401);
    expect(await events.json()).toEqual({ error: expect.stringMatching(/^UnauthorizedError: /) });
    // A wrong key: 401 again, with the reason.
    await page.fill('#key', 'wrong');
    const wrong = await Promise.all([page.waitForNavigation(), page.click('button[type="submit"]')]).then(([r]) => r);
    expect(wrong?.status()).toBe(401);
    expect(await page.textContent('.problem')).toMatch(/not one of the server/);
    await page.fill('#key', KEY);
    const [answer] = await Promise.all([page.waitForNavigation(), page.click('button[type="submit"]')]);
    expect(answer?.status()).toBe(200);
    expect(new URL(page.url()).pathname).toBe('/dashboard');
    await page.waitForFunction(() => Number(document.body.dataset.received) >= 1);
    expect(await page.getAttribute('#connection', 'data-state')).toBe('live');
  }, 30_000);

  it('lists every endpoint and step, and draws every model and mechanism', async () => {
    const endpoints = await page.$$eval('#endpoints tbody tr', (rows) => rows.map((r) => (r as unknown as Row).dataset.endpoint));
    expect(endpoints.sort()).toEqual(['advice', 'check', 'score']);
    const steps = await page.$$eval('#steps tbody tr', (rows) => rows.map((r) => (r as unknown as Row).dataset.step));
    expect(steps.sort()).toEqual(['advisor', 'checker', 'scorer']);
    const diagram = (await page.textContent('#diagram')) ?? '';
    for (const name of [
      'scorer',
      'checker',
      'advisor',
      'score',
      'check',
      'advice',
      'llm',
      'Score',
      'Check',
      'LLModel',
      'asyncio',
      'naive',
      'shared_executor',
    ]) {
      expect(diagram, `the diagram names ${name}`).toContain(name);
    }
    const models = await page.$$eval('#diagram [data-model]', (gs) =>
      gs.map((g) => `${g.getAttribute('data-model')}:${g.getAttribute('data-mechanism')}`),
    );
    expect(models.sort()).toEqual(['advice:shared_executor', 'check:naive', 'score:asyncio']);
    expect(await page.getAttribute('#diagram [data-shared="llm"]', 'data-mechanism')).toBe('asyncio');
    // The proxy's edge to its shared model.
    expect(await page.locator('#diagram path.proxy').count()).toBe(1);
  }, 20_000);

  it('counters rise while traffic flows and match a Prometheus scrape of the same moment', async () => {
    stop = false;
    traffic = sendTraffic().then(() => undefined);
    const sampler = (async () => {
      while (!stop) {
        const start = Date.now();
        const figures = parseScrape(await exporter.metrics());
        scrapes.push({ start, end: Date.now(), figures });
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    })();
    const first = await readPage(page);
    await page.waitForFunction((n) => Number(document.body.dataset.received) >= n + 2, first.received);
    const second = await readPage(page);
    await page.waitForFunction((n) => Number(document.body.dataset.received) >= n + 2, second.received);
    const third = await readPage(page);
    expect(second.requests.score).toBeGreaterThan(first.requests.score);
    expect(third.requests.score).toBeGreaterThan(second.requests.score);
    expect(third.requests.check).toBeGreaterThan(second.requests.check);
    expect(third.requests.advice).toBeGreaterThan(second.requests.advice);
    // Within one refresh: the page's figure lies between the scrapes just before and just after its snapshot.
    await new Promise((resolve) => setTimeout(resolve, 300));
    for (const shown of [second, third]) {
      const before = scrapes.filter((s) => s.end < shown.at).at(-1);
      const after = scrapes.find((s) => s.start > shown.at);
      expect(before && after, 'scrapes around the snapshot').toBeTruthy();
      for (const kind of ['requests', 'errors', 'rejected'] as const) {
        for (const [name, value] of Object.entries(shown[kind])) {
          expect(value, `${kind} of ${name}`).toBeGreaterThanOrEqual(before!.figures[kind][name]!);
          expect(value, `${kind} of ${name}`).toBeLessThanOrEqual(after!.figures[kind][name]!);
        }
      }
    }
    expect(third.rejected.scorer, 'some scores were rejected with QueueFullError').toBeGreaterThan(0);
    expect(third.errors.check, 'some checks failed').toBeGreaterThan(0);
    // Charts have drawn: one canvas per chart.
    expect(await page.locator('#charts canvas').count()).toBe(3);
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    expect(existsSync(SCREENSHOT)).toBe(true);
    if (SCREENSHOT !== DOCS_SCREENSHOT) rmSync(SCREENSHOT);
    stop = true;
    await Promise.all([traffic, sampler]);
  }, 45_000);

  it('once traffic stops the page shows exactly what Prometheus counts; the errored endpoint is shown as such', async () => {
    const scrape = parseScrape(await exporter.metrics());
    const { received } = await readPage(page);
    await page.waitForFunction((n) => Number(document.body.dataset.received) >= n + 2, received);
    const shown = await readPage(page);
    expect({ requests: shown.requests, errors: shown.errors, rejected: shown.rejected }).toEqual(scrape);
    expect(await page.getAttribute('tr[data-endpoint="check"]', 'data-status')).toBe('error');
    expect(await page.textContent('tr[data-endpoint="check"] [data-field="status"]')).toBe('errors');
    expect(await page.getAttribute('tr[data-endpoint="check"]', 'title')).toMatch(/RangeError: asked to fail/);
    expect(await page.getAttribute('#diagram [data-model="check"]', 'class')).toContain('error');
    expect(await page.getAttribute('tr[data-endpoint="score"]', 'data-status')).toBe('ok');
    expect(await page.getAttribute('tr[data-endpoint="advice"]', 'data-status')).toBe('ok');
    // The LLM endpoint reports token usage; the others have none.
    expect(await page.textContent('tr[data-endpoint="advice"] [data-field="tokens"]')).toMatch(/^\d+ \/ \d+$/);
    expect(await page.textContent('tr[data-endpoint="score"] [data-field="tokens"]')).toBe('–');
  }, 20_000);

  it('latencies show two significant digits (the buckets are 19% wide); /dashboard/ leads to the page; the page asks for nothing that 404s', async () => {
    const cells = await page.$$eval('#endpoints tbody [data-field="p50Ms"], #endpoints tbody [data-field="p99Ms"]', (tds) =>
      tds.map((td) => td.textContent ?? ''),
    );
    expect(cells.length).toBe(6);
    const shown = cells.filter((text) => text !== '–');
    expect(shown.length, 'some latencies are shown').toBeGreaterThan(0);
    for (const text of shown) {
      expect(text).toMatch(/^\d+(\.\d+)?$/);
      // Significant digits: without the point, leading zeros and a whole number's trailing zeros.
      const digits = text.includes('.') ? text.replace('.', '').replace(/^0+/, '') : text.replace(/0+$/, '');
      expect(digits.length, `${text} has at most two significant digits`).toBeLessThanOrEqual(2);
    }
    const slash = await page.goto(`${server.url}/dashboard/`);
    expect(slash?.status()).toBe(200);
    expect(new URL(page.url()).pathname).toBe('/dashboard');
    await page.waitForFunction(() => Number(document.body.dataset.received) >= 1);
    expect(notFound).toEqual([]);
    // Headless Chromium does not fetch icons; a headed browser asks /favicon.ico (a 404, or a 401
    // with apiKeys, in the console) unless the page names an icon that needs no request.
    expect(await page.getAttribute('link[rel="icon"]', 'href')).toBe('data:,');
    expect(favicons).toEqual([]);
  }, 20_000);
});

/** A judge loop with a slow audit side branch: what the flow section of the page draws. */
function flowGraph() {
  const graph = createGraph({ name: 'flows' });
  const f = graph.flow({ name: 'judge-loop' });
  f.to(
    'generate',
    step((b: { n?: number }) => ({ ...b, n: (b.n ?? 0) + 1 })),
    { maxIterations: 3 },
  )
    .errorHandler(
      'fallback',
      step(() => ({ answer: 'fallback' })),
    )
    .to(
      'judge',
      choice((e) => ((e.body as { n: number }).n >= 2 ? 'reply' : 'generate')),
    )
    .cycleTo('generate');
  f.add(
    'reply',
    step((b) => b),
    { after: 'judge' },
  ).respond();
  f.add(
    'audit',
    step(async (b, { signal }) => {
      await new Promise((resolve) => setTimeout(resolve, 1_500)).then(() => signal.throwIfAborted());
      return b;
    }),
    { after: 'generate' },
  );
  return { graph, pipeline: f.build() };
}

describe.runIf(run)('dashboard in Chromium: a flow', () => {
  it('draws the flow’s DAG — every step, the responder marked, the cycle edge dashed — and each step’s copies in flight', async () => {
    const { graph, pipeline } = flowGraph();
    const server = await serve(pipeline, { graph, port: 0, dashboard: true, closeTimeoutMs: 5_000 });
    const browser = await launchBrowser();
    try {
      const page = await browser.context.newPage();
      page.setDefaultTimeout(15_000);
      await page.goto(`${server.url}/dashboard`);
      await page.waitForFunction(() => Number(document.body.dataset.received) >= 1);
      const flow = 'svg[data-flow="judge-loop"]';
      const steps = await page.$$eval(`${flow} g[data-flow-step]`, (gs) =>
        gs.map((g) => `${g.getAttribute('data-flow-step')}:${g.getAttribute('class')}`),
      );
      expect(steps.sort()).toEqual([
        'audit:flow-step step',
        'fallback:flow-step errorHandler',
        'generate:flow-step step',
        'judge:flow-step choice',
        'reply:flow-step step responder',
      ]);
      expect(await page.textContent(`${flow} g[data-flow-step="generate"]`)).toContain('≤ 3×');
      const cycle = `${flow} path.edge.cycle[data-from="judge"][data-to="generate"]`;
      expect(await page.locator(cycle).count()).toBe(1);
      expect(await page.$eval(cycle, (p) => getComputedStyle(p as never).strokeDasharray)).not.toBe('none');
      expect(
        await page.$eval(
          `${flow} path.edge.next[data-from="generate"][data-to="judge"]`,
          (p) => getComputedStyle(p as never).strokeDasharray,
        ),
      ).toBe('none');
      expect(await page.locator(`${flow} path.edge.error[data-from="generate"][data-to="fallback"]`).count()).toBe(1);
      // Two requests answered at once; their audits (one per draft: 2 each) run on for 1.5 s.
      const answers = await Promise.all(
        ['a', 'b'].map((id) =>
          fetch(`${server.url}/ask`, {
            method: 'POST',
            headers: { 'content-type': 'application/json', 'x-request-id': id },
            body: '{}',
          }).then((r) => r.json()),
        ),
      );
      expect(answers).toEqual([{ n: 2 }, { n: 2 }]);
      const inFlight = (name: string) => `${flow} g[data-flow-step="${name}"] [data-field="inFlight"]`;
      await page.waitForFunction((selector) => document.querySelector(selector)?.textContent === '4', inFlight('audit'));
      expect(await page.getAttribute(`${flow} g[data-flow-step="audit"]`, 'class')).toContain('busy');
      expect(await page.textContent(inFlight('reply'))).toBe('0');
      await page.waitForFunction((selector) => document.querySelector(selector)?.textContent === '0', inFlight('audit'));
    } finally {
      await browser.close();
      await server.close();
    }
  }, 45_000);
});
