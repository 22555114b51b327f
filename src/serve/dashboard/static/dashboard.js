// The rxserve dashboard page: reads the graph's aggregates from dashboard/events (Server-Sent
// Events, about once a second) and draws them. Plain ES module, no build step.
import uPlot from './uPlot.esm.js';

const HISTORY_SECONDS = 300;
const SVG = 'http://www.w3.org/2000/svg';
const $ = (selector) => document.querySelector(selector);
const fmt = (n, digits = 2) => (n === null || n === undefined ? '–' : Number.isInteger(n) ? String(n) : n.toFixed(digits));
// Quantiles come from log buckets 19% wide (the bucket's upper bound): two significant digits are
// all that is known (1.189207 ms → '1.2', 1234 ms → '1200').
const latency = (ms) => (ms === null || ms === undefined ? '–' : String(Number(ms.toPrecision(2))));

/** Per second and endpoint: { requests, errors } (from the server's per-second buckets). */
const perSecond = new Map();
/** Per tick: { at, p99: { endpoint: ms } } (client-side history of the rolling p99). */
const p99History = [];
let endpointsOrder = [];
let charts;
let lastShape = '';

function element(tag, attributes = {}, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attributes)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

/** The diagram: steps (left) → their models with mechanism (middle) → shared models (right). */
function drawShape(shape, errored) {
  const svg = $('#diagram');
  svg.replaceChildren();
  const W = 230, H = 44, GAP = 14, X = [10, 320, 640];
  const place = new Map();
  let y = 10;
  const rows = [];
  for (const step of shape.steps) {
    const top = y;
    for (const m of step.models) {
      rows.push({ step: step.step, model: m, y });
      y += H + GAP;
    }
    if (step.models.length === 0) y += H + GAP;
    place.set(`step:${step.step}`, { y: top, h: Math.max(H, y - top - GAP) });
  }
  for (const router of shape.routers) {
    place.set(`router:${router.step}`, { y, h: H });
    y += H + GAP;
  }
  const height = Math.max(y, 10 + shape.sharedModels.length * (H + GAP));
  svg.setAttribute('viewBox', `0 0 ${X[2] + W + 10} ${height}`);
  svg.setAttribute('height', String(height));
  const box = (cls, x, yy, h, title, sub, data) => {
    const g = element('g', { class: cls, ...data });
    g.append(element('rect', { x, y: yy, width: W, height: h, rx: 6 }));
    g.append(element('text', { x: x + 10, y: yy + 18 }, title));
    if (sub) g.append(element('text', { x: x + 10, y: yy + 34, class: 'sub' }, sub));
    svg.append(g);
  };
  const sharedY = new Map(shape.sharedModels.map((s, i) => [s.name, 10 + i * (H + GAP)]));
  for (const row of rows) {
    const s = place.get(`step:${row.step}`);
    svg.append(element('path', { d: `M${X[0] + W},${s.y + s.h / 2} C${X[0] + W + 40},${s.y + s.h / 2} ${X[1] - 40},${row.y + H / 2} ${X[1]},${row.y + H / 2}` }));
    const target = row.model.sharedModelName !== undefined ? sharedY.get(row.model.sharedModelName) : undefined;
    if (target !== undefined) {
      svg.append(element('path', { class: 'proxy', d: `M${X[1] + W},${row.y + H / 2} C${X[1] + W + 40},${row.y + H / 2} ${X[2] - 40},${target + H / 2} ${X[2]},${target + H / 2}` }));
    }
  }
  for (const step of shape.steps) {
    const s = place.get(`step:${step.step}`);
    box('step', X[0], s.y, s.h, step.step, `step · ${step.models.length} model${step.models.length === 1 ? '' : 's'}`, { 'data-step': step.step });
  }
  for (const row of rows) {
    const m = row.model;
    const cls = `model${errored.has(m.endpointName) ? ' error' : ''}`;
    const sub = m.sharedModelName !== undefined ? `proxy · ${m.executionMechanism} → ${m.sharedModelName}` : `${m.modelClass} · ${m.executionMechanism}`;
    box(cls, X[1], row.y, H, m.endpointName, sub, { 'data-model': m.endpointName, 'data-mechanism': m.executionMechanism });
  }
  for (const shared of shape.sharedModels) {
    box('shared', X[2], sharedY.get(shared.name), H, shared.name, `shared · ${shared.modelClass} · ${shared.executionMechanism}`, { 'data-shared': shared.name, 'data-mechanism': shared.executionMechanism });
  }
  for (const router of shape.routers) {
    const r = place.get(`router:${router.step}`);
    box('router', X[0], r.y, H, router.step, `${router.kind ?? 'router'} → ${router.routes.join(', ')}`, { 'data-router': router.step, ...(router.kind ? { 'data-kind': router.kind } : {}) });
  }
}

function cell(row, field, text, cls) {
  const td = document.createElement('td');
  td.dataset.field = field;
  td.textContent = text;
  if (cls) td.className = cls;
  row.append(td);
}

function statusOf(e, at) {
  if (e.lastErrorAt !== undefined && at - e.lastErrorAt < 60_000) return 'error';
  return e.requests > 0 ? 'ok' : 'idle';
}

function drawTables(snapshot) {
  const body = $('#endpoints tbody');
  body.replaceChildren(
    ...snapshot.endpoints.map((e) => {
      const row = document.createElement('tr');
      const status = statusOf(e, snapshot.at);
      row.dataset.endpoint = e.endpoint;
      row.dataset.status = status;
      if (e.lastError) row.title = `last error: ${e.lastError}`;
      cell(row, 'endpoint', e.endpoint, 'text');
      cell(row, 'step', e.step, 'text');
      cell(row, 'mechanism', e.executionMechanism ?? '–', 'text');
      cell(row, 'status', status === 'error' ? 'errors' : status, 'text status');
      cell(row, 'requests', fmt(e.requests));
      cell(row, 'errors', fmt(e.errors));
      cell(row, 'requestsPerSecond', fmt(e.requestsPerSecond, 1));
      cell(row, 'errorsPerSecond', fmt(e.errorsPerSecond, 1));
      cell(row, 'p50Ms', latency(e.p50Ms));
      cell(row, 'p99Ms', latency(e.p99Ms));
      cell(row, 'laneInFlight', fmt(e.laneInFlight));
      cell(row, 'laneQueued', fmt(e.laneQueued));
      cell(row, 'tokens', e.usageReported ? `${e.promptTokens} / ${e.completionTokens}` : '–');
      return row;
    }),
  );
  $('#steps tbody').replaceChildren(
    ...snapshot.steps.map((s) => {
      const row = document.createElement('tr');
      row.dataset.step = s.step;
      cell(row, 'step', s.step, 'text');
      cell(row, 'inFlight', fmt(s.inFlight));
      cell(row, 'queued', fmt(s.queued));
      cell(row, 'rejected', fmt(s.rejected), s.rejected > 0 ? 'rejected-some' : '');
      return row;
    }),
  );
  $('#window').textContent = `(rates and latency over the last ${snapshot.windowSeconds} s)`;
}

const COLORS = ['#2f81f7', '#3fb950', '#d29922', '#a371f7', '#ff7b72', '#39c5cf', '#db61a2', '#8b949e'];

function makeCharts(endpoints) {
  const make = (id, label) => {
    const target = document.getElementById(id);
    target.replaceChildren();
    const width = Math.max(300, target.clientWidth);
    return new uPlot(
      {
        width,
        height: 180,
        series: [{}, ...endpoints.map((e, i) => ({ label: e, stroke: COLORS[i % COLORS.length], width: 1.5, spanGaps: true }))],
        axes: [
          { stroke: '#8b949e', grid: { stroke: '#2b3542' }, ticks: { stroke: '#2b3542' } },
          { stroke: '#8b949e', grid: { stroke: '#2b3542' }, ticks: { stroke: '#2b3542' }, label },
        ],
        scales: { x: { time: true } },
      },
      [[], ...endpoints.map(() => [])],
      target,
    );
  };
  return { requests: make('chart-requests', 'req/s'), errors: make('chart-errors', 'err/s'), p99: make('chart-p99', 'ms') };
}

function updateCharts(snapshot, series) {
  for (const p of series) perSecond.set(`${p.at}\u0000${p.endpoint}`, p);
  p99History.push({ at: snapshot.at, p99: Object.fromEntries(snapshot.endpoints.map((e) => [e.endpoint, e.p99Ms])) });
  while (p99History.length > HISTORY_SECONDS) p99History.shift();
  const endpoints = snapshot.endpoints.map((e) => e.endpoint);
  if (charts === undefined || endpoints.join('\u0000') !== endpointsOrder.join('\u0000')) {
    endpointsOrder = endpoints;
    charts = makeCharts(endpoints);
  }
  // The last complete second and the HISTORY_SECONDS before it; seconds without calls are zero.
  const last = Math.floor(snapshot.at / 1000) - 1;
  const xs = [];
  for (let s = last - HISTORY_SECONDS + 1; s <= last; s++) xs.push(s);
  for (const key of perSecond.keys()) if (Number(key.split('\u0000')[0]) < (last - HISTORY_SECONDS) * 1000) perSecond.delete(key);
  const column = (pick) => endpoints.map((e) => xs.map((s) => perSecond.get(`${s * 1000}\u0000${e}`)?.[pick] ?? 0));
  charts.requests.setData([xs, ...column('requests')]);
  charts.errors.setData([xs, ...column('errors')]);
  charts.p99.setData([p99History.map((h) => h.at / 1000), ...endpoints.map((e) => p99History.map((h) => h.p99[e] ?? null))]);
}

let received = 0;
function onMessage(event) {
  const { snapshot, shape, series } = JSON.parse(event.data);
  received++;
  $('#graph-name').textContent = snapshot.graph;
  const errored = new Set(snapshot.endpoints.filter((e) => statusOf(e, snapshot.at) === 'error').map((e) => e.endpoint));
  const shapeKey = JSON.stringify(shape) + [...errored].join(',');
  if (shapeKey !== lastShape) {
    lastShape = shapeKey;
    drawShape(shape, errored);
  }
  drawTables(snapshot);
  updateCharts(snapshot, series);
  $('#updated').textContent = `updated ${new Date(snapshot.at).toLocaleTimeString()}`;
  document.body.dataset.at = String(snapshot.at);
  document.body.dataset.received = String(received);
}

const source = new EventSource('dashboard/events');
source.onopen = () => {
  $('#connection').dataset.state = 'live';
  $('#connection').textContent = 'live';
};
source.onerror = () => {
  $('#connection').dataset.state = 'lost';
  $('#connection').textContent = 'reconnecting';
};
source.onmessage = onMessage;
