// loadGraph(): a spec (a YAML or JSON file, or an object) read, validated and built into a graph and its pipeline.
// Over 300 lines: one walk over a spec's steps (modelRunner, router, the router family, step,
// onError, remoteStep, batchHttpRequests, queueStep) that builds the operators and keeps the path
// bookkeeping its errors name; codecs, modules, templates and schema live beside it.
import { readFile } from 'node:fs/promises';
import { basename, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { OperatorFunction } from 'rxjs';
import { decodeOrThrow } from '../decode.js';
import { ConfigError, toError, type ConfigIssue } from '../errors.js';
import { getPath, type ServingEvent } from '../event.js';
import { createGraph, type Graph } from '../graph/graph.js';
import { llmPromptArtifact, modelArtifact, readArtifactFile, type LLMPromptArtifact, type ModelArtifact } from '../model/artifact.js';
import type { ModelEntry } from '../model/entry.js';
import { onError } from '../operators/onError.js';
import { step as functionStep } from '../operators/step.js';
import { asV2Server, v2ServerOf } from '../operators/internal/v2.js';
import { batchHttpRequests } from '../operators/batchHttpRequests.js';
import { remoteStep } from '../operators/remoteStep.js';
import { queueStep } from '../streams/queueStep.js';
import { resolveSelector, type SelectorLike } from '../selector.js';
import {
  GraphSpec,
  type BatchHttpRequestsSpec,
  type FlowSpec,
  type ModelSpec,
  type ProxySpec,
  type RemoteStepSpec,
  type StepSpec,
} from './graphSpec.js';
import { compileTemplate } from './template.js';
import { choice, choiceByField } from '../flow/choice.js';
import { flowWithPaths, type FlowStepOperator } from '../flow/flow.js';
import { importExport, importFunction, resolveModuleRef } from './modules.js';

type Pipeline = OperatorFunction<ServingEvent, ServingEvent>;

/** Options of `loadGraph`. */
export interface LoadGraphOptions {
  /** Where relative paths of a spec given as an object resolve; default `process.cwd()` (a file: its folder). */
  readonly baseDir?: string;
}

/** What `loadGraph` returns. */
export interface LoadedGraph {
  /** The graph: call `ready()` to load its models, `close()` when done. */
  readonly graph: Graph;
  /** The spec's steps, piped in order. */
  readonly pipeline: OperatorFunction<ServingEvent, ServingEvent>;
}

/** A spec read and validated (nothing built yet), with where its mistakes are. */
export interface ReadSpec {
  readonly spec: GraphSpec;
  readonly baseDir: string;
  /** The file it came from, if any. */
  readonly file?: string;
  /** Adds the file and (YAML) line to a ConfigError about this spec. */
  readonly locate: (error: ConfigError) => ConfigError;
}

/**
 * Builds a graph and its pipeline from a spec: a YAML or JSON file, or the same as an object.
 *
 * The spec is checked as a whole first (unknown keys, wrong types), then built: shared models
 * added, steps made in order (`modelRunner` steps join the graph, so endpoint names are checked
 * across it), modules of `{ module, export }` imported. A mistake rejects with `ConfigError`
 * naming the file, the path inside it (`steps[0].modelRunner.models[1].executionMechanism`) and,
 * for YAML, the line. Models are not loaded: call `graph.ready()`, or let the first event do it.
 * `serve` and `source` are read by the `rxserve` command, not here.
 *
 * ## Example
 * ```ts
 * import { loadGraph, serve } from 'rxserve';
 * const { graph, pipeline } = await loadGraph('./graph.yaml');
 * await graph.ready();
 * const server = await serve(pipeline, { graph, port: 8080 });
 * ```
 * @see docs/spec.md
 * @param pathOrObject A `.yaml` / `.yml` / `.json` file (relative module paths resolve against its
 *   folder), or a spec object (they resolve against `options.baseDir`).
 * @returns The graph and the pipeline of its steps.
 */
export async function loadGraph(pathOrObject: string | object, options: LoadGraphOptions = {}): Promise<LoadedGraph> {
  const read = await readSpec(pathOrObject, options);
  const { graph, pipeline } = await buildSpec(read);
  return { graph, pipeline };
}

/** Reads and validates a spec without building anything. */
export async function readSpec(pathOrObject: string | object, options: LoadGraphOptions = {}): Promise<ReadSpec> {
  if (typeof pathOrObject === 'string') {
    const file = resolve(pathOrObject);
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (thrown) {
      throw new ConfigError(`cannot read spec file '${pathOrObject}': ${toError(thrown).message}`, { cause: thrown });
    }
    const parsed = /\.json$/i.test(file) ? parseJson(text, file) : await parseYaml(text, file);
    return decodeSpec(parsed.value, dirname(file), file, parsed.lineOf);
  }
  if (pathOrObject === null || typeof pathOrObject !== 'object') {
    throw new ConfigError([{ path: 'loadGraph', expected: 'a spec file path or a spec object', actual: String(pathOrObject) }]);
  }
  return decodeSpec(pathOrObject, resolve(options.baseDir ?? process.cwd()));
}

type LineOf = (path: string) => number | undefined;

function decodeSpec(value: unknown, baseDir: string, file?: string, lineOf?: LineOf): ReadSpec {
  const locate = (error: ConfigError) => withLocation(error, file, lineOf);
  try {
    const spec = decodeOrThrow<GraphSpec, unknown>(GraphSpec, value, '');
    if ((spec.steps === undefined) === (spec.flow === undefined)) {
      throw new ConfigError([
        {
          path: '',
          expected: '',
          message: `a spec has steps: (piped in order) or flow: (a flow of named steps), exactly one; got ${spec.steps === undefined ? 'neither' : 'both'}`,
        },
      ]);
    }
    return { spec, baseDir, ...(file ? { file } : {}), locate };
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    // Paths from the root '' start with a dot: `.steps[0]` → `steps[0]`; the spec itself is `spec`.
    const issues = error.issues.map((issue) => ({ ...issue, path: issue.path.replace(/^\./, '') || 'spec' }));
    throw locate(new ConfigError(issues, { cause: error.cause }));
  }
}

/** The same error, its message starting with the file and giving each issue's line. */
function withLocation(error: ConfigError, file: string | undefined, lineOf: LineOf | undefined): ConfigError {
  if (file === undefined) return error;
  const parts =
    error.issues.length === 0
      ? [error.message]
      : error.issues.map((issue) => {
          const line = lineOf?.(issue.path);
          const text = new ConfigError([issue]).message;
          return line === undefined ? text : `line ${line}: ${text}`;
        });
  const located = new ConfigError(error.issues, { cause: error.cause });
  located.message = `${basename(file)}: ${parts.join('; ')} (in ${file})`;
  return located;
}

function parseJson(text: string, file: string): { value: unknown; lineOf?: LineOf } {
  try {
    return { value: JSON.parse(text) };
  } catch (thrown) {
    throw new ConfigError(`${basename(file)}: not valid JSON: ${toError(thrown).message} (in ${file})`, { cause: thrown });
  }
}

async function parseYaml(text: string, file: string): Promise<{ value: unknown; lineOf: LineOf }> {
  const { LineCounter, parseDocument, isMap, isSeq, isScalar } = await import('yaml');
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: true });
  if (doc.errors.length > 0) {
    const error = doc.errors[0];
    const line = error.linePos?.[0].line;
    throw new ConfigError(`${basename(file)}: ${line !== undefined ? `line ${line}: ` : ''}not valid YAML: ${error.message} (in ${file})`, {
      cause: error,
    });
  }
  // The line of the deepest node the path reaches: the field itself, or the object missing it.
  const lineOf: LineOf = (path) => {
    let node: unknown = doc.contents;
    let offset: number | undefined = (node as { range?: [number] } | null)?.range?.[0];
    for (const segment of splitIssuePath(path)) {
      if (isMap(node)) {
        const pair = node.items.find((p) => (isScalar(p.key) ? String(p.key.value) : String(p.key)) === segment);
        if (pair === undefined) break;
        offset = (pair.key as { range?: [number] } | null)?.range?.[0] ?? offset;
        node = pair.value;
      } else if (isSeq(node) && /^\d+$/.test(segment)) {
        const item = node.items[Number(segment)] as { range?: [number] } | undefined;
        if (item === undefined) break;
        offset = item.range?.[0] ?? offset;
        node = item;
      } else {
        break;
      }
    }
    return offset === undefined ? undefined : lineCounter.linePos(offset).line;
  };
  let value: unknown;
  try {
    // yaml refuses documents whose aliases expand past its maxAliasCount (a "billion laughs" bomb).
    value = doc.toJS();
  } catch (thrown) {
    throw new ConfigError(`${basename(file)}: not a usable YAML document: ${toError(thrown).message} (in ${file})`, { cause: thrown });
  }
  return { value, lineOf };
}

/** `steps[1].router.routes.low[0]` → `['steps', '1', 'router', 'routes', 'low', '0']`. */
function splitIssuePath(path: string): string[] {
  return [...path.matchAll(/\[(\d+)\]|\[(['"])(.*?)\2\]|([^.[\]]+)/g)].map((m) => m[1] ?? m[3] ?? m[4]);
}

/** Builds the graph and pipeline of a validated spec; on a mistake the graph is closed. */
export async function buildSpec(read: ReadSpec): Promise<LoadedGraph> {
  const { spec, baseDir } = read;
  const seen = new Map<string, string>();
  if (spec.steps !== undefined) checkEndpointNames(spec.steps, 'steps', seen, read.locate);
  spec.flow?.steps.forEach((s, i) => {
    checkEndpointNames([s], `flow.steps[${i}]`, seen, read.locate, false);
    if (s.errorHandler !== undefined) checkEndpointNames([s.errorHandler], `flow.steps[${i}].errorHandler`, seen, read.locate, false);
  });
  if (spec.flow?.errorHandler !== undefined) checkEndpointNames([spec.flow.errorHandler], 'flow.errorHandler', seen, read.locate, false);
  let graph: Graph | undefined;
  try {
    graph = createGraph({
      ...(spec.name !== undefined ? { name: spec.name } : {}),
      ...(spec.closeTimeoutMs !== undefined ? { closeTimeoutMs: spec.closeTimeoutMs } : {}),
      ...(spec.monitoring !== undefined
        ? {
            monitoring: {
              ...spec.monitoring,
              ...(spec.monitoring.registryPath !== undefined ? { registryPath: resolve(baseDir, spec.monitoring.registryPath) } : {}),
            },
          }
        : {}),
    });
    if (spec.pool !== undefined) graph.configurePoolResource(spec.pool);
    const g = graph;
    spec.sharedModels?.forEach(({ modelArtifact: artifactSpec, modelClass, ...shared }, i) => {
      const at = `sharedModels[${i}]`;
      const artifact = artifactOf(artifactSpec, baseDir, `${at}.modelArtifact`);
      atPath(at, ['addSharedModel'], () =>
        g.addSharedModel({
          ...shared,
          modelClass: typeof modelClass === 'string' ? modelClass : resolveModuleRef(modelClass, baseDir, `${at}.modelClass`),
          ...(artifact !== undefined ? { modelArtifact: artifact } : {}),
        }),
      );
    });
    const pipeline = spec.flow !== undefined ? await buildFlow(g, spec.flow, baseDir) : await buildSteps(g, spec.steps!, 'steps', baseDir);
    return { graph: g, pipeline };
  } catch (error) {
    await graph?.close();
    throw error instanceof ConfigError ? read.locate(error) : error;
  }
}

/**
 * Endpoint names (models, proxies, routes) are unique across the graph: say where both uses are.
 * `indexed`: `path` names a list (`steps` → `steps[0]`), else the one step in `steps` itself.
 */
function checkEndpointNames(
  steps: readonly StepSpec[],
  path: string,
  seen: Map<string, string>,
  locate: ReadSpec['locate'],
  indexed = true,
): void {
  const claim = (name: string, at: string) => {
    const first = seen.get(name);
    if (first !== undefined) {
      throw locate(
        new ConfigError([
          { path: at, expected: 'an endpoint name unique across the graph', actual: `'${name}', already used at ${first}` },
        ]),
      );
    }
    seen.set(name, at);
  };
  steps.forEach((s, i) => {
    const at = indexed ? `${path}[${i}]` : path;
    s.modelRunner?.models.forEach((m, j) => claim(m.endpointName, `${at}.modelRunner.models[${j}].endpointName`));
    if (s.router !== undefined) {
      for (const [route, routeSteps] of Object.entries(s.router.routes)) {
        claim(route, `${at}.router.routes.${route}`);
        checkEndpointNames(routeSteps, `${at}.router.routes.${route}`, seen, locate);
      }
    }
    // The router family's route names are not endpoints (docs/design.md §7, turn 3): a route 'mlp' serving model 'mlp' is the KServe layout.
    for (const kind of ['modelRouter', 'parallelRun', 'votingEnsemble'] as const) {
      const family = s[kind];
      if (family === undefined) continue;
      for (const [route, routeSteps] of Object.entries(family.routes))
        checkEndpointNames(routeSteps, `${at}.${kind}.routes.${route}`, seen, locate);
    }
  });
}

/**
 * A spec's `flow:` (docs/design.md §17) built on the graph: each step added after its `after` (default:
 * the previous step in the list), so the builder's ConfigErrors name a step by its place in the
 * file (`flow.steps[2].cycleTo`).
 */
async function buildFlow(graph: Graph, spec: FlowSpec, baseDir: string): Promise<Pipeline> {
  const places = new Map<string, number>();
  spec.steps.forEach((s, i) => {
    const first = places.get(s.name);
    if (first !== undefined) {
      throw new ConfigError([
        {
          path: `flow.steps[${i}].name`,
          expected: '',
          message: `'${s.name}' is already the name of flow.steps[${first}]; step names are unique in a flow`,
        },
      ]);
    }
    places.set(s.name, i);
  });
  const f = flowWithPaths(
    {
      ...(spec.name !== undefined ? { name: spec.name } : {}),
      ...(spec.maxInFlight !== undefined ? { maxInFlight: spec.maxInFlight } : {}),
      graph,
    },
    {
      pathOf: (name) => (places.has(name) ? `flow.steps[${places.get(name)}]` : `flow.steps['${name}']`),
      handlerPath: 'flow.errorHandler',
    },
  );
  for (let i = 0; i < spec.steps.length; i++) {
    const { name, after, respond, maxIterations, cycleTo, errorHandler, choice: choiceSpec, ...kind } = spec.steps[i];
    const at = `flow.steps[${i}]`;
    let op: FlowStepOperator;
    if (choiceSpec === undefined) op = await buildStep(graph, kind, at, baseDir);
    else if ('field' in choiceSpec) op = choiceByField(choiceSpec.field);
    else op = choice(await importFunction(choiceSpec, baseDir, `${at}.choice`, 'a function (event) => step names'));
    const handle = f.add(name, op, {
      ...(after !== undefined ? { after } : {}),
      ...(maxIterations !== undefined ? { maxIterations } : {}),
    });
    if (respond) handle.respond();
    if (cycleTo !== undefined) handle.cycleTo(cycleTo);
    if (errorHandler !== undefined) {
      const { name: handlerName, before, ...handlerKind } = errorHandler;
      const handler = await buildStep(graph, handlerKind, `${at}.errorHandler`, baseDir);
      handle.errorHandler(handlerName, handler, before !== undefined ? { before } : {});
    }
  }
  if (spec.errorHandler !== undefined) {
    const { name, ...kind } = spec.errorHandler;
    f.errorHandler(name, await buildStep(graph, kind, 'flow.errorHandler', baseDir));
  }
  return f.build();
}

async function buildSteps(graph: Graph, steps: readonly StepSpec[], path: string, baseDir: string): Promise<Pipeline> {
  const operators: Pipeline[] = [];
  for (let i = 0; i < steps.length; i++) operators.push(await buildStep(graph, steps[i], `${path}[${i}]`, baseDir));
  if (operators.length === 1) return operators[0];
  const piped: Pipeline = (source) => operators.reduce((events, operator) => operator(events), source);
  // serve()'s /v2 routes read what the pipeline serves: the one router-family step among these steps.
  const servers = operators.map(v2ServerOf).filter((s) => s !== undefined);
  return servers.length === 1 ? asV2Server(piped, servers[0]) : piped;
}

async function buildStep(graph: Graph, spec: StepSpec, at: string, baseDir: string): Promise<Pipeline> {
  if (spec.modelRunner !== undefined) {
    const { models, selector, pool, ...rest } = spec.modelRunner;
    const path = `${at}.modelRunner`;
    const entries = models.map((m, i) => modelEntry(graph, m, `${path}.models[${i}]`, baseDir));
    let resolved: SelectorLike | undefined;
    if (selector !== undefined) {
      resolved = typeof selector === 'string' ? selector : ((await importExport(selector, baseDir, `${path}.selector`)) as SelectorLike);
      // Checked now, with the spec's path: a name not registered, a class that cannot be built.
      resolveSelector(resolved, rest.selectorParams, `${path}.selector`);
    }
    return atPath(path, ['modelRunner', rest.name ?? 'model_runner'], () =>
      graph.modelRunner({ ...rest, models: entries, ...(resolved !== undefined ? { selector: resolved } : {}), ...(pool ? { pool } : {}) }),
    );
  }
  if (spec.router !== undefined) {
    const { key, routes, ...rest } = spec.router;
    const path = `${at}.router`;
    const keyFn =
      typeof key === 'string'
        ? (event: ServingEvent) => {
            const value = getPath(event, key);
            if (value === undefined || value === null) return undefined;
            if (typeof value === 'string') return value;
            if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
            // A route key is a scalar: an object or array there is the event's mistake, named as
            // such, not a RouteNotFoundError for the key "[object Object]".
            const what = Array.isArray(value) ? 'an array' : typeof value === 'object' ? 'an object' : `a ${typeof value}`;
            throw new TypeError(`${path}.key: '${key}' names ${what} in the event, not a route key (a string, number or boolean)`);
          }
        : await importFunction(key, baseDir, `${path}.key`, 'a function (event) => route key');
    const built: Record<string, Pipeline> = {};
    for (const [route, routeSteps] of Object.entries(routes)) {
      built[route] = await buildSteps(graph, routeSteps, `${path}.routes.${route}`, baseDir);
    }
    return atPath(path, ['router'], () => graph.router({ ...rest, key: keyFn, routes: built }));
  }
  for (const kind of ['modelRouter', 'parallelRun', 'votingEnsemble'] as const) {
    const family = spec[kind];
    if (family === undefined) continue;
    const { routes, ...rest } = family;
    const path = `${at}.${kind}`;
    const built: Record<string, Pipeline> = {};
    for (const [route, routeSteps] of Object.entries(routes))
      built[route] = await buildSteps(graph, routeSteps, `${path}.routes.${route}`, baseDir);
    return atPath(path, [kind], () => graph[kind]({ ...rest, routes: built }));
  }
  if (spec.remoteStep !== undefined) {
    const path = `${at}.remoteStep`;
    const { urlExpression, bodyExpression, ...options } = httpStepOptions(spec.remoteStep, path, false);
    return atPath(path, ['remoteStep.options'], () =>
      remoteStep({
        ...options,
        ...(urlExpression ? { urlExpression: (event: ServingEvent) => urlExpression(event) as string } : {}),
        ...(bodyExpression ? { bodyExpression: (event: ServingEvent) => bodyExpression(event) } : {}),
      }),
    );
  }
  if (spec.batchHttpRequests !== undefined) {
    const path = `${at}.batchHttpRequests`;
    const { urlExpression, bodyExpression, ...options } = httpStepOptions(spec.batchHttpRequests, path, true);
    return atPath(path, ['batchHttpRequests.options'], () =>
      batchHttpRequests({
        ...options,
        ...(urlExpression ? { urlExpression: (item: unknown, event: ServingEvent) => urlExpression(event, item) as string } : {}),
        ...(bodyExpression ? { bodyExpression: (item: unknown, event: ServingEvent) => bodyExpression(event, item) } : {}),
      }),
    );
  }
  if (spec.queueStep !== undefined) {
    const path = `${at}.queueStep`;
    return atPath(path, ['queueStep.options'], () => queueStep(spec.queueStep!));
  }
  if (spec.step !== undefined) {
    const { module, export: name, ...options } = spec.step;
    const path = `${at}.step`;
    const fn = await importFunction({ module, ...(name ? { export: name } : {}) }, baseDir, path, 'a function (input, context) => result');
    return atPath(path, ['step'], () => functionStep(fn, options));
  }
  const { module, export: name, ...options } = spec.onError!;
  const path = `${at}.onError`;
  const handler = await importFunction(
    { module, ...(name ? { export: name } : {}) },
    baseDir,
    path,
    'a function (erroredEvent, context) => event or body',
  );
  return atPath(path, ['onError'], () => onError(handler, options));
}

/** A remoteStep's or batchHttpRequests' spec with its templates compiled (URL parts percent-encoded). */
function httpStepOptions(spec: RemoteStepSpec | BatchHttpRequestsSpec, at: string, withItem: boolean) {
  const { urlExpression, bodyExpression, ...options } = spec;
  return {
    ...options,
    urlExpression:
      urlExpression === undefined ? undefined : compileTemplate(urlExpression, `${at}.urlExpression`, { encode: true, withItem }),
    bodyExpression:
      bodyExpression === undefined ? undefined : compileTemplate(bodyExpression, `${at}.bodyExpression`, { encode: false, withItem }),
  };
}

function modelEntry(graph: Graph, spec: ModelSpec | ProxySpec, at: string, baseDir: string): ModelEntry {
  const { modelArtifact: artifactSpec, ...rest } = spec;
  const artifact = artifactOf(artifactSpec, baseDir, `${at}.modelArtifact`);
  if ('sharedModelName' in rest) {
    return atPath(at, ['sharedModelProxy'], () =>
      graph.sharedModelProxy({ ...rest, ...(artifact !== undefined ? { modelArtifact: artifact } : {}) }),
    );
  }
  const m = rest as Omit<ModelSpec, 'modelArtifact'>;
  return {
    ...m,
    modelClass: typeof m.modelClass === 'string' ? m.modelClass : resolveModuleRef(m.modelClass, baseDir, `${at}.modelClass`),
    ...(artifact !== undefined ? { modelArtifact: artifact } : {}),
  };
}

/**
 * The artifact, decoded as `modelArtifact()` / `llmPromptArtifact()` would (a prompt when it has
 * `model`), or read from its JSON file (a path relative to the spec's folder, or a `file:` URL).
 */
function artifactOf(artifact: string | object | undefined, baseDir: string, path: string): ModelArtifact | LLMPromptArtifact | undefined {
  if (artifact === undefined) return undefined;
  if (typeof artifact === 'object') {
    return atPath(path, ['modelArtifact', 'llmPromptArtifact'], () =>
      'model' in artifact ? llmPromptArtifact(artifact as LLMPromptArtifact) : modelArtifact(artifact as ModelArtifact),
    );
  }
  if (/^[a-z][a-z0-9+.-]*:/i.test(artifact) && !artifact.startsWith('file:')) {
    throw new ConfigError([
      { path, expected: 'an artifact, or the path of its JSON file (rxserve has no artifact store)', actual: `'${artifact}'` },
    ]);
  }
  const file = artifact.startsWith('file:') ? fileURLToPath(artifact) : resolve(baseDir, artifact);
  try {
    return readArtifactFile(file, path);
  } catch (error) {
    if (error instanceof ConfigError) throw error;
    throw new ConfigError([{ path, expected: 'a readable artifact JSON file', actual: `'${artifact}': ${toError(error).message}` }], {
      cause: error,
    });
  }
}

/**
 * Runs a builder of the graph or an operator and gives its ConfigError the spec's path: an issue
 * at `modelRunner.models[0]` (or at one of `prefixes`) becomes one at `<at>.models[0]`.
 */
function atPath<T>(at: string, prefixes: readonly string[], build: () => T): T {
  try {
    return build();
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    if (error.issues.length === 0) throw new ConfigError([{ path: at, expected: '', message: error.message }], { cause: error });
    const issues: ConfigIssue[] = error.issues.map((issue) => {
      const prefix = prefixes.find((p) => issue.path === p || issue.path.startsWith(`${p}.`) || issue.path.startsWith(`${p}[`));
      return { ...issue, path: prefix === undefined ? `${at}: ${issue.path}` : at + issue.path.slice(prefix.length) };
    });
    throw new ConfigError(issues, { cause: error });
  }
}
