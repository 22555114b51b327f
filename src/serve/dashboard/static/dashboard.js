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

/**
 * A flow's DAG (§17), left to right: a step's column is its longest path from an entry (cycle
 * edges aside), the responder is marked, cycle edges are dashed and run below the steps, and each
 * step shows the copies of events inside it now (updated by updateFlows every tick).
 */
function drawFlow(flow, index) {
  const W = 170, H = 52, XGAP = 56, YGAP = 18, PAD = 10, BELOW = 46;
  const depth = new Map(flow.steps.map((s) => [s.step, 0]));
  const acyclic = flow.edges.filter((e) => e.kind !== 'cycle');
  for (let pass = 0; pass <= flow.steps.length; pass++) {
    let changed = false;
    for (const e of acyclic) {
      if (depth.get(e.from) + 1 > depth.get(e.to)) {
        depth.set(e.to, depth.get(e.from) + 1);
        changed = true;
      }
    }
    if (!changed) break;
  }
  // The flow's own handler has no edges: it goes in a column of its own at the end.
  const last = Math.max(0, ...depth.values());
  for (const s of flow.steps) if (s.kind === 'errorHandler' && !flow.edges.some((e) => e.to === s.step)) depth.set(s.step, last + 1);
  const columns = [];
  const place = new Map();
  for (const s of flow.steps) {
    const d = depth.get(s.step);
    const column = (columns[d] ??= []);
    place.set(s.step, { x: PAD + d * (W + XGAP), y: PAD + column.length * (H + YGAP) });
    column.push(s);
  }
  const rows = Math.max(...columns.map((c) => c?.length ?? 0));
  const width = PAD * 2 + columns.length * (W + XGAP) - XGAP;
  const height = PAD * 2 + rows * (H + YGAP) - YGAP + (flow.edges.some((e) => e.kind === 'cycle') ? BELOW : 0);
  const svg = element('svg', { class: 'flow', 'data-flow': flow.flow, viewBox: `0 0 ${width} ${height}`, width, height, role: 'img', 'aria-label': `flow ${flow.flow}` });
  const defs = element('defs');
  const arrow = `rxserve-flow-arrow-${index}`;
  const marker = element('marker', { id: arrow, viewBox: '0 0 8 8', refX: 8, refY: 4, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' });
  marker.append(element('path', { d: 'M0,0 L8,4 L0,8 z' }));
  defs.append(marker);
  svg.append(defs);
  const bottom = PAD + rows * (H + YGAP) - YGAP;
  for (const e of flow.edges) {
    const a = place.get(e.from);
    const b = place.get(e.to);
    let d;
    if (e.kind === 'cycle') {
      const drop = bottom + BELOW - 12;
      d = `M${a.x + W / 2},${a.y + H} C${a.x + W / 2},${drop} ${b.x + W / 2},${drop} ${b.x + W / 2},${b.y + H}`;
    } else {
      d = `M${a.x + W},${a.y + H / 2} C${a.x + W + XGAP / 2},${a.y + H / 2} ${b.x - XGAP / 2},${b.y + H / 2} ${b.x},${b.y + H / 2}`;
    }
    svg.append(element('path', { class: `edge ${e.kind}`, d, 'data-from': e.from, 'data-to': e.to, 'marker-end': `url(#${arrow})` }));
  }
  for (const s of flow.steps) {
    const { x, y } = place.get(s.step);
    const g = element('g', { class: `flow-step ${s.kind}${s.responder ? ' responder' : ''}`, 'data-flow-step': s.step });
    g.append(element('rect', { x, y, width: W, height: H, rx: 6 }));
    g.append(element('text', { x: x + 10, y: y + 17 }, s.step));
    const notes = [s.kind === 'step' ? 'step' : s.kind === 'choice' ? 'choice' : 'error handler'];
    if (s.entry) notes.push('entry');
    if (s.responder) notes.push('responds');
    if (s.maxIterations !== undefined) notes.push(`≤ ${s.maxIterations}×`);
    g.append(element('text', { x: x + 10, y: y + 32, class: 'sub' }, notes.join(' · ')));
    const figures = element('text', { x: x + 10, y: y + 46, class: 'sub inflight' }, 'in flight ');
    const count = element('tspan', { 'data-field': 'inFlight' }, '0');
    figures.append(count);
    g.append(figures);
    svg.append(g);
  }
  return svg;
}

function drawFlows(flows) {
  $('#flows').hidden = !flows || flows.length === 0;
  $('#flow-diagrams').replaceChildren(...(flows ?? []).map(drawFlow));
}

function updateFlows(stats) {
  for (const s of stats ?? []) {
    const g = document.querySelector(`svg[data-flow="${CSS.escape(s.flow)}"] g[data-flow-step="${CSS.escape(s.step)}"]`);
    if (!g) continue;
    g.querySelector('[data-field="inFlight"]').textContent = String(s.inFlight);
    g.classList.toggle('busy', s.inFlight > 0);
    g.dataset.errors = String(s.errors);
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
    drawFlows(shape.flows);
  }
  updateFlows(snapshot.flows);
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
