// The layering check (docs/design.md §2), run by test/layers.spec.ts in `npm test`:
//   node scripts/check-layers.mjs [--src <dir>] [--no-allow-list] [--json]
//
// THE RULE. Every source file of src/ (specs excluded) belongs to a unit, and every unit to a
// layer. Imports point down the layers (or sideways, inside one layer), never up, and no two units
// import each other, directly or round a longer loop; inside a unit, no two files do either.
// Type-only imports count: `import type { Graph }` in an operator is the coupling docs/design.md §2
// rules out, whatever the emitted JS says.
//
// Units: a folder of src/ (`model/`, `execution/`, ...) or a file at its top (`errors.ts`), with
// two refinements: `graph.ts` and a future `graph/` are one unit, and monitoring's exporters
// (`prometheus.ts`, `tracing.ts`: they take a graph) are the unit `monitoring/exporters`, while the
// rest of monitoring (records, the monitor, the endpoint registry) is used by operators and graph.
//
// Layers, bottom to top (placed from docs/design.md §2 and from what each unit imports today):
//   1. errors, event, decode, body, retry   the error classes, ServingEvent, the io-ts helpers, edge checks of bodies, retry timing
//   2. model, selector             the Model contract, entries, registry; selection over entries
//   3. llm, onnx                   model families built on Model (LLModel; OnnxModel, §13)
//   4. execution, monitoring      the mechanisms that run models (input copies, lanes); call records
//   5. operators                   modelRunner, router, step, ... and operators/internal
//   6. flow                        flows (§17): builder, choices, the compiled operator; a graph
//                                  reaches them through FlowHost, declared in flow/
//   7. graph                       createGraph(): shared models, lifecycle, endpoint names, graph.flow()
//   8. monitoring/exporters, serve, streams, spec, cli, testing   what sits on a graph or beside it all (cli: the rxserve command)
//   9. index                       the root entry (its imports are not checked)
// Exempt as importers: src/index.ts and every subpath entry (`<subpath>/index.ts` for each subpath
// of package.json "exports"), which only re-export. A unit not listed here is an error: place a new folder in LAYERS on purpose.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

export const LAYERS = [
  ['errors', 'event', 'decode', 'body', 'retry', 'undici'],
  ['model', 'selector'],
  ['llm', 'onnx'],
  ['execution', 'monitoring'],
  ['operators'],
  ['flow'],
  ['graph'],
  ['monitoring/exporters', 'serve', 'streams', 'spec', 'cli', 'testing'],
  ['index'],
];

/**
 * Known violations of today's code, as `importer -> imported` (paths under src/). Each one is
 * still reported (as allowed), and an entry that no longer matches an import fails the check, so
 * the list only shrinks.
 */
export const ALLOWED = [];

const EXPORTERS = new Set(['monitoring/prometheus.ts', 'monitoring/tracing.ts']);

/** The unit of a file (a path relative to src/, with forward slashes). */
export function unitOf(file) {
  if (EXPORTERS.has(file)) return 'monitoring/exporters';
  const [first, ...rest] = file.split('/');
  if (rest.length === 0) return first.replace(/\.ts$/, '');
  return first;
}

const layerOf = new Map(LAYERS.flatMap((units, i) => units.map((u) => [u, i])));
// The public entries: src/index.ts and one `<subpath>/index.ts` per subpath in package.json "exports".
const SUBPATHS = Object.keys(JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')).exports ?? {})
  .filter((key) => /^\.\/[\w-]+$/.test(key))
  .map((key) => `${key.slice(2)}/index.ts`);
const isEntry = (file) => file === 'index.ts' || SUBPATHS.includes(file);

function sourceFiles(src) {
  return readdirSync(src, { recursive: true, withFileTypes: false })
    .map((f) => String(f).split('\\').join('/'))
    .filter((f) => f.endsWith('.ts') && !f.endsWith('.spec.ts') && !f.endsWith('.d.ts'))
    .sort();
}

/** The src-relative .ts file a relative specifier names, or undefined (JSON, .mjs, outside src). */
function resolveImport(src, from, specifier) {
  const base = resolve(dirname(join(src, from)), specifier);
  const candidates = [base.replace(/\.(m?js)$/, '.ts'), `${base}.ts`, join(base, 'index.ts'), base];
  for (const candidate of candidates) {
    if (candidate.endsWith('.ts') && existsSync(candidate)) {
      const rel = relative(src, candidate).split('\\').join('/');
      return rel.startsWith('..') ? undefined : rel;
    }
  }
  return undefined;
}

/** Every relative import (static, type-only, re-export, dynamic) between files of src/. */
export function importsOf(src) {
  const edges = [];
  for (const file of sourceFiles(src)) {
    const info = ts.preProcessFile(readFileSync(join(src, file), 'utf8'), true, true);
    for (const { fileName } of info.importedFiles) {
      if (!fileName.startsWith('.')) continue;
      const target = resolveImport(src, file, fileName);
      if (target !== undefined && target !== file) edges.push({ from: file, to: target });
    }
  }
  return edges;
}

/** Strongly connected components of units with more than one unit: the import cycles. */
function cycles(unitEdges) {
  const graph = new Map();
  for (const [from, to] of unitEdges) {
    if (!graph.has(from)) graph.set(from, new Set());
    if (!graph.has(to)) graph.set(to, new Set());
    graph.get(from).add(to);
  }
  let index = 0;
  const stack = [];
  const state = new Map();
  const found = [];
  const visit = (v) => {
    state.set(v, { index, low: index, onStack: true });
    index++;
    stack.push(v);
    for (const w of graph.get(v)) {
      if (!state.has(w)) {
        visit(w);
        state.get(v).low = Math.min(state.get(v).low, state.get(w).low);
      } else if (state.get(w).onStack) {
        state.get(v).low = Math.min(state.get(v).low, state.get(w).index);
      }
    }
    if (state.get(v).low === state.get(v).index) {
      const component = [];
      let w;
      do {
        w = stack.pop();
        state.get(w).onStack = false;
        component.push(w);
      } while (w !== v);
      if (component.length > 1) found.push(component.sort());
    }
  };
  for (const v of [...graph.keys()].sort()) if (!state.has(v)) visit(v);
  return found;
}

/** A shortest loop from the component's first unit back to it, inside the component (BFS). */
function shortestLoop(component, counted) {
  const inside = new Set(component);
  const start = component[0];
  const previous = new Map();
  const queue = [start];
  while (queue.length > 0) {
    const unit = queue.shift();
    for (const [from, to] of counted) {
      if (from !== unit || !inside.has(to)) continue;
      if (to === start) {
        const path = [unit];
        while (path[0] !== start) path.unshift(previous.get(path[0]));
        return [...path, start];
      }
      if (!previous.has(to)) {
        previous.set(to, unit);
        queue.push(to);
      }
    }
  }
  return component;
}

/**
 * Checks src/. Returns `{ violations, allowed, stale }`: `violations` and `stale` fail the check;
 * `allowed` are the known violations the allow-list lets through (reported, not failed).
 */
export function checkLayers(src, { allow = ALLOWED } = {}) {
  const allowSet = new Set(allow);
  const edges = importsOf(src).filter((e) => !isEntry(e.from));
  const violations = [];
  const allowed = [];
  const counted = [];
  const inside = [];
  const units = new Set();
  for (const edge of edges) {
    const from = unitOf(edge.from);
    const to = unitOf(edge.to);
    units.add(from).add(to);
    const key = `${edge.from} -> ${edge.to}`;
    if (from === to) {
      inside.push([edge.from, edge.to, key]);
      continue;
    }
    if (allowSet.has(key)) {
      allowed.push(`${key} (${from} -> ${to})`);
      continue;
    }
    counted.push([from, to, key]);
  }
  for (const unit of [...units].sort()) {
    if (!layerOf.has(unit)) violations.push(`unit '${unit}' has no layer: place it in LAYERS (scripts/check-layers.mjs)`);
  }
  for (const [from, to, key] of counted) {
    if (layerOf.has(from) && layerOf.has(to) && layerOf.get(to) > layerOf.get(from)) {
      violations.push(`upward import: ${key} (${from}, layer ${layerOf.get(from) + 1}, imports ${to}, layer ${layerOf.get(to) + 1})`);
    }
  }
  for (const component of cycles(counted.map(([from, to]) => [from, to]))) {
    const loop = shortestLoop(component, counted);
    const hops = loop.slice(1).map((to, i) => counted.find(([f, t]) => f === loop[i] && t === to)[2]);
    violations.push(`import cycle between ${component.join(', ')}: ${loop.join(' -> ')} (${hops.join('; ')})`);
  }
  // Files inside one unit may import each other freely, but not round a loop: a cycle there (even
  // type-only, like a contract and the implementation it names) ties the files into one.
  for (const component of cycles(inside.map(([from, to]) => [from, to]))) {
    const loop = shortestLoop(component, inside);
    violations.push(`import cycle inside unit '${unitOf(component[0])}': ${loop.join(' -> ')}`);
  }
  const present = new Set(edges.map((e) => `${e.from} -> ${e.to}`));
  const stale = allow.filter((key) => !present.has(key)).map((key) => `allow-list entry '${key}' matches no import any more: remove it`);
  return { violations, allowed, stale };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const at = args.indexOf('--src');
  const src = resolve(at >= 0 ? args[at + 1] : fileURLToPath(new URL('../src', import.meta.url)));
  const result = checkLayers(src, { allow: args.includes('--no-allow-list') ? [] : ALLOWED });
  if (args.includes('--json')) {
    console.log(JSON.stringify(result));
  } else {
    for (const line of result.allowed) console.log(`allowed (known, on the allow-list): ${line}`);
    for (const line of [...result.violations, ...result.stale]) console.log(`ERROR ${line}`);
    const failed = result.violations.length + result.stale.length;
    console.log(failed === 0 ? `layers: ok (${result.allowed.length} known violation(s) allowed)` : `layers: ${failed} problem(s)`);
  }
  process.exitCode = result.violations.length + result.stale.length > 0 ? 1 : 0;
}
